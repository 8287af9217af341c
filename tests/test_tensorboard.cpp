// TensorBoard event files (analysis/tensorboard.h): CRC-32C and its mask on known vectors,
// protobuf varints and fields, TFRecord framing read back by a small reader here, EventWriter's
// events decoded field by field, and `blocklab export --tensorboard` end to end on the curves
// fixtures (tests/fixtures/curves/runs). tests/interop/tensorboard_roundtrip.py reads the export
// of a real run back with TensorBoard's own reader.
#include <catch2/catch.hpp>

#include <cairo.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "analysis/curves.h"
#include "analysis/run_records.h"
#include "analysis/tensorboard.h"
#include "experiments/run_files.h"
#include "golden.h"
#include "process_support.h"

namespace BLOCKLAB_TEST_FILE {

namespace fs = std::filesystem;
using namespace blocklab;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;

namespace {

const std::string kTbFixtures = std::string(BLOCKLAB_TEST_DIR) + "/fixtures/curves";

std::string tb_bytes(std::initializer_list<int> values) {
  std::string s;
  for (int v : values) s += static_cast<char>(v);
  return s;
}

std::string tb_varint(std::uint64_t v) {
  std::string s;
  append_varint(s, v);
  return s;
}

std::uint64_t tb_little_endian(const std::string& s, std::size_t at, int bytes) {
  std::uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i)
    v = (v << 8) | static_cast<unsigned char>(s.at(at + static_cast<std::size_t>(i)));
  return v;
}

// The records of an event file, each checked against its framing (length, masked CRCs).
std::vector<std::string> tb_records(const std::string& file) {
  std::vector<std::string> out;
  std::size_t at = 0;
  while (at < file.size()) {
    REQUIRE(file.size() - at >= 16);
    const std::uint64_t n = tb_little_endian(file, at, 8);
    REQUIRE(file.size() - at - 16 >= n);
    CHECK(tb_little_endian(file, at + 8, 4) == masked_crc32c(crc32c(file.data() + at, 8)));
    std::string data = file.substr(at + 12, n);
    CHECK(tb_little_endian(file, at + 12 + n, 4) == masked_crc32c(crc32c(data.data(), data.size())));
    out.push_back(std::move(data));
    at += 16 + n;
  }
  return out;
}

struct TbField {
  int number = 0, wire = 0;
  std::uint64_t value = 0;  // wire types 0, 1 and 5
  std::string bytes;        // wire type 2
};

std::uint64_t tb_read_varint(const std::string& s, std::size_t& at) {
  std::uint64_t v = 0;
  for (int shift = 0;; shift += 7) {
    REQUIRE(at < s.size());
    REQUIRE(shift < 64);
    const auto b = static_cast<unsigned char>(s[at++]);
    v |= static_cast<std::uint64_t>(b & 0x7Fu) << shift;
    if (!(b & 0x80u)) return v;
  }
}

// A protobuf message's fields, in order.
std::vector<TbField> tb_fields(const std::string& m) {
  std::vector<TbField> out;
  std::size_t at = 0;
  while (at < m.size()) {
    TbField f;
    const std::uint64_t key = tb_read_varint(m, at);
    f.number = static_cast<int>(key >> 3);
    f.wire = static_cast<int>(key & 7u);
    if (f.wire == 0) {
      f.value = tb_read_varint(m, at);
    } else if (f.wire == 1 || f.wire == 5) {
      const int n = f.wire == 1 ? 8 : 4;
      REQUIRE(m.size() - at >= static_cast<std::size_t>(n));
      f.value = tb_little_endian(m, at, n);
      at += static_cast<std::size_t>(n);
    } else {
      REQUIRE(f.wire == 2);
      const std::uint64_t n = tb_read_varint(m, at);
      REQUIRE(m.size() - at >= n);
      f.bytes = m.substr(at, n);
      at += n;
    }
    out.push_back(std::move(f));
  }
  return out;
}

const TbField* tb_find(const std::vector<TbField>& fields, int number) {
  for (const TbField& f : fields)
    if (f.number == number) return &f;
  return nullptr;
}

const TbField& tb_field(const std::vector<TbField>& fields, int number) {
  const TbField* f = tb_find(fields, number);
  INFO("field " << number);
  REQUIRE(f != nullptr);
  return *f;
}

double tb_double(const TbField& f) {
  REQUIRE(f.wire == 1);
  double d = 0;
  std::memcpy(&d, &f.value, sizeof d);
  return d;
}

float tb_float(const TbField& f) {
  REQUIRE(f.wire == 5);
  const auto bits = static_cast<std::uint32_t>(f.value);
  float x = 0;
  std::memcpy(&x, &bits, sizeof x);
  return x;
}

// An Event as read here: its wall time, step, file_version and summary values (decoded).
struct TbEvent {
  double wall_time = 0;
  std::int64_t step = 0;
  std::string file_version;
  std::vector<std::vector<TbField>> values;
};

std::vector<TbEvent> tb_read_events(const fs::path& file) {
  std::vector<TbEvent> events;
  for (const std::string& record : tb_records(testing::slurp(file))) {
    const std::vector<TbField> fields = tb_fields(record);
    TbEvent e;
    e.wall_time = tb_double(tb_field(fields, 1));
    if (const TbField* step = tb_find(fields, 2)) e.step = static_cast<std::int64_t>(step->value);
    if (const TbField* version = tb_find(fields, 3)) e.file_version = version->bytes;
    if (const TbField* summary = tb_find(fields, 5))
      for (const TbField& value : tb_fields(summary->bytes)) {
        REQUIRE(value.number == 1);
        e.values.push_back(tb_fields(value.bytes));
      }
    events.push_back(std::move(e));
  }
  return events;
}

std::string tb_tag(const std::vector<TbField>& value) { return tb_field(value, 1).bytes; }

// Every simple_value in the events: tag -> step -> value.
std::map<std::string, std::map<std::int64_t, float>> tb_scalars(const std::vector<TbEvent>& events) {
  std::map<std::string, std::map<std::int64_t, float>> out;
  for (const TbEvent& e : events)
    for (const auto& value : e.values)
      if (const TbField* simple = tb_find(value, 2)) {
        CHECK(out[tb_tag(value)].count(e.step) == 0);  // one value per tag and step
        out[tb_tag(value)][e.step] = tb_float(*simple);
      }
  return out;
}

// The value tagged `tag` and the event holding it.
std::pair<const TbEvent*, const std::vector<TbField>*> tb_value(const std::vector<TbEvent>& events,
                                                                const std::string& tag) {
  for (const TbEvent& e : events)
    for (const auto& value : e.values)
      if (tb_tag(value) == tag) return {&e, &value};
  FAIL("no value tagged " << tag);
  return {nullptr, nullptr};
}

std::vector<fs::path> tb_event_files(const fs::path& dir) {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().rfind("events.out.tfevents.", 0) == 0) out.push_back(e.path());
  return out;
}

