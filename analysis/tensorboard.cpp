#include "analysis/tensorboard.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>

#include "analysis/text_util.h"
#include "experiments/run_files.h"

namespace fs = std::filesystem;

namespace blocklab {
namespace {

constexpr std::uint32_t kCastagnoli = 0x82F63B78u;  // reflected
constexpr std::uint32_t kCrcMaskDelta = 0xa282ead8u;
constexpr int kDtString = 7;  // tensorflow.DataType DT_STRING

struct CrcTable {
  std::uint32_t entry[256];
};

constexpr CrcTable make_crc_table() {
  CrcTable t{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1u) ? (c >> 1) ^ kCastagnoli : c >> 1;
    t.entry[i] = c;
  }
  return t;
}

constexpr CrcTable kCrcTable = make_crc_table();

// `bytes` little-endian bytes of `value` (independent of the machine's byte order).
void put_little_endian(std::string& out, std::uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) out += static_cast<char>((value >> (8 * i)) & 0xFFu);
}

std::uint32_t png_u32(const std::string& s, std::size_t at) {
  std::uint32_t v = 0;
  for (std::size_t i = 0; i < 4; ++i) v = (v << 8) | static_cast<unsigned char>(s[at + i]);
  return v;
}

std::string event_host_name() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0 || !buf[0]) return "localhost";
  return buf;
}

// An Event's wall_time and step, the fields every record starts with.
ProtoMessage event_at(double wall_time, std::int64_t step) {
  ProtoMessage event;
  event.double_field(1, wall_time).varint(2, static_cast<std::uint64_t>(step));
  return event;
}

ProtoMessage summary_with(const ProtoMessage& value) {
  ProtoMessage summary;
  summary.message(1, value);
  return summary;
}

}  // namespace

std::uint32_t crc32c(const void* data, std::size_t size, std::uint32_t crc) {
  const auto* p = static_cast<const unsigned char*>(data);
  crc = ~crc;
  for (std::size_t i = 0; i < size; ++i) crc = kCrcTable.entry[(crc ^ p[i]) & 0xFFu] ^ (crc >> 8);
  return ~crc;
}

std::uint32_t masked_crc32c(std::uint32_t crc) { return ((crc >> 15) | (crc << 17)) + kCrcMaskDelta; }

std::string tfrecord(const std::string& data) {
  std::string out;
  out.reserve(data.size() + 16);
  put_little_endian(out, data.size(), 8);
  put_little_endian(out, masked_crc32c(crc32c(out.data(), 8)), 4);
  out += data;
  put_little_endian(out, masked_crc32c(crc32c(data.data(), data.size())), 4);
  return out;
}

void append_varint(std::string& out, std::uint64_t value) {
  while (value >= 0x80) {
    out += static_cast<char>((value & 0x7Fu) | 0x80u);
    value >>= 7;
  }
  out += static_cast<char>(value);
}

void ProtoMessage::key(int field, int wire_type) {
  append_varint(data_, (static_cast<std::uint64_t>(field) << 3) | static_cast<std::uint64_t>(wire_type));
}

ProtoMessage& ProtoMessage::varint(int field, std::uint64_t value) {
  key(field, 0);
  append_varint(data_, value);
  return *this;
}

ProtoMessage& ProtoMessage::double_field(int field, double value) {
  std::uint64_t bits = 0;
  std::memcpy(&bits, &value, sizeof bits);
  key(field, 1);
  put_little_endian(data_, bits, 8);
  return *this;
}

ProtoMessage& ProtoMessage::float_field(int field, float value) {
  std::uint32_t bits = 0;
  std::memcpy(&bits, &value, sizeof bits);
  key(field, 5);
  put_little_endian(data_, bits, 4);
  return *this;
}

ProtoMessage& ProtoMessage::bytes(int field, const std::string& value) {
  key(field, 2);
  append_varint(data_, value.size());
  data_ += value;
  return *this;
}

ProtoMessage& ProtoMessage::message(int field, const ProtoMessage& message) { return bytes(field, message.data()); }

double unix_now() { return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count(); }

std::string event_file_name(double wall_time, const std::string& host) {
  return "events.out.tfevents." + std::to_string(static_cast<long long>(std::floor(wall_time))) + "." + sanitize(host);
}

