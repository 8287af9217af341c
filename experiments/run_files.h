// Run directories and the files in them.
//
// results/runs/<experiment>/<id>/, the id a hash of the resolved config, the code version and
// the data fingerprint: config.yaml, overrides.yaml, env.json, metrics.jsonl, summary.json,
// log.txt and checkpoints/{last,best}.ckpt. Every whole-file write is atomic (temp file in
// the same directory, fsync, rename, fsync of the directory): a killed run never leaves a
// half-written file under a real name.
#pragma once

#include <cstdint>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace blocklab {

// 64-bit FNV-1a, for run ids and checkpoint checksums.
std::uint64_t fnv1a64(const void* data, std::size_t size, std::uint64_t seed = 0xcbf29ce484222325ULL);
std::string hex64(std::uint64_t v);

// The git commit this binary was built from ("unknown" outside git) and whether its tracked
// sources had uncommitted changes then (`diff`: a hash of them, so that two different dirty
// builds are told apart). Fixed at build time (cmake/code_version.cmake): a copied binary or a
// checkout moved on since the build does not change it.
struct CodeVersion {
  std::string commit = "unknown";
  bool dirty = false;
  std::string diff;
  std::string text() const { return commit + (dirty ? "-dirty-" + diff : ""); }
};
CodeVersion code_version();  // defined in the generated build/generated/code_version.cpp

// A file that could not be written (disk full, permissions, a missing directory): the message
// names the file and the system's reason. Nothing half-written is left under the real name,
// and no temp file is left behind.
class FileWriteError : public std::runtime_error {
 public:
  FileWriteError(const std::string& path, const std::string& reason);
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Writes `contents` to `path` atomically (creating parent directories); throws FileWriteError.
void write_file_atomic(const std::string& path, const std::string& contents);
std::string read_file(const std::string& path);
bool file_exists(const std::string& path);

// A JSON object for metrics lines, summaries and ledgers, on nlohmann::ordered_json (see
// experiments/json_io.h for the layout): keys in insertion order, numbers exact, a non-finite
// double written as null plus a "<key>_nonfinite" flag ("nan", "inf", "-inf").
class JsonObject {
 public:
  JsonObject();
  ~JsonObject();
  JsonObject(const JsonObject& other);
  JsonObject& operator=(const JsonObject& other);
  JsonObject(JsonObject&& other) noexcept;
  JsonObject& operator=(JsonObject&& other) noexcept;

  JsonObject& set(const std::string& key, double v);
  JsonObject& set(const std::string& key, std::int64_t v);
  JsonObject& set(const std::string& key, int v) { return set(key, static_cast<std::int64_t>(v)); }
  JsonObject& set(const std::string& key, bool v);
  JsonObject& set(const std::string& key, const std::string& v);
  JsonObject& set(const std::string& key, const char* v) { return set(key, std::string(v)); }
  JsonObject& set(const std::string& key, const std::vector<std::string>& list);  // an array of strings
  JsonObject& set(const std::string& key, const JsonObject& nested);
  JsonObject& set_null(const std::string& key);
  // A nested value given as JSON text (parsed; invalid text throws ConfigError).
  JsonObject& set_raw(const std::string& key, const std::string& json);
  std::string str() const;  // one line, keys in insertion order
  const nlohmann::ordered_json& json() const { return *value_; }

 private:
  std::unique_ptr<nlohmann::ordered_json> value_;  // always an object (moved-from: a fresh empty one)
};

// Appends lines to a file and can cut it back to an earlier length (resume). A line is
// written whole or not at all: a failed write (disk full) is cut back and throws
// FileWriteError naming the file.
class AppendFile {
 public:
  AppendFile() = default;
  explicit AppendFile(const std::string& path);
  ~AppendFile();
  AppendFile(AppendFile&& other) noexcept;
  AppendFile& operator=(AppendFile&& other) noexcept;
  AppendFile(const AppendFile&) = delete;
  AppendFile& operator=(const AppendFile&) = delete;
  void append_line(const std::string& line);  // written through at once
  std::uint64_t size() const { return size_; }
  // Truncates the file to `bytes` (what a checkpoint recorded) and appends from there.
  void truncate(std::uint64_t bytes);
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int fd_ = -1;
  std::uint64_t size_ = 0;
};

// An exclusive flock on a file: one holder at a time, released by the kernel when the holder
// dies (also after kill -9), so a lock is never stale. The holder writes who it is into the
// file for other processes' messages. Used for run directories (one writer per run) and
// sweep job claims.
class FileLock {
 public:
  FileLock() = default;
  FileLock(FileLock&& other) noexcept;
  FileLock& operator=(FileLock&& other) noexcept;
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;
  ~FileLock();

  // Takes the lock on `path` (created if missing) without waiting and writes `owner` into it;
  // nullopt when another process holds it. Throws FileWriteError when the file cannot be made.
  static std::optional<FileLock> try_acquire(const std::string& path, const std::string& owner);
  // Whether some process holds the lock on `path` now.
  static bool is_held(const std::string& path);
  bool held() const { return fd_ >= 0; }
  void release();

 private:
  int fd_ = -1;
  std::string path_;
};

// "pid 1234 on host node7": who this process is, for lock files and messages.
std::string lock_owner_text();

}  // namespace blocklab
