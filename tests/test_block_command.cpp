// `blocklab block`: one block on a .npy input, its state dict for torch.load, and its errors.
// The comparison with Python references is in tests/diff/ (CTest diff_*); these tests check
// the command itself: .npy I/O, the state dict round trip, kinds, and every refusal.
#include <catch2/catch.hpp>

#include <cmath>
#include <fstream>
#include <iterator>
#include <set>

#include "analysis/npy.h"
#include "golden.h"
#include "process_support.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;
using blocklab::testing::blocklab_command;

namespace {

void check_golden(const std::string& name, const std::string& text) {
  const std::string mismatch = testing::golden_mismatch(name, text);
  INFO(mismatch);
  CHECK(mismatch.empty());
}

// A temporary directory holding x.npy: [2, 9, 16] float32 values (a 3x3 grid of 16-wide tokens).
struct BlockDir {
  testing::TempDir tmp;
  std::string dir = tmp.path.string();
  BlockDir() {
    write("x.npy", {2, 9, 16});
    write("wide.npy", {2, 9, 32});
  }
  void write(const std::string& name, const std::vector<std::int64_t>& shape) const {
    std::vector<float> v(static_cast<std::size_t>(shape[0] * shape[1] * shape[2]));
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(std::sin(0.37 * static_cast<double>(i)));
    write_npy(dir + "/" + name, shape, v.data());
  }
  testing::CommandResult block(const std::string& args) const { return blocklab_command("block " + args, dir); }
  std::vector<double> read(const std::string& name, std::vector<std::int64_t>& shape) const {
    bool f64 = false;
    return read_npy_f64(dir + "/" + name, shape, f64);
  }
  torch::Tensor output(const std::string& name) const {
    std::vector<std::int64_t> shape;
    std::vector<double> v = read(name, shape);
    return torch::from_blob(v.data(), shape, torch::kFloat64).clone();
  }
  c10::Dict<c10::IValue, c10::IValue> state(const std::string& name) const {
    std::ifstream in(dir + "/" + name, std::ios::binary);
    const std::vector<char> bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    return torch::pickle_load(bytes).toGenericDict();
  }
};

// "$ blocklab block <args>" and what it printed on stderr, for each case; each must exit `status`.
std::string transcript(const BlockDir& d, const std::vector<std::string>& cases, int status) {
  std::string text;
  for (const std::string& args : cases) {
    const auto r = d.block(args);
    INFO(args << "\n" << r.err);
    CHECK(r.status == status);
    text += "$ blocklab block " + args + "\n" + r.err;
  }
  return text;
}

const std::string kGpsa = "attention/gpsa --set heads=4 --grid 3x3 --input x.npy";

}  // namespace

TEST_CASE("npy: float64 arrays round trip, float32 ones widen exactly", "[block]") {
  testing::TempDir tmp;
  const std::string f64 = (tmp.path / "a.npy").string(), f32 = (tmp.path / "b.npy").string();
  const std::vector<double> values = {1.0 / 3.0, -2.5e-300, 7.0, 0.1, 1e300, -0.0};
  write_npy(f64, {2, 3}, values.data());
  const std::vector<float> floats = {0.1f, -3.25f, 1e-30f};
  write_npy(f32, {3}, floats.data());

  std::vector<std::int64_t> shape;
  bool is_f64 = false;
  CHECK(read_npy_f64(f64, shape, is_f64) == values);
  CHECK(shape == std::vector<std::int64_t>{2, 3});
  CHECK(is_f64);
  const std::vector<double> widened = read_npy_f64(f32, shape, is_f64);
  CHECK(widened == std::vector<double>{double(0.1f), -3.25, double(1e-30f)});
  CHECK(shape == std::vector<std::int64_t>{3});
  CHECK_FALSE(is_f64);
  CHECK(testing::error_text([&] { read_npy_f32(f64, shape); }) ==
        "cannot read " + f64 + ": dtype '<f8' is not little-endian float32 ('<f4')");
  const std::vector<std::int64_t> ints = {1, 2};
  write_npy(f32, {2}, ints.data());
  CHECK(testing::error_text([&] { read_npy_f64(f32, shape, is_f64); }) ==
        "cannot read " + f32 + ": dtype '<i8' is not little-endian float32 or float64 ('<f4', '<f8')");
}

