// NumPy .npy files, format 1.0 (see npy.h and numpy.lib.format):
//
//   "\x93NUMPY" 0x01 0x00 <header length: uint16 little-endian> <header> <data>
//
// The header is the text of a Python dict, e.g. "{'descr': '<f4', 'fortran_order': False,
// 'shape': (2, 3), }", padded with spaces and ended by '\n' so that magic + version + length
// + header is a multiple of 64 bytes. Data are written little-endian whatever the host.
#include "analysis/npy.h"

#include <cctype>
#include <cstring>
#include <fstream>
#include <iterator>
#include <stdexcept>

#include "analysis/cairo_util.h"

namespace blocklab {
namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr std::size_t kMagicSize = 6;
constexpr std::size_t kAlign = 64;

std::string shape_text(const std::vector<std::int64_t>& shape) {
  std::string s = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) s += ", ";
    s += std::to_string(shape[i]);
  }
  if (shape.size() == 1) s += ",";  // a 1-tuple
  return s + ")";
}

std::size_t element_count(const std::string& path, const std::vector<std::int64_t>& shape) {
  std::size_t n = 1;
  for (std::int64_t d : shape) {
    if (d < 0) throw std::invalid_argument("npy: " + path + ": negative dimension in shape " + shape_text(shape));
    n *= static_cast<std::size_t>(d);
  }
  return n;
}

std::string header(const char* descr, const std::vector<std::int64_t>& shape) {
  std::string dict = std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': " + shape_text(shape) + ", }";
  const std::size_t prefix = kMagicSize + 2 + 2;
  const std::size_t total = (prefix + dict.size() + 1 + kAlign - 1) / kAlign * kAlign;
  dict.append(total - prefix - dict.size() - 1, ' ');
  dict += '\n';
  std::string out(kMagic, kMagicSize);
  out += '\x01';
  out += '\x00';
  out += static_cast<char>(dict.size() & 0xff);
  out += static_cast<char>((dict.size() >> 8) & 0xff);
  return out + dict;
}

// Appends each value's bit pattern, least significant byte first.
template <typename Bits, typename T>
void append_le(std::string& out, const T* data, std::size_t n) {
  static_assert(sizeof(Bits) == sizeof(T));
  out.reserve(out.size() + n * sizeof(T));
  for (std::size_t i = 0; i < n; ++i) {
    Bits b;
    std::memcpy(&b, &data[i], sizeof b);
    for (std::size_t k = 0; k < sizeof b; ++k) out += static_cast<char>((b >> (8 * k)) & 0xff);
  }
}

template <typename Bits, typename T>
void write_array(const std::string& path, const char* descr, const std::vector<std::int64_t>& shape, const T* data) {
  const std::size_t n = element_count(path, shape);
  if (n > 0 && data == nullptr) throw std::invalid_argument("npy: " + path + ": no data");
  std::string bytes = header(descr, shape);
  append_le<Bits>(bytes, data, n);
  cairo_util::write_atomically(path, bytes);
}

[[noreturn]] void bad_file(const std::string& path, const std::string& why) {
  throw std::runtime_error("cannot read " + path + ": " + why);
}

// The text after `'key':` in the header dict, with leading spaces skipped.
std::size_t value_at(const std::string& path, const std::string& dict, const std::string& key) {
  const std::size_t at = dict.find("'" + key + "'");
  if (at == std::string::npos) bad_file(path, "the header has no '" + key + "'");
  std::size_t i = dict.find(':', at);
  if (i == std::string::npos) bad_file(path, "malformed header");
  ++i;
  while (i < dict.size() && dict[i] == ' ') ++i;
  return i;
}

std::vector<std::int64_t> parse_shape(const std::string& path, const std::string& dict) {
  std::size_t i = value_at(path, dict, "shape");
  if (i >= dict.size() || dict[i] != '(') bad_file(path, "malformed shape");
  const std::size_t close = dict.find(')', i);
  if (close == std::string::npos) bad_file(path, "malformed shape");
  std::vector<std::int64_t> shape;
  std::string item;
  for (std::size_t k = i + 1; k <= close; ++k) {
    const char c = dict[k];
    if (c == ',' || c == ')') {
      if (!item.empty()) {
        for (char d : item)
          if (!std::isdigit(static_cast<unsigned char>(d))) bad_file(path, "malformed shape");
        shape.push_back(std::stoll(item));
        item.clear();
      } else if (c == ',') {
        bad_file(path, "malformed shape");
      }
    } else if (c != ' ' && c != 'L') {
      item += c;
    }
  }
  return shape;
}

