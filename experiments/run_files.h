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
#include <string>
#include <variant>
#include <vector>

namespace blocklab {

// 64-bit FNV-1a, for run ids and checkpoint checksums.
std::uint64_t fnv1a64(const void* data, std::size_t size, std::uint64_t seed = 0xcbf29ce484222325ULL);
std::string hex64(std::uint64_t v);

// The source tree's git commit and whether it has uncommitted changes ("unknown" outside git).
struct CodeVersion {
  std::string commit = "unknown";
  bool dirty = false;
  std::string text() const { return commit + (dirty ? "-dirty" : ""); }
};
CodeVersion code_version();

// Writes `contents` to `path` atomically (creating parent directories).
void write_file_atomic(const std::string& path, const std::string& contents);
std::string read_file(const std::string& path);
bool file_exists(const std::string& path);

// A flat JSON object builder for metrics lines and summaries (numbers keep full precision).
class JsonObject {
 public:
  JsonObject& set(const std::string& key, double v);
  JsonObject& set(const std::string& key, std::int64_t v);
  JsonObject& set(const std::string& key, int v) { return set(key, static_cast<std::int64_t>(v)); }
  JsonObject& set(const std::string& key, bool v);
  JsonObject& set(const std::string& key, const std::string& v);
  JsonObject& set(const std::string& key, const char* v) { return set(key, std::string(v)); }
  JsonObject& set_raw(const std::string& key, const std::string& json);  // nested object/array
  std::string str() const;  // one line, keys in insertion order

 private:
  std::vector<std::pair<std::string, std::string>> fields_;
};

// Appends lines to a file and can cut it back to an earlier length (resume).
class AppendFile {
 public:
  AppendFile() = default;
  explicit AppendFile(const std::string& path);
  void append_line(const std::string& line);  // flushed at once
  std::uint64_t size() const { return size_; }
  // Truncates the file to `bytes` (what a checkpoint recorded) and appends from there.
  void truncate(std::uint64_t bytes);
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::ofstream out_;
  std::uint64_t size_ = 0;
};

}  // namespace blocklab