// A PNG of `width` x `height` drawn by cairo (ARGB32: RGBA in the file; RGB24: RGB).
std::string tb_png(const fs::path& path, int width, int height, cairo_format_t format = CAIRO_FORMAT_ARGB32) {
  cairo_surface_t* s = cairo_image_surface_create(format, width, height);
  cairo_t* cr = cairo_create(s);
  cairo_set_source_rgba(cr, 0.2, 0.4, 0.8, 0.5);
  cairo_paint(cr);
  cairo_destroy(cr);
  fs::create_directories(path.parent_path());
  REQUIRE(cairo_surface_write_to_png(s, path.c_str()) == CAIRO_STATUS_SUCCESS);
  cairo_surface_destroy(s);
  return testing::slurp(path);
}

testing::CommandResult tb_export(const std::string& args) { return testing::blocklab_command("export " + args); }

}  // namespace

TEST_CASE("CRC-32C: known vectors, continuation and the TFRecord mask", "[tensorboard]") {
  const std::string digits = "123456789";
  CHECK(crc32c(digits.data(), digits.size()) == 0xE3069283u);
  const std::string zeros(32, '\0'), ones(32, '\xFF');
  CHECK(crc32c(zeros.data(), zeros.size()) == 0x8A9136AAu);  // RFC 3720, B.4
  CHECK(crc32c(ones.data(), ones.size()) == 0x62A8AB43u);
  std::string ascending, descending;
  for (int i = 0; i < 32; ++i) ascending += static_cast<char>(i), descending += static_cast<char>(31 - i);
  CHECK(crc32c(ascending.data(), ascending.size()) == 0x46DD794Eu);
  CHECK(crc32c(descending.data(), descending.size()) == 0x113FDB5Cu);
  CHECK(crc32c(digits.data(), 0) == 0u);
  // A CRC continued over more bytes equals the CRC of the whole.
  CHECK(crc32c(digits.data() + 4, 5, crc32c(digits.data(), 4)) == 0xE3069283u);
  // The mask (values from TensorBoard's own masked_crc32c).
  CHECK(masked_crc32c(0) == 0xa282ead8u);
  CHECK(masked_crc32c(0xE3069283u) == 0xc78ab0e5u);
  CHECK(masked_crc32c(0x80000000u) == ((0x80000000u >> 15) + 0xa282ead8u));
}