bool read_png_info(const std::string& bytes, PngInfo& info) {
  static const char kSignature[] = "\x89PNG\r\n\x1a\n";
  if (bytes.size() < 26 || bytes.compare(0, 8, kSignature, 8) != 0 || bytes.compare(12, 4, "IHDR") != 0) return false;
  const std::uint32_t width = png_u32(bytes, 16), height = png_u32(bytes, 20);
  if (width == 0 || height == 0 || width > 0x7FFFFFFFu || height > 0x7FFFFFFFu) return false;
  int colorspace = 0;
  switch (static_cast<unsigned char>(bytes[25])) {  // PNG colour type
    case 0:
      colorspace = 1;
      break;  // grey
    case 4:
      colorspace = 2;
      break;  // grey + alpha
    case 2:   // RGB
    case 3:
      colorspace = 3;
      break;  // palette
    case 6:
      colorspace = 4;
      break;  // RGBA
    default:
      return false;
  }
  info = {static_cast<int>(width), static_cast<int>(height), colorspace};
  return true;
}

// ---- EventWriter ----------------------------------------------------------------------------

EventWriter::EventWriter(const std::string& dir, double file_time) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw FileWriteError(dir, ec.message());
  path_ = (fs::path(dir) / event_file_name(file_time, event_host_name())).string();
  fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) throw FileWriteError(path_, std::strerror(errno));
  ProtoMessage event = event_at(file_time, 0);
  event.bytes(3, "brain.Event:2");
  write_event(event);
}

EventWriter::~EventWriter() {
  if (fd_ >= 0) ::close(fd_);
}

void EventWriter::write_event(const ProtoMessage& event) {
  if (fd_ < 0) throw FileWriteError(path_, "the event file was closed");
  const std::string record = tfrecord(event.data());
  const char* p = record.data();
  std::size_t left = record.size();
  while (left > 0) {
    const ssize_t n = ::write(fd_, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw FileWriteError(path_, n < 0 ? std::strerror(errno) : "nothing was written");
    p += n;
    left -= static_cast<std::size_t>(n);
  }
  ++events_;
}

void EventWriter::add_scalar(const std::string& tag, std::int64_t step, double value, double wall_time) {
  add_scalars(step, {{tag, value}}, wall_time);
}

void EventWriter::add_scalars(std::int64_t step, const std::vector<ScalarValue>& values, double wall_time) {
  ProtoMessage summary;
  for (const ScalarValue& v : values) {
    ProtoMessage value;
    value.bytes(1, v.tag).float_field(2, static_cast<float>(v.value));
    summary.message(1, value);
  }
  ProtoMessage event = event_at(wall_time, step);
  event.message(5, summary);
  write_event(event);
}

void EventWriter::add_text(const std::string& tag, std::int64_t step, const std::string& text, double wall_time) {
  ProtoMessage plugin;
  plugin.bytes(1, "text");  // content: the text plugin's TextPluginData{version 0}, which encodes as nothing
  ProtoMessage metadata;
  metadata.message(1, plugin);
  ProtoMessage tensor;
  tensor.varint(1, kDtString).message(2, ProtoMessage()).bytes(8, text);  // shape []: a scalar
  ProtoMessage value;
  value.bytes(1, tag).message(8, tensor).message(9, metadata);
  ProtoMessage event = event_at(wall_time, step);
  event.message(5, summary_with(value));
  write_event(event);
}

void EventWriter::add_image(const std::string& tag, std::int64_t step, const std::string& png, int height, int width,
                            int colorspace, double wall_time) {
  ProtoMessage image;
  image.varint(1, static_cast<std::uint64_t>(height))
      .varint(2, static_cast<std::uint64_t>(width))
      .varint(3, static_cast<std::uint64_t>(colorspace))
      .bytes(4, png);
  ProtoMessage value;
  value.bytes(1, tag).message(4, image);
  ProtoMessage event = event_at(wall_time, step);
  event.message(5, summary_with(value));
  write_event(event);
}

void EventWriter::close() {
  if (fd_ < 0) return;
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) throw FileWriteError(path_, std::strerror(errno));
}

}  // namespace blocklab
