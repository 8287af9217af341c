#include "datasets/idx_file.h"

#include <sys/stat.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <mutex>

namespace blocklab {
namespace {

// Inflates a gzip stream (RFC 1952) held in memory, on demand. zlib checks the gzip header,
// the deflate data and the CRC-32/length trailer.
class GzipStream {
 public:
  explicit GzipStream(const std::vector<unsigned char>& compressed) : input_(compressed) {
    if (inflateInit2(&stream_, 16 + MAX_WBITS) != Z_OK) error_ = "zlib could not start";  // 16: gzip wrapper
  }
  ~GzipStream() { inflateEnd(&stream_); }
  GzipStream(const GzipStream&) = delete;
  GzipStream& operator=(const GzipStream&) = delete;

  // Writes up to `size` bytes to `out` and returns how many; fewer when the stream ended, the
  // input ran out (a truncated file) or the data is corrupt (then error() says why).
  std::size_t read(unsigned char* out, std::size_t size) {
    std::size_t produced = 0;
    while (produced < size && !finished_ && error_.empty()) {
      if (stream_.avail_in == 0) {
        if (fed_ == input_.size()) break;  // the input ran out
        feed();
      }
      const auto chunk = static_cast<uInt>(std::min<std::size_t>(size - produced, std::numeric_limits<uInt>::max()));
      stream_.next_out = out + produced;
      stream_.avail_out = chunk;
      const int rc = inflate(&stream_, Z_NO_FLUSH);
      produced += chunk - stream_.avail_out;
      if (rc == Z_STREAM_END) {
        finished_ = true;
      } else if (rc != Z_OK && rc != Z_BUF_ERROR) {
        error_ = stream_.msg ? stream_.msg : "zlib error " + std::to_string(rc);
      }
    }
    return produced;
  }
  bool finished() const { return finished_; }
  // Compressed bytes after the end of the gzip stream.
  bool has_trailing_input() const { return stream_.avail_in > 0 || fed_ < input_.size(); }
  const std::string& error() const { return error_; }

 private:
  void feed() {
    const std::size_t n = std::min<std::size_t>(input_.size() - fed_, std::numeric_limits<uInt>::max());
    stream_.next_in = const_cast<Bytef*>(input_.data() + fed_);
    stream_.avail_in = static_cast<uInt>(n);
    fed_ += n;
  }

  const std::vector<unsigned char>& input_;
  std::size_t fed_ = 0;
  z_stream stream_{};
  bool finished_ = false;
  std::string error_;
};

std::uint32_t big_endian_u32(const unsigned char* p) {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) | std::uint32_t{p[3]};
}

std::string shape_text(const std::vector<std::int64_t>& shape) {
  std::string out;
  for (std::size_t i = 0; i < shape.size(); ++i) out += (i ? "x" : "") + std::to_string(shape[i]);
  return out;
}

// Reads `file` and checks it piece by piece, throwing on the first problem.
class IdxReader {
 public:
  IdxReader(const std::string& file, const IdxExpectation& expect, const IdxErrorContext& context)
      : file_(file), expect_(expect), context_(context) {}

  IdxFile read() {
    const std::vector<unsigned char> compressed = read_compressed();
    IdxFile result;
    result.fnv1a = fnv1a(compressed.data(), compressed.size());
    GzipStream gz(compressed);

    const std::size_t ndim = expect_.shape.size();
    std::vector<unsigned char> header(4 * (1 + ndim));
    require_bytes(gz, gz.read(header.data(), header.size()), header.size(), 0);
    const std::uint32_t magic = big_endian_u32(header.data());
    const std::uint32_t expected_magic = 0x0800 | static_cast<std::uint32_t>(ndim);  // type 0x08: unsigned byte
    if (magic != expected_magic)
      throw damaged(file_ + " has magic number " + std::to_string(magic) + ", expected " +
                    std::to_string(expected_magic) + " (an IDX file of unsigned bytes with " + std::to_string(ndim) +
                    (ndim == 1 ? " dimension)" : " dimensions)"));
    std::vector<std::int64_t> shape(ndim);
    for (std::size_t d = 0; d < ndim; ++d) shape[d] = big_endian_u32(header.data() + 4 * (1 + d));
    if (shape != expect_.shape)
      throw damaged(file_ + " holds a " + shape_text(shape) + " array, expected " + shape_text(expect_.shape));

    result.data = torch::empty(shape, torch::kUInt8);
    const auto data_bytes = static_cast<std::size_t>(result.data.numel());
    require_bytes(gz, gz.read(result.data.data_ptr<std::uint8_t>(), data_bytes), data_bytes, header.size());

    // Exactly the declared bytes: nothing after them, and a complete gzip trailer (CRC checked).
    unsigned char extra = 0;
    const std::size_t total = expected_total();
    if (gz.read(&extra, 1) > 0)
      throw damaged(file_ + " is longer than expected: more than " + std::to_string(total) + " bytes of " +
                    expect_.what);
    if (!gz.error().empty()) throw corrupt(gz);
    if (!gz.finished())
      throw damaged(file_ + " is truncated: its gzip stream ends without a trailer after " + std::to_string(total) +
                    " bytes of " + expect_.what);
    if (gz.has_trailing_input()) throw damaged(file_ + " has trailing bytes after its gzip stream");
    return result;
  }