TEST_CASE("protobuf varints and fields follow the wire format", "[tensorboard]") {
  CHECK(tb_varint(0) == tb_bytes({0x00}));
  CHECK(tb_varint(1) == tb_bytes({0x01}));
  CHECK(tb_varint(127) == tb_bytes({0x7F}));
  CHECK(tb_varint(128) == tb_bytes({0x80, 0x01}));
  CHECK(tb_varint(300) == tb_bytes({0xAC, 0x02}));
  CHECK(tb_varint(1ull << 32) == tb_bytes({0x80, 0x80, 0x80, 0x80, 0x10}));
  // A negative int64 (as protobuf writes it: ten bytes).
  CHECK(tb_varint(static_cast<std::uint64_t>(std::int64_t{-1})) ==
        tb_bytes({0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01}));

  CHECK(ProtoMessage().varint(2, 150).data() == tb_bytes({0x10, 0x96, 0x01}));
  CHECK(ProtoMessage().varint(16, 1).data() == tb_bytes({0x80, 0x01, 0x01}));  // a two-byte key
  CHECK(ProtoMessage().double_field(1, 1.0).data() == tb_bytes({0x09, 0, 0, 0, 0, 0, 0, 0xF0, 0x3F}));
  CHECK(ProtoMessage().float_field(2, 0.5f).data() == tb_bytes({0x15, 0, 0, 0, 0x3F}));
  CHECK(ProtoMessage().bytes(3, "brain").data() == tb_bytes({0x1A, 0x05, 'b', 'r', 'a', 'i', 'n'}));
  ProtoMessage inner;
  inner.bytes(1, "a").float_field(2, -2.0f);
  CHECK(ProtoMessage().message(5, inner).data() == tb_bytes({0x2A, 0x08, 0x0A, 0x01, 'a', 0x15, 0, 0, 0, 0xC0}));
  CHECK(ProtoMessage().message(2, ProtoMessage()).data() == tb_bytes({0x12, 0x00}));  // an empty message
}

TEST_CASE("a TFRecord is the length, its masked CRC, the data and its masked CRC", "[tensorboard]") {
  const std::string record = tfrecord("hello");
  // CRCs from TensorBoard's own masked_crc32c.
  CHECK(record ==
        tb_bytes({5, 0, 0, 0, 0, 0, 0, 0, 0xea, 0xb2, 0x04, 0x3e}) + "hello" + tb_bytes({0xbb, 0x1f, 0x1c, 0x19}));
  const std::string big(300, 'x');
  CHECK(tb_records(tfrecord("hello") + tfrecord("") + tfrecord(big)) == std::vector<std::string>{"hello", "", big});
  CHECK(tfrecord("").size() == 16);
}

