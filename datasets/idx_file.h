// Reading gzip-compressed IDX files, the format of MNIST and Fashion-MNIST
// (http://yann.lecun.com/exdb/mnist/, "FILE FORMATS"):
//
//   magic   big-endian uint32 0x000008DD: two zero bytes, type 0x08 (unsigned byte), DD dimensions
//   sizes   DD big-endian uint32, outermost first (e.g. 60000, 28, 28)
//   data    prod(sizes) unsigned bytes, row-major
//
// Images files have magic 2051 (3 dimensions), label files 2049 (1 dimension). Every problem
// with a file (missing, unreadable, not gzip, truncated, wrong magic or shape, trailing bytes)
// becomes a ConfigError that names the file and says how to fix it.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

#include "registry/config_error.h"

namespace blocklab {

struct IdxExpectation {
  std::vector<std::int64_t> shape;  // exact sizes the header must declare, e.g. {10000, 28, 28}
  std::string what;                 // for messages: "image data", "label data"
};

// What an IDX error reports besides its message: the origin of the setting that chose the file
// (where, path) and the way out (hints), e.g. the package that installs the files.
struct IdxErrorContext {
  Source where;
  std::string path;                  // e.g. "dataset.root"
  std::vector<std::string> missing;  // hints when the file does not exist
  std::vector<std::string> damaged;  // hints when it exists but is unusable
};

// A gzip-compressed IDX file read whole, with a 64-bit FNV-1a hash of its compressed bytes.
struct IdxFile {
  torch::Tensor data;  // uint8 with the expected shape
  std::uint64_t fnv1a = 0;
};

// Reads `file`; throws ConfigError unless it is a complete gzip stream holding exactly an IDX
// file of unsigned bytes with the expected shape.
IdxFile read_idx_gz(const std::string& file, const IdxExpectation& expect, const IdxErrorContext& context);

// read_idx_gz once per process for each unchanged file: results are kept by the file's identity
// (device, inode, size, modification time) and the expectation, so every root or link that
// reaches the same file shares one decoded, read-only tensor.
IdxFile read_idx_gz_cached(const std::string& file, const IdxExpectation& expect, const IdxErrorContext& context);

// 64-bit FNV-1a (http://www.isthe.com/chongo/tech/comp/fnv/), continuing from `hash`.
constexpr std::uint64_t kFnv1aOffset = 0xcbf29ce484222325ULL;
std::uint64_t fnv1a(const void* data, std::size_t size, std::uint64_t hash = kFnv1aOffset);
// A hash as 16 lowercase hex digits (dataset fingerprints).
std::string fingerprint_hex(std::uint64_t value);

}  // namespace blocklab
