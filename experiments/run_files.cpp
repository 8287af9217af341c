#include "experiments/run_files.h"

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <sstream>
#include <stdexcept>

#include "registry/config_node.h"
#include "registry/yaml_io.h"

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

static std::string run_capture(const std::string& cmd) {
  std::string out;
  FILE* pipe = popen(cmd.c_str(), "r");
  if (!pipe) return out;
  std::array<char, 512> buf{};
  while (std::size_t n = fread(buf.data(), 1, buf.size(), pipe)) out.append(buf.data(), n);
  if (pclose(pipe) != 0) return "";
  return out;
}

CodeVersion code_version() {
  static const CodeVersion cached = [] {
    CodeVersion v;
    const std::string dir = BLOCKLAB_SOURCE_DIR;
    std::string sha = run_capture("git -C '" + dir + "' rev-parse HEAD 2>/dev/null");
    while (!sha.empty() && (sha.back() == '\n' || sha.back() == '\r')) sha.pop_back();
    if (sha.empty()) return v;
    v.commit = sha;
    // Results and build outputs do not make the code dirty.
    const std::string status = run_capture("git -C '" + dir +
                                           "' status --porcelain --untracked-files=no -- . ':!results' 2>/dev/null");
    v.dirty = !status.empty();
    return v;
  }();
  return cached;
}

static void fsync_path(const std::string& path, bool directory) {
  const int fd = ::open(path.c_str(), directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

void write_file_atomic(const std::string& path, const std::string& contents) {
  const fs::path target(path);
  if (target.has_parent_path()) fs::create_directories(target.parent_path());
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw std::runtime_error("cannot write " + tmp);
    out.write(contents.data(), static_cast<std::streamsize>(contents.size()));
    out.flush();
    if (!out) throw std::runtime_error("cannot write " + tmp + " (disk full?)");
  }
  fsync_path(tmp, false);
  fs::rename(tmp, target);
  fsync_path(target.has_parent_path() ? target.parent_path().string() : ".", true);
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

JsonObject& JsonObject::set(const std::string& key, double v) {
  if (!std::isfinite(v)) return set_raw(key, std::isnan(v) ? "NaN" : (v > 0 ? "Infinity" : "-Infinity"));
  return set_raw(key, format_double(v));
}
JsonObject& JsonObject::set(const std::string& key, std::int64_t v) { return set_raw(key, std::to_string(v)); }
JsonObject& JsonObject::set(const std::string& key, bool v) { return set_raw(key, v ? "true" : "false"); }
JsonObject& JsonObject::set(const std::string& key, const std::string& v) { return set_raw(key, json_quote(v)); }
JsonObject& JsonObject::set_raw(const std::string& key, const std::string& json) {
  for (auto& f : fields_)
    if (f.first == key) return f.second = json, *this;
  fields_.emplace_back(key, json);
  return *this;
}

std::string JsonObject::str() const {
  std::string out = "{";
  for (std::size_t i = 0; i < fields_.size(); ++i)
    out += (i ? ", " : "") + json_quote(fields_[i].first) + ": " + fields_[i].second;
  return out + "}";
}

AppendFile::AppendFile(const std::string& path) : path_(path) {
  std::error_code ec;
  size_ = fs::exists(path, ec) ? fs::file_size(path, ec) : 0;
  out_.open(path, std::ios::binary | std::ios::app);
  if (!out_) throw std::runtime_error("cannot open " + path + " for appending");
}

void AppendFile::append_line(const std::string& line) {
  out_ << line << '\n';
  out_.flush();
  size_ += line.size() + 1;
}

void AppendFile::truncate(std::uint64_t bytes) {
  out_.close();
  std::error_code ec;
  if (fs::exists(path_, ec)) fs::resize_file(path_, bytes, ec);
  if (ec) throw std::runtime_error("cannot truncate " + path_ + ": " + ec.message());
  size_ = bytes;
  out_.open(path_, std::ios::binary | std::ios::app);
}

}  // namespace blocklab