TEST_CASE("event file names and PNG headers", "[tensorboard]") {
  CHECK(event_file_name(1700000000.9, "node7.cluster") == "events.out.tfevents.1700000000.node7.cluster");
  CHECK(event_file_name(1700000000.0, "a b/c") == "events.out.tfevents.1700000000.a_b_c");

  testing::TempDir dir;
  PngInfo info;
  REQUIRE(read_png_info(tb_png(dir.path / "rgba.png", 5, 3), info));
  CHECK(info.width == 5);
  CHECK(info.height == 3);
  CHECK(info.colorspace == 4);
  REQUIRE(read_png_info(tb_png(dir.path / "rgb.png", 2, 7, CAIRO_FORMAT_RGB24), info));
  CHECK(info.width == 2);
  CHECK(info.height == 7);
  CHECK(info.colorspace == 3);
  const std::string png = testing::slurp(dir.path / "rgba.png");
  CHECK_FALSE(read_png_info(png.substr(0, 20), info));  // cut before the size
  CHECK_FALSE(read_png_info("GIF89a" + png.substr(6), info));
  CHECK_FALSE(read_png_info("", info));
}

TEST_CASE("EventWriter writes file_version, scalars, text and images as Event records", "[tensorboard]") {
  testing::TempDir dir;
  const std::string png = tb_png(dir.path / "map.png", 5, 3);
  const fs::path logs = dir.path / "logs" / "run";
  std::string path;
  {
    EventWriter w(logs.string(), 1700000000.25);
    path = w.path();
    w.add_scalar("train/loss", 4, 1.5, 1700000001.0);
    w.add_scalars(8, {{"a", 1.0}, {"b", -2.0}}, 1700000002.0);
    w.add_text("config", 0, "```yaml\na: 1\n```\n", 1700000003.0);
    w.add_image("attn/map", 8, png, 3, 5, 4, 1700000004.0);
    CHECK(w.events() == 5);
    w.close();
    CHECK_THROWS_AS(w.add_scalar("late", 9, 0.0), FileWriteError);
  }
  CHECK_THAT(fs::path(path).filename().string(), StartsWith("events.out.tfevents.1700000000."));
  CHECK(fs::path(path).parent_path() == logs);

  const std::vector<TbEvent> events = tb_read_events(path);
  REQUIRE(events.size() == 5);
  CHECK(events[0].file_version == "brain.Event:2");
  CHECK(events[0].wall_time == 1700000000.25);
  CHECK(events[0].values.empty());

  CHECK(events[1].step == 4);
  CHECK(events[1].wall_time == 1700000001.0);
  REQUIRE(events[1].values.size() == 1);
  CHECK(tb_tag(events[1].values[0]) == "train/loss");
  CHECK(tb_float(tb_field(events[1].values[0], 2)) == 1.5f);
  REQUIRE(events[2].values.size() == 2);  // one event, two values
  CHECK(tb_tag(events[2].values[1]) == "b");
  CHECK(tb_float(tb_field(events[2].values[1], 2)) == -2.0f);

  // Text: a scalar DT_STRING tensor with the text plugin's metadata.
  const auto& text = events[3].values.at(0);
  CHECK(tb_tag(text) == "config");
  const std::vector<TbField> tensor = tb_fields(tb_field(text, 8).bytes);
  CHECK(tb_field(tensor, 1).value == 7);     // DT_STRING
  CHECK(tb_field(tensor, 2).bytes.empty());  // shape []: a scalar
  CHECK(tb_field(tensor, 8).bytes == "```yaml\na: 1\n```\n");
  const std::vector<TbField> plugin = tb_fields(tb_field(tb_fields(tb_field(text, 9).bytes), 1).bytes);
  CHECK(tb_field(plugin, 1).bytes == "text");

  // Image: height, width, colorspace and the PNG's bytes.
  CHECK(events[4].step == 8);
  const auto& image_value = events[4].values.at(0);
  CHECK(tb_tag(image_value) == "attn/map");
  const std::vector<TbField> image = tb_fields(tb_field(image_value, 4).bytes);
  CHECK(tb_field(image, 1).value == 3);
  CHECK(tb_field(image, 2).value == 5);
  CHECK(tb_field(image, 3).value == 4);
  CHECK(tb_field(image, 4).bytes == png);
}