 private:
  // POSIX calls rather than std::filesystem: libtorch.so exports its own copies of some
  // std::filesystem functions, which the dynamic linker may pick over libstdc++'s.
  std::vector<unsigned char> read_compressed() const {
    struct stat info {};
    if (::stat(file_.c_str(), &info) != 0) {
      if (errno == ENOENT || errno == ENOTDIR)
        throw fail("cannot read " + file_ + ": file is missing", context_.missing);
      throw damaged("cannot read " + file_ + ": " + std::strerror(errno));
    }
    if (!S_ISREG(info.st_mode)) throw damaged("cannot read " + file_ + ": not a regular file");
    std::ifstream in(file_, std::ios::binary);
    if (!in) throw damaged("cannot read " + file_ + ": " + std::strerror(errno));
    std::vector<unsigned char> bytes(static_cast<std::size_t>(info.st_size));
    in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    if (static_cast<std::size_t>(in.gcount()) != bytes.size()) throw damaged("cannot read " + file_ + ": read error");
    return bytes;
  }

  // `got` of `wanted` bytes were inflated after `before` bytes of the file.
  void require_bytes(const GzipStream& gz, std::size_t got, std::size_t wanted, std::size_t before) const {
    if (got == wanted) return;
    if (!gz.error().empty()) throw corrupt(gz);
    throw damaged(file_ + " is truncated: expected " + std::to_string(expected_total()) + " bytes of " + expect_.what +
                  ", got " + std::to_string(before + got));
  }

  std::size_t expected_total() const {
    std::size_t data = 1;
    for (auto s : expect_.shape) data *= static_cast<std::size_t>(s);
    return 4 * (1 + expect_.shape.size()) + data;
  }

  ConfigError corrupt(const GzipStream& gz) const {
    return damaged(file_ + " is corrupt: not a valid gzip stream (zlib: " + gz.error() + ")");
  }
  ConfigError damaged(const std::string& message) const { return fail(message, context_.damaged); }
  ConfigError fail(const std::string& message, const std::vector<std::string>& hints) const {
    return ConfigError(message, context_.where, context_.path, hints);
  }

  const std::string& file_;
  const IdxExpectation& expect_;
  const IdxErrorContext& context_;
};

}  // namespace

std::uint64_t fnv1a(const void* data, std::size_t size, std::uint64_t hash) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (std::size_t i = 0; i < size; ++i) {
    hash ^= p[i];
    hash *= 0x100000001b3ULL;  // the 64-bit FNV prime
  }
  return hash;
}

IdxFile read_idx_gz(const std::string& file, const IdxExpectation& expect, const IdxErrorContext& context) {
  return IdxReader(file, expect, context).read();
}

IdxFile read_idx_gz_cached(const std::string& file, const IdxExpectation& expect, const IdxErrorContext& context) {
  static std::mutex mutex;
  static std::map<std::string, IdxFile> cache;
  struct stat info {};
  if (::stat(file.c_str(), &info) != 0 || !S_ISREG(info.st_mode)) return read_idx_gz(file, expect, context);
  std::string key = std::to_string(info.st_dev) + ":" + std::to_string(info.st_ino) + ":" +
                    std::to_string(info.st_size) + "@" + std::to_string(info.st_mtim.tv_sec) + "." +
                    std::to_string(info.st_mtim.tv_nsec) + ":" + expect.what;
  for (auto size : expect.shape) key += "," + std::to_string(size);
  const std::lock_guard<std::mutex> lock(mutex);
  if (auto it = cache.find(key); it != cache.end()) return it->second;
  return cache[key] = read_idx_gz(file, expect, context);
}

std::string fingerprint_hex(std::uint64_t value) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(value));
  return buf;
}

}  // namespace blocklab
