// TensorBoard event files, written without TensorFlow or a protobuf library (the format is small).
//
// An event file (events.out.tfevents.<unix seconds>.<host>; TensorBoard finds files by the
// "tfevents" in their name) is a sequence of TFRecords, each holding one serialised Event:
//   record  = uint64 length (little-endian) | uint32 masked CRC-32C of those 8 bytes
//             | data | uint32 masked CRC-32C of the data
//   mask    = ((crc >> 15) | (crc << 17)) + 0xa282ead8
// Field numbers (checked against the descriptors of TensorBoard 2.21's compat/proto: event,
// summary, tensor, tensor_shape, types):
//   Event           wall_time 1 (double), step 2 (int64), file_version 3 (string), summary 5
//   Summary         value 1 (repeated Value)
//   Value           tag 1, simple_value 2 (float), image 4 (Image), tensor 8 (TensorProto),
//                   metadata 9 (SummaryMetadata)
//   Image           height 1, width 2, colorspace 3, encoded_image_string 4 (PNG bytes)
//   SummaryMetadata plugin_data 1 {plugin_name 1, content 2}
//   TensorProto     dtype 1 (DT_STRING = 7), tensor_shape 2 {dim 2 {size 1}}, string_val 8
//
// Decisions:
//   - The first record is file_version "brain.Event:2", as TensorFlow's writer starts.
//   - Every record goes to the file with one write(2) ("writes through"): TensorBoard can watch
//     a file while it grows, and a crash leaves every whole record readable.
//   - Scalars are simple_value (float32), what TensorBoard stores and shows; TensorBoard turns
//     them into its scalars plugin's data itself, as it does for Value.image.
//   - Text is a scalar string tensor (shape [], no dim), as tf.summary.text writes it, with the
//     "text" plugin's metadata: TensorBoard renders a scalar as markdown, where a shape [1]
//     tensor would be drawn as a table of one cell.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace blocklab {

// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), table-driven; "123456789" gives
// 0xE3069283. `crc` continues an earlier call's result over more bytes.
std::uint32_t crc32c(const void* data, std::size_t size, std::uint32_t crc = 0);
// The masked CRC TFRecords carry (a CRC over data holding CRCs is easy to get wrong otherwise).
std::uint32_t masked_crc32c(std::uint32_t crc);
// One TFRecord: the framing above around `data`.
std::string tfrecord(const std::string& data);

// `value` as a protobuf base-128 varint appended to `out` (negative int64 values take 10 bytes,
// as protobuf writes them).
void append_varint(std::string& out, std::uint64_t value);

// A protobuf message in wire format, field by field: just what Event needs.
class ProtoMessage {
 public:
  ProtoMessage& varint(int field, std::uint64_t value);           // int32, int64, enum (wire type 0)
  ProtoMessage& double_field(int field, double value);            // fixed64 (wire type 1)
  ProtoMessage& float_field(int field, float value);              // fixed32 (wire type 5)
  ProtoMessage& bytes(int field, const std::string& value);       // string, bytes (wire type 2)
  ProtoMessage& message(int field, const ProtoMessage& message);  // a nested message (wire type 2)
  const std::string& data() const { return data_; }

 private:
  void key(int field, int wire_type);
  std::string data_;
};

// Seconds since the Unix epoch, with the fraction.
double unix_now();

// "events.out.tfevents.<whole seconds of wall_time>.<host>" (host: characters other than
// [A-Za-z0-9._-] as '_').
std::string event_file_name(double wall_time, const std::string& host);

// What TensorBoard needs to know about a PNG: its IHDR's size and the colour type as Summary.Image
// colorspace (1 grey, 2 grey + alpha, 3 RGB or palette, 4 RGBA).
struct PngInfo {
  int width = 0, height = 0, colorspace = 0;
};
// false when `bytes` does not start with a PNG signature and an IHDR chunk.
bool read_png_info(const std::string& bytes, PngInfo& info);

struct ScalarValue {
  std::string tag;
  double value = 0;
};

// One event file. Every add_ call writes one Event at once; a failed write throws FileWriteError
// (experiments/run_files.h) naming the file. Tags are TensorBoard's ("train/loss"): a '/'
// groups charts.
class EventWriter {
 public:
  // Creates `dir` (and its parents) and events.out.tfevents.<seconds of file_time>.<host> in it
  // (replacing a file of that name), and writes the file_version record.
  explicit EventWriter(const std::string& dir, double file_time = unix_now());
  ~EventWriter();  // closes the file; call close() to see its errors
  EventWriter(const EventWriter&) = delete;
  EventWriter& operator=(const EventWriter&) = delete;

  void add_scalar(const std::string& tag, std::int64_t step, double value, double wall_time = unix_now());
  // Several scalars of one step as one Event.
  void add_scalars(std::int64_t step, const std::vector<ScalarValue>& values, double wall_time = unix_now());
  // `text` is shown as markdown by TensorBoard's text plugin.
  void add_text(const std::string& tag, std::int64_t step, const std::string& text, double wall_time = unix_now());
  // `png` is the whole PNG file; height, width and colorspace as read_png_info gives them.
  void add_image(const std::string& tag, std::int64_t step, const std::string& png, int height, int width,
                 int colorspace = 4, double wall_time = unix_now());
  void close();  // throws FileWriteError when the file cannot be closed

  const std::string& path() const { return path_; }
  std::size_t events() const { return events_; }  // records written, file_version included

 private:
  void write_event(const ProtoMessage& event);
  std::string path_;
  int fd_ = -1;
  std::size_t events_ = 0;
};

}  // namespace blocklab