TEST_CASE("block: the state dict carries the module's names and reproduces the output", "[block]") {
  BlockDir d;
  const auto first = d.block(kGpsa + " --seed 1 --output y1.npy --state-dict w1.pt");
  INFO(first.err);
  REQUIRE(first.status == 0);
  const auto state = d.state("w1.pt");
  std::set<std::string> names;
  for (const auto& e : state) names.insert(e.key().toStringRef());
  CHECK(names == std::set<std::string>{"gating", "pos_bias", "pos_weight", "proj.bias", "proj.weight", "qkv.weight"});
  CHECK(state.at("qkv.weight").toTensor().sizes() == at::IntArrayRef{48, 16});

  // Another seed builds other weights, hence another output ...
  REQUIRE(d.block(kGpsa + " --seed 2 --output y2.npy").status == 0);
  CHECK_FALSE(torch::equal(d.output("y1.npy"), d.output("y2.npy")));
  // ... until the first run's weights are loaded: the output and the state are the first ones.
  const auto loaded = d.block(kGpsa + " --seed 2 --load-state-dict w1.pt --output y3.npy --state-dict w3.pt");
  INFO(loaded.err);
  REQUIRE(loaded.status == 0);
  CHECK(torch::equal(d.output("y1.npy"), d.output("y3.npy")));
  const auto again = d.state("w3.pt");
  for (const auto& e : state) CHECK(torch::equal(e.value().toTensor(), again.at(e.key()).toTensor()));
}

TEST_CASE("block: --dtype float64 runs the block and writes the output in float64", "[block]") {
  BlockDir d;
  REQUIRE(d.block(kGpsa + " --output y32.npy --state-dict w.pt").status == 0);
  REQUIRE(d.block(kGpsa + " --output y64.npy --dtype float64 --load-state-dict w.pt").status == 0);
  std::vector<std::int64_t> shape;
  bool f64 = false;
  read_npy_f64(d.dir + "/y64.npy", shape, f64);
  CHECK(f64);
  CHECK(shape == std::vector<std::int64_t>{2, 9, 16});
  const double diff = (d.output("y32.npy") - d.output("y64.npy")).abs().max().item<double>();
  CHECK(diff > 0);  // float32 rounding ...
  CHECK(diff < 1e-5);  // ... of the same computation
}

TEST_CASE("block: channel mixers take [..., C]", "[block]") {
  BlockDir d;
  const auto r = d.block("mlp --options '{ratio: 2}' --input x.npy --output y.npy --state-dict w.pt");
  INFO(r.err);
  REQUIRE(r.status == 0);
  CHECK(d.output("y.npy").sizes() == at::IntArrayRef{2, 9, 16});
  CHECK(d.state("w.pt").size() == 4);  // fc1, fc2: weight and bias
}

TEST_CASE("block: wrong keys, options, files, shapes and state dicts are refused with exit 2", "[block]") {
  BlockDir d;
  REQUIRE(d.block("attention/gpsa --set heads=4 --input wide.npy --state-dict wide.pt").status == 0);
  REQUIRE(d.block("attention/softmax --set heads=4 --input x.npy --state-dict softmax.pt").status == 0);
  const std::vector<std::string> cases = {
      "attention/gpsaa --input x.npy",
      "gpsa --input x.npy",
      "attention/gpsa --set head=4 --input x.npy",
      "attention/gpsa --set heads=5 --input x.npy",
      "attention/gpsa --options '[1, 2]' --input x.npy",
      "attention/gpsa --set +heads=4 --input x.npy",
      "attention/gpsa --set type=mlp --input x.npy",
      "attention/gpsa",
      "attention/gpsa --input missing.npy",
      "attention/gpsa --input x.npy --dim 32",
      "attention/gpsa --input x.npy --grid 4x4",
      "attention/gpsa --input x.npy --grid 3x3 --prefix 9",
      "attention/gpsa --input x.npy --grid 3by3",
      "attention/gpsa --input x.npy --causal",
      "attention/gpsa --input x.npy --dtype float16",
      "mlp --input x.npy --grid 3x3",
      "attention/gpsa --input x.npy --load-state-dict missing.pt",
      "attention/gpsa --set heads=4 --input x.npy --load-state-dict softmax.pt",
      "attention/gpsa --set heads=4 --input x.npy --load-state-dict wide.pt",
      "attention/gpsa attention/softmax --input x.npy",
  };
  check_golden("block_errors", transcript(d, cases, 2));
}

TEST_CASE("block: unreadable files are runtime failures (exit 1)", "[block]") {
  BlockDir d;
  std::ofstream(d.dir + "/junk.pt") << "not a zip archive";
  std::ofstream(d.dir + "/junk.npy") << "not an array";
  const std::vector<std::string> cases = {"attention/gpsa --input x.npy --load-state-dict junk.pt",
                                          "attention/gpsa --input junk.npy"};
  check_golden("block_runtime_errors", transcript(d, cases, 1));
}

TEST_CASE("block: --help documents the command and blocklab --help lists it", "[block]") {
  const auto help = blocklab_command("block --help");
  CHECK(help.status == 0);
  CHECK(help.out.find("Usage: blocklab block <key> --input x.npy [options]") == 0);
  for (const char* option : {"--set", "--options", "--input", "--output", "--state-dict", "--load-state-dict",
                             "--grid", "--prefix", "--causal", "--seed", "--dtype", "--dim"})
    CHECK(help.out.find(option) != std::string::npos);
  const auto all = blocklab_command("--help");
  CHECK(all.out.find("\n  block ") != std::string::npos);
}

}  // namespace BLOCKLAB_TEST_FILE