TEST_CASE("EventWriter: a directory that cannot be made is a FileWriteError naming it", "[tensorboard]") {
  testing::TempDir dir;
  std::ofstream(dir.path / "file") << "not a directory";
  const std::string where = (dir.path / "file" / "logs").string();
  const std::string error = testing::error_text([&] { EventWriter w(where); });
  CHECK_THAT(error, StartsWith("cannot write " + where + ": "));
}

TEST_CASE("blocklab export --tensorboard writes a run's metrics, config and attention maps", "[tensorboard]") {
  testing::TempDir dir;
  const fs::path run = dir.path / "runs" / "tiny" / "3f2a9c01b7d4";
  fs::create_directories(run.parent_path());
  fs::copy(kTbFixtures + "/runs/lr_big_s0", run, fs::copy_options::recursive);
  const std::string png = tb_png(run / "attn" / "map.png", 6, 4);
  std::ofstream(run / "attn" / "broken.png") << "not a png";

  const auto r = tb_export("--tensorboard " + run.string());
  INFO(r.err);
  REQUIRE(r.status == 0);
  const fs::path out = run / "tensorboard" / "3f2a9c01b7d4";  // default: <input>/tensorboard/<label>
  const std::vector<fs::path> files = tb_event_files(out);
  REQUIRE(files.size() == 1);
  CHECK_THAT(r.err, Contains("note: left out " + (run / "attn" / "broken.png").string() + ": not a readable PNG"));
  // 3 training metrics x 4 steps + 3 evaluation metrics x 2 steps, and the 6 of them per epoch (2).
  CHECK_THAT(r.err,
             Contains("wrote " + files[0].string() + ": 30 scalars (4 steps, 2 epochs), config, 1 attention maps\n"));

  const std::vector<TbEvent> events = tb_read_events(files[0]);
  CHECK(events.at(0).file_version == "brain.Event:2");
  const auto scalars = tb_scalars(events);
  CHECK(scalars.size() == 12);
  using Points = std::map<std::int64_t, float>;
  CHECK(scalars.at("train/loss") == Points{{2, 2.1f}, {4, 1.2f}, {6, 0.9f}, {8, 0.7f}});
  CHECK(scalars.at("train/lr") == Points{{2, 0.0005f}, {4, 0.001f}, {6, 0.001f}, {8, 0.0005f}});
  CHECK(scalars.at("train/images_per_s").size() == 4);
  CHECK(scalars.at("test/acc") == Points{{4, 0.6f}, {8, 0.72f}});
  CHECK(scalars.at("eval_time_s") == Points{{4, 0.01f}, {8, 0.01f}});
  // Per epoch: the last value each metric logged in the epoch.
  CHECK(scalars.at("epoch/train/loss") == Points{{1, 1.2f}, {2, 0.7f}});
  CHECK(scalars.at("epoch/test/loss") == Points{{1, 1.1f}, {2, 0.8f}});
  // Wall times follow the steps.
  CHECK(tb_value(events, "train/loss").first->wall_time <= tb_value(events, "test/acc").first->wall_time);

  const auto config = tb_value(events, "config");
  CHECK(config.first->step == 0);
  const std::vector<TbField> tensor = tb_fields(tb_field(*config.second, 8).bytes);
  CHECK(tb_field(tensor, 8).bytes == "```yaml\n" + testing::slurp(run / "config.yaml") + "```\n");

  const auto image = tb_value(events, "attn/map");
  CHECK(image.first->step == 8);  // the run's last step
  const std::vector<TbField> fields = tb_fields(tb_field(*image.second, 4).bytes);
  CHECK(tb_field(fields, 1).value == 4);
  CHECK(tb_field(fields, 2).value == 6);
  CHECK(tb_field(fields, 4).bytes == png);

  // Exporting again replaces the file: TensorBoard must not read the run twice.
  const auto again = tb_export("--tensorboard " + run.string());
  CHECK(again.status == 0);
  CHECK_THAT(again.err, Contains("(replacing 1 earlier event file(s))"));
  CHECK(tb_event_files(out).size() == 1);
}