// A .npy file's header fields and its bytes.
struct NpyFile {
  std::string bytes, descr;
  std::vector<std::int64_t> shape;
  std::size_t data_at = 0;

  // The data as little-endian words of `Size` bytes, after checking their count.
  template <std::size_t Size>
  std::vector<std::uint64_t> words(const std::string& path) const {
    const std::size_t n = element_count(path, shape);
    if (bytes.size() - data_at != n * Size)
      bad_file(path, "expected " + std::to_string(n * Size) + " data bytes for shape " + shape_text(shape) +
                         ", found " + std::to_string(bytes.size() - data_at));
    std::vector<std::uint64_t> out(n, 0);
    for (std::size_t k = 0; k < n; ++k)
      for (std::size_t i = 0; i < Size; ++i)
        out[k] |= static_cast<std::uint64_t>(static_cast<unsigned char>(bytes[data_at + Size * k + i])) << (8 * i);
    return out;
  }
};

template <typename T, typename Bits>
T from_bits(std::uint64_t word) {
  const auto b = static_cast<Bits>(word);
  T v;
  std::memcpy(&v, &b, sizeof v);
  return v;
}

NpyFile open_npy(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) bad_file(path, "cannot open");
  NpyFile f;
  f.bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  const std::string& bytes = f.bytes;
  if (bytes.size() < kMagicSize + 4 || bytes.compare(0, kMagicSize, kMagic, kMagicSize) != 0)
    bad_file(path, "not a .npy file");
  const auto byte = [&](std::size_t i) { return static_cast<std::size_t>(static_cast<unsigned char>(bytes[i])); };
  const std::size_t major = byte(6);
  std::size_t header_len = 0, start = 0;
  if (major == 1) {
    header_len = byte(8) | byte(9) << 8;
    start = 10;
  } else if (major == 2 || major == 3) {
    if (bytes.size() < 12) bad_file(path, "truncated header");
    header_len = byte(8) | byte(9) << 8 | byte(10) << 16 | byte(11) << 24;
    start = 12;
  } else {
    bad_file(path, "unsupported .npy version " + std::to_string(major) + "." + std::to_string(byte(7)));
  }
  if (bytes.size() < start + header_len) bad_file(path, "truncated header");
  const std::string dict = bytes.substr(start, header_len);
  std::size_t i = value_at(path, dict, "descr");
  const std::size_t end = dict.find('\'', i + 1);
  if (i >= dict.size() || dict[i] != '\'' || end == std::string::npos) bad_file(path, "malformed descr");
  f.descr = dict.substr(i + 1, end - i - 1);
  i = value_at(path, dict, "fortran_order");
  if (dict.compare(i, 5, "False") != 0) bad_file(path, "fortran_order arrays are not supported");
  f.shape = parse_shape(path, dict);
  f.data_at = start + header_len;
  return f;
}

}  // namespace

void write_npy(const std::string& path, const std::vector<std::int64_t>& shape, const float* data) {
  write_array<std::uint32_t>(path, "<f4", shape, data);
}

void write_npy(const std::string& path, const std::vector<std::int64_t>& shape, const double* data) {
  write_array<std::uint64_t>(path, "<f8", shape, data);
}

void write_npy(const std::string& path, const std::vector<std::int64_t>& shape, const std::int64_t* data) {
  write_array<std::uint64_t>(path, "<i8", shape, data);
}

std::vector<float> read_npy_f32(const std::string& path, std::vector<std::int64_t>& shape) {
  const NpyFile f = open_npy(path);
  if (f.descr != "<f4") bad_file(path, "dtype '" + f.descr + "' is not little-endian float32 ('<f4')");
  shape = f.shape;
  const std::vector<std::uint64_t> bits = f.words<4>(path);
  std::vector<float> out(bits.size());
  for (std::size_t k = 0; k < bits.size(); ++k) out[k] = from_bits<float, std::uint32_t>(bits[k]);
  return out;
}

std::vector<double> read_npy_f64(const std::string& path, std::vector<std::int64_t>& shape, bool& is_float64) {
  const NpyFile f = open_npy(path);
  if (f.descr != "<f4" && f.descr != "<f8")
    bad_file(path, "dtype '" + f.descr + "' is not little-endian float32 or float64 ('<f4', '<f8')");
  shape = f.shape;
  is_float64 = f.descr == "<f8";
  std::vector<double> out;
  if (is_float64) {
    for (std::uint64_t b : f.words<8>(path)) out.push_back(from_bits<double, std::uint64_t>(b));
  } else {
    for (std::uint64_t b : f.words<4>(path)) out.push_back(from_bits<float, std::uint32_t>(b));
  }
  return out;
}

}  // namespace blocklab
