#include "experiments/run_files.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <sstream>
#include <stdexcept>

#include "experiments/json_io.h"

namespace fs = std::filesystem;

namespace blocklab {

std::uint64_t fnv1a64(const void* data, std::size_t size, std::uint64_t h) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (std::size_t i = 0; i < size; ++i) {
    h ^= p[i];
    h *= 0x100000001b3ULL;
  }
  return h;
}

std::string hex64(std::uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

FileWriteError::FileWriteError(const std::string& path, const std::string& reason)
    : std::runtime_error("cannot write " + path + ": " + reason +
                         (reason == std::strerror(ENOSPC) ? " (free some space, or set output_dir to another disk)"
                                                          : "")),
      path_(path) {}

namespace {

// Writes all of `data` to `fd`; returns 0 or the errno of the failure.
int write_all(int fd, const char* data, std::size_t size) {
  while (size > 0) {
    const ssize_t n = ::write(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno;
    if (n == 0) return EIO;
    data += n;
    size -= static_cast<std::size_t>(n);
  }
  return 0;
}

void fsync_directory(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

}  // namespace

void write_file_atomic(const std::string& path, const std::string& contents) {
  const fs::path target(path);
  const std::string parent = target.has_parent_path() ? target.parent_path().string() : ".";
  std::error_code ec;
  fs::create_directories(parent, ec);
  if (ec) throw FileWriteError(path, "cannot create its directory (" + ec.message() + ")");
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw FileWriteError(path, std::strerror(errno));
  // A full disk can show at write, at fsync or at close: check each, and never leave the
  // temp file behind (a zero-byte or partial temp would only confuse).
  int err = write_all(fd, contents.data(), contents.size());
  if (!err && ::fsync(fd) != 0) err = errno;
  if (::close(fd) != 0 && !err) err = errno;
  if (!err && ::rename(tmp.c_str(), path.c_str()) != 0) err = errno;
  if (err) {
    ::unlink(tmp.c_str());
    throw FileWriteError(path, std::strerror(err));
  }
  fsync_directory(parent);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool file_exists(const std::string& path) {
  std::error_code ec;
  return fs::is_regular_file(path, ec);
}

JsonObject::JsonObject() : value_(std::make_unique<Json>(Json::object())) {}
JsonObject::~JsonObject() = default;
JsonObject::JsonObject(const JsonObject& other) : value_(std::make_unique<Json>(*other.value_)) {}
JsonObject& JsonObject::operator=(const JsonObject& other) {
  if (this != &other) *value_ = *other.value_;
  return *this;
}
JsonObject::JsonObject(JsonObject&& other) noexcept : JsonObject() { value_.swap(other.value_); }
JsonObject& JsonObject::operator=(JsonObject&& other) noexcept {
  value_.swap(other.value_);
  return *this;
}

// The value is stored as is (NaN too); json_text() writes a non-finite one as null + flag.
JsonObject& JsonObject::set(const std::string& key, double v) {
  (*value_)[key] = v;
  return *this;
}
JsonObject& JsonObject::set(const std::string& key, std::int64_t v) {
  (*value_)[key] = v;
  return *this;
}
JsonObject& JsonObject::set(const std::string& key, bool v) {
  (*value_)[key] = v;
  return *this;
}
JsonObject& JsonObject::set(const std::string& key, const std::string& v) {
  (*value_)[key] = v;
  return *this;
}
JsonObject& JsonObject::set(const std::string& key, const std::vector<std::string>& list) {
  (*value_)[key] = list;
  return *this;
}
JsonObject& JsonObject::set(const std::string& key, const JsonObject& nested) {
  (*value_)[key] = *nested.value_;
  return *this;
}
JsonObject& JsonObject::set_null(const std::string& key) {
  (*value_)[key] = nullptr;
  return *this;
}
JsonObject& JsonObject::set_raw(const std::string& key, const std::string& json) {
  (*value_)[key] = parse_json(json, "the JSON value of '" + key + "'");
  return *this;
}

std::string JsonObject::str() const { return json_text(*value_); }

AppendFile::AppendFile(const std::string& path) : path_(path) {
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd_ < 0) throw FileWriteError(path, std::strerror(errno));
  struct stat st {};
  size_ = ::fstat(fd_, &st) == 0 ? static_cast<std::uint64_t>(st.st_size) : 0;
}

AppendFile::~AppendFile() {
  if (fd_ >= 0) ::close(fd_);
}

AppendFile::AppendFile(AppendFile&& other) noexcept
    : path_(std::move(other.path_)), fd_(std::exchange(other.fd_, -1)), size_(other.size_) {}

AppendFile& AppendFile::operator=(AppendFile&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    path_ = std::move(other.path_);
    fd_ = std::exchange(other.fd_, -1);
    size_ = other.size_;
  }
  return *this;
}

void AppendFile::append_line(const std::string& line) {
  if (fd_ < 0) throw FileWriteError(path_.empty() ? "(no file)" : path_, "the file is not open");
  const std::string text = line + '\n';
  if (const int err = write_all(fd_, text.data(), text.size())) {
    // Cut a partial line back off, so the file stays a sequence of whole lines.
    const int ignored = ::ftruncate(fd_, static_cast<off_t>(size_));
    (void)ignored;
    throw FileWriteError(path_, std::strerror(err));
  }
  size_ += text.size();
}

void AppendFile::truncate(std::uint64_t bytes) {
  if (fd_ < 0) throw FileWriteError(path_, "the file is not open");
  if (::ftruncate(fd_, static_cast<off_t>(bytes)) != 0)
    throw FileWriteError(path_, std::string("cannot truncate: ") + std::strerror(errno));
  size_ = bytes;
}

FileLock::FileLock(FileLock&& other) noexcept : fd_(std::exchange(other.fd_, -1)), path_(std::move(other.path_)) {}

FileLock& FileLock::operator=(FileLock&& other) noexcept {
  if (this != &other) {
    release();
    fd_ = std::exchange(other.fd_, -1);
    path_ = std::move(other.path_);
  }
  return *this;
}

FileLock::~FileLock() { release(); }

void FileLock::release() {
  if (fd_ >= 0) ::close(fd_);  // closing the last descriptor drops the flock
  fd_ = -1;
}

std::optional<FileLock> FileLock::try_acquire(const std::string& path, const std::string& owner) {
  for (int attempt = 0; attempt < 8; ++attempt) {
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) throw FileWriteError(path, std::strerror(errno));
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      const int err = errno;
      ::close(fd);
      if (err == EWOULDBLOCK || err == EINTR) return std::nullopt;
      throw FileWriteError(path, std::string("cannot lock: ") + std::strerror(err));
    }
    // The file may have been unlinked (a released claim) between open and flock: then the lock
    // is on an orphan inode, and the path must be opened again.
    struct stat held {
    }, now{};
    if (::fstat(fd, &held) != 0 || ::stat(path.c_str(), &now) != 0 || held.st_ino != now.st_ino ||
        held.st_dev != now.st_dev) {
      ::close(fd);
      continue;
    }
    FileLock lock;
    lock.fd_ = fd;
    lock.path_ = path;
    const int err = ::ftruncate(fd, 0) == 0 ? write_all(fd, owner.data(), owner.size()) : errno;
    if (err) throw FileWriteError(path, std::strerror(err));
    return lock;
  }
  return std::nullopt;
}

bool FileLock::is_held(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const bool held = ::flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
  ::close(fd);
  return held;
}

std::string lock_owner_text() {
  char host[256] = {0};
  ::gethostname(host, sizeof host - 1);
  return "pid " + std::to_string(::getpid()) + " on host " + host;
}

}  // namespace blocklab