TEST_CASE("blocklab export of a directory of runs: one directory per run, labelled as plot labels them",
          "[tensorboard]") {
  testing::TempDir dir;
  const fs::path out = dir.path / "tb";
  const auto r = tb_export("--tensorboard fixtures/curves/runs --out " + out.string());
  INFO(r.err);
  REQUIRE(r.status == 0);
  const CurveSet set = load_curves(load_run_records({kTbFixtures + "/runs"}));
  REQUIRE(set.runs.size() == 4);
  std::size_t folders = 0;
  for (const auto& e : fs::directory_iterator(out)) folders += e.is_directory() ? 1 : 0;
  CHECK(folders == 4);
  for (const CurveRun& run : set.runs) {
    INFO(run.label);
    CHECK_THAT(run.label, Contains("trainer.lr="));
    REQUIRE(fs::is_directory(out / run.label));
    const std::vector<fs::path> files = tb_event_files(out / run.label);
    REQUIRE(files.size() == 1);
    CHECK(tb_scalars(tb_read_events(files[0])).at("train/loss").size() == run.curves.find("loss")->value.size());
  }
  CHECK_THAT(r.err, Contains("exported 4 run(s); view them with: tensorboard --logdir " + out.string()));
}

TEST_CASE("blocklab export errors name the path and the fix", "[tensorboard]") {
  testing::TempDir dir;
  const std::string out = (dir.path / "o").string();
  const auto no_format = tb_export("fixtures/curves/runs/lr_big_s0 --out " + out);
  CHECK(no_format.status == 2);
  CHECK_THAT(no_format.err, Contains("--tensorboard"));
  CHECK(tb_export("--tensorboard --out " + out).status == 2);

  const auto not_run = tb_export("--tensorboard fixtures/conf --out " + out);
  CHECK(not_run.status == 2);
  CHECK_THAT(not_run.err, Contains("'fixtures/conf' is not a run directory"));

  const auto missing = tb_export("--tensorboard fixtures/curves/no_metrics --out " + out);
  CHECK(missing.status == 2);
  CHECK_THAT(missing.err, Contains("missing file fixtures/curves/no_metrics/metrics.jsonl"));

  const auto nothing = tb_export("--tensorboard fixtures/curves/started --out " + out);
  CHECK(nothing.status == 2);
  CHECK_THAT(nothing.err, Contains("nothing to export from fixtures/curves/started"));

  const auto several = tb_export("--tensorboard fixtures/curves/runs/lr_big_s0 fixtures/curves/runs/lr_small_s0");
  CHECK(several.status == 2);
  CHECK_THAT(several.err, Contains("say which with --out DIR"));
  CHECK_FALSE(fs::exists(out));  // nothing written on errors

  std::ofstream(dir.path / "file") << "not a directory";
  const auto unwritable =
      tb_export("--tensorboard fixtures/curves/runs/lr_big_s0 --out " + (dir.path / "file").string());
  CHECK(unwritable.status == 2);
  CHECK_THAT(unwritable.err, Contains("cannot write into " + (dir.path / "file").string()));
  CHECK_THAT(unwritable.err, Contains("--out DIR"));

  CHECK_THAT(tb_export("--help").out, StartsWith("Usage: blocklab export"));
}

}  // namespace BLOCKLAB_TEST_FILE
