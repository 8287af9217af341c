// Datasets: the fashion-mnist plugin (real files, splits, preparation, augmentation, file
// errors) and the BatchLoader (epoch orders, coverage, determinism).
#include <catch2/catch.hpp>

#include "registry/yaml_io.h"

#include <ftw.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <iterator>
#include <tuple>
#include <vector>

#include "datasets/dataset.h"
#include "datasets/fashion_mnist.h"
#include "golden.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;

namespace {

const std::string kRealRoot = "/usr/share/datasets/fashion-mnist";
const std::vector<std::string> kFiles{"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                                      "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"};

std::shared_ptr<FashionMnist> fashion(FashionMnistOptions options = {}) {
  return std::make_shared<FashionMnist>(std::move(options));
}

int remove_entry(const char* path, const struct stat*, int, FTW*) { return ::remove(path); }

// A root in a fresh temporary directory whose files are links to the real ones until a test
// replaces one; removed with everything in it at the end of the test. POSIX calls throughout:
// libtorch.so exports copies of some std::filesystem functions (its remove_all crashes).
class TempRoot {
 public:
  TempRoot() {
    const char* tmp = std::getenv("TMPDIR");
    dir_ = std::string(tmp && *tmp ? tmp : "/tmp") + "/blocklab-fmnist-XXXXXX";
    REQUIRE(mkdtemp(dir_.data()) != nullptr);
    for (const auto& name : kFiles) REQUIRE(symlink((kRealRoot + "/" + name).c_str(), path(name).c_str()) == 0);
  }
  ~TempRoot() { nftw(dir_.c_str(), remove_entry, 8, FTW_DEPTH | FTW_PHYS); }
  TempRoot(const TempRoot&) = delete;
  TempRoot& operator=(const TempRoot&) = delete;

  const std::string& root() const { return dir_; }
  std::string path(const std::string& name) const { return dir_ + "/" + name; }
  void remove(const std::string& name) const { REQUIRE(::remove(path(name).c_str()) == 0); }
  // Replaces the link `name` by a file holding `bytes` as they are.
  void write_raw(const std::string& name, const std::string& bytes) const {
    remove(name);
    std::ofstream(path(name), std::ios::binary) << bytes;
  }
  // Replaces the link `name` by a gzip file (zlib's gzwrite) holding `bytes`.
  void write_gzip(const std::string& name, const std::string& bytes, int level = 6) const {
    remove(name);
    gzFile f = gzopen(path(name).c_str(), ("wb" + std::to_string(level)).c_str());
    REQUIRE(f != nullptr);
    REQUIRE(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())) == static_cast<int>(bytes.size()));
    REQUIRE(gzclose(f) == Z_OK);
  }

 private:
  std::string dir_;
};

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::string gunzip(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  REQUIRE(f != nullptr);
  std::string out;
  char buf[1 << 16];
  for (int n; (n = gzread(f, buf, sizeof buf)) > 0;) out.append(buf, static_cast<std::size_t>(n));
  gzclose(f);
  return out;
}

// An IDX header: magic, then the sizes, all big-endian uint32.
std::string idx_header(std::uint32_t magic, const std::vector<std::uint32_t>& sizes) {
  std::string out;
  const auto put = [&](std::uint32_t v) {
    for (int shift = 24; shift >= 0; shift -= 8) out += static_cast<char>((v >> shift) & 0xff);
  };
  put(magic);
  for (std::uint32_t size : sizes) put(size);
  return out;
}

// A label file of `count` labels, all 0 except `labels` at the front.
std::string label_file(std::uint32_t count, const std::string& labels = "") {
  std::string body(count, '\0');
  body.replace(0, labels.size(), labels);
  return idx_header(2049, {count}) + body;
}

std::string load_error(const std::string& root) {
  return testing::error_text([&] { fashion(FashionMnistOptions().root(root)); });
}

// The message names the file and the package that provides it.
void check_file_error(const std::string& text, const std::string& file, const std::string& expected) {
  INFO(text);
  CHECK(text.find(file) != std::string::npos);
  CHECK(text.find(expected) != std::string::npos);
  CHECK(text.find("dataset-fashion-mnist") != std::string::npos);
  CHECK(text.find("dataset.root") != std::string::npos);
}

// The placements (row offset, column offset, mirrored) of a padded crop that turn `original`
// [1, H, W] into `augmented`.
std::vector<std::tuple<int, int, bool>> placements(const torch::Tensor& original, const torch::Tensor& augmented,
                                                   int padding) {
  const auto h = original.size(1), w = original.size(2);
  const torch::Tensor padded = torch::constant_pad_nd(original, {padding, padding, padding, padding}, 0);
  std::vector<std::tuple<int, int, bool>> found;
  for (int dy = 0; dy <= 2 * padding; ++dy)
    for (int dx = 0; dx <= 2 * padding; ++dx) {
      const torch::Tensor crop = padded.slice(1, dy, dy + h).slice(2, dx, dx + w);
      for (bool mirrored : {false, true})
        if (torch::equal(mirrored ? crop.flip({2}) : crop, augmented)) found.emplace_back(dy, dx, mirrored);
    }
  return found;
}

torch::Tensor class_counts(const torch::Tensor& targets) { return torch::bincount(targets, {}, 10); }

}  // namespace

// ---- The real files -----------------------------------------------------------------------

TEST_CASE("fashion-mnist: the release loads with its shapes, labels and class balance", "[datasets]") {
  const auto data = fashion();
  const Split& train = data->split("train");
  const Split& val = data->split("val");
  const Split& test = data->split("test");
  CHECK(train.inputs.sizes() == torch::IntArrayRef{55000, 1, 28, 28});
  CHECK(val.inputs.sizes() == torch::IntArrayRef{5000, 1, 28, 28});
  CHECK(test.inputs.sizes() == torch::IntArrayRef{10000, 1, 28, 28});
  for (const Split* s : {&train, &val, &test}) {
    CHECK(s->inputs.scalar_type() == torch::kUInt8);
    CHECK(s->targets.scalar_type() == torch::kLong);
    CHECK(s->targets.size(0) == s->inputs.size(0));
  }
  // 6000 of each class in the 60k training images, 1000 in the test images.
  CHECK(torch::equal(class_counts(torch::cat({train.targets, val.targets})), torch::full({10}, 6000, torch::kLong)));
  CHECK(torch::equal(class_counts(test.targets), torch::full({10}, 1000, torch::kLong)));
  // The first test labels of the release, in file order.
  CHECK(torch::equal(test.targets.slice(0, 0, 10), torch::tensor({9, 2, 1, 1, 6, 1, 4, 6, 5, 7}, torch::kLong)));
  // The pixel statistics the normalisation constants come from.
  double sum = 0, sum_squares = 0;
  for (const Split* s : {&train, &val})
    for (const torch::Tensor& chunk : s->inputs.split(5000)) {
      const torch::Tensor x = chunk.to(torch::kDouble) / 255.0;
      sum += x.sum().item<double>();
      sum_squares += x.square().sum().item<double>();
    }
  const double n = 60000.0 * 28 * 28, mean = sum / n;
  CHECK(mean == Approx(FashionMnist::kMean).margin(5e-4));
  CHECK(std::sqrt(sum_squares / n - mean * mean) == Approx(FashionMnist::kStd).margin(5e-4));

  const DatasetInfo info = data->info();
  CHECK(info.task == "classification");
  CHECK(info.channels == 1);
  CHECK(info.height == 28);
  CHECK(info.width == 28);
  CHECK(info.num_classes == 10);
  CHECK(info.class_names == std::vector<std::string>{"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                                                     "Shirt", "Sneaker", "Bag", "Ankle boot"});

  const std::string text = testing::error_text([&] { data->split("tset"); });
  CHECK(text.find("no split 'tset'") != std::string::npos);
  CHECK(text.find("splits: train, val, test") != std::string::npos);
  CHECK_THROWS_AS(data->split("tset"), ConfigError);
}

TEST_CASE("fashion-mnist: train and val partition the 60k training images by split_seed", "[datasets]") {
  const auto a = fashion();
  const auto again = fashion();
  const auto other = fashion(FashionMnistOptions().split_seed(1));
  const auto all = fashion(FashionMnistOptions().val_size(0));

  // Disjoint and covering: together the indices are exactly 0..59999.
  const torch::Tensor both = torch::cat({a->file_indices("train"), a->file_indices("val")});
  CHECK(torch::equal(std::get<0>(both.sort()), torch::arange(60000, torch::kLong)));

  // Same seed, same split; another seed, another split.
  CHECK(torch::equal(a->file_indices("val"), again->file_indices("val")));
  CHECK(torch::equal(a->file_indices("train"), again->file_indices("train")));
  CHECK(torch::equal(a->split("val").inputs, again->split("val").inputs));
  CHECK_FALSE(torch::equal(a->file_indices("val"), other->file_indices("val")));

  // Without a hold-out: all 60k train, an empty val.
  CHECK(all->split("train").size() == 60000);
  CHECK(all->split("val").size() == 0);
  CHECK(all->split("val").inputs.sizes() == torch::IntArrayRef{0, 1, 28, 28});

  // The examples are the file's examples at those indices.
  const torch::Tensor file_order = std::get<1>(all->file_indices("train").sort());
  const torch::Tensor file_images = all->split("train").inputs.index_select(0, file_order);
  const torch::Tensor file_labels = all->split("train").targets.index_select(0, file_order);
  CHECK(torch::equal(file_labels.slice(0, 0, 10), torch::tensor({9, 0, 0, 3, 0, 2, 7, 2, 5, 5}, torch::kLong)));
  for (const char* name : {"train", "val"}) {
    CHECK(torch::equal(a->split(name).inputs, file_images.index_select(0, a->file_indices(name))));
    CHECK(torch::equal(a->split(name).targets, file_labels.index_select(0, a->file_indices(name))));
  }
  CHECK(torch::equal(a->file_indices("test"), torch::arange(10000, torch::kLong)));
}

TEST_CASE("fashion-mnist: limit_train and limit_test keep the head of each split", "[datasets]") {
  const auto full = fashion();
  const auto small = fashion(FashionMnistOptions().limit_train(1000).limit_test(300));
  CHECK(small->split("train").size() == 1000);
  CHECK(small->split("test").size() == 300);
  CHECK(small->split("val").size() == 5000);
  CHECK(torch::equal(small->split("train").inputs, full->split("train").inputs.slice(0, 0, 1000)));
  CHECK(torch::equal(small->split("train").targets, full->split("train").targets.slice(0, 0, 1000)));
  CHECK(torch::equal(small->split("test").inputs, full->split("test").inputs.slice(0, 0, 300)));
  CHECK(torch::equal(small->split("val").inputs, full->split("val").inputs));
  // A limit beyond the split keeps it whole.
  CHECK(fashion(FashionMnistOptions().limit_train(60000))->split("train").size() == 55000);
}

TEST_CASE("fashion-mnist: the plan from the config alone has the sizes loading gives", "[datasets]") {
  for (const char* yaml : {"{type: fashion-mnist}", "{type: fashion-mnist, val_size: 0, limit_test: 300}",
                           "{type: fashion-mnist, limit_train: 1000}", "{type: fashion-mnist, limit_train: 60000}",
                           "{type: fashion-mnist, val_size: 59999, limit_train: 7}"}) {
    INFO(yaml);
    const ConfigNode config = parse_yaml(yaml, "test");
    const auto plan = plan_dataset(config);
    REQUIRE(plan.has_value());
    const auto loaded = dataset_registry().create(config, DatasetArgs{0});
    for (const char* split : {"train", "val", "test"}) CHECK(plan->split_sizes.at(split) == loaded->split(split).size());
    CHECK(plan->info.num_classes == loaded->info().num_classes);
  }
}

// ---- prepare(): normalisation and augmentation --------------------------------------------

TEST_CASE("fashion-mnist: prepare normalises exactly and augments only with a generator", "[datasets]") {
  const auto data = fashion(FashionMnistOptions().limit_train(128));
  const torch::Tensor raw = data->split("train").inputs;
  const torch::Tensor normalised = (raw.to(torch::kFloat32) / 255.0 - 0.2860) / 0.3530;

  CHECK(torch::equal(data->prepare(raw, nullptr), normalised));  // evaluation: no augmentation
  auto gen = at::make_generator<at::CPUGeneratorImpl>(7);
  CHECK(torch::equal(fashion(FashionMnistOptions().augment("none"))->prepare(raw, &gen), normalised));
  CHECK(torch::equal(fashion(FashionMnistOptions().normalize(false))->prepare(raw, nullptr),
                     raw.to(torch::kFloat32) / 255.0));

  auto seeded = [&](std::uint64_t seed) {
    auto g = at::make_generator<at::CPUGeneratorImpl>(seed);
    return data->prepare(raw, &g);
  };
  const torch::Tensor augmented = seeded(7);
  CHECK(data->prepare(raw.slice(0, 0, 0), &gen).sizes() == torch::IntArrayRef{0, 1, 28, 28});  // an empty batch
  CHECK(augmented.sizes() == raw.sizes());
  CHECK(augmented.scalar_type() == torch::kFloat32);
  CHECK(torch::equal(augmented, seeded(7)));
  CHECK_FALSE(torch::equal(augmented, seeded(8)));
  CHECK_FALSE(torch::equal(augmented, normalised));
  // Crops only move pixels and add black padding: the range stays that of normalised pixels.
  const torch::Tensor ends = data->prepare(torch::tensor({0, 255}, torch::kUInt8).view({2, 1, 1, 1}), nullptr);
  CHECK(augmented.min().item<float>() >= ends[0].item<float>());
  CHECK(augmented.max().item<float>() <= ends[1].item<float>());
}

TEST_CASE("fashion-mnist: augmentation is a padded random crop, flipped only with crop-flip", "[datasets]") {
  const torch::Tensor raw = fashion(FashionMnistOptions().limit_train(128))->split("train").inputs;
  for (const std::string mode : {"crop", "crop-flip"}) {
    INFO(mode);
    const auto data = fashion(FashionMnistOptions().augment(mode).crop_padding(3).normalize(false));
    auto gen = at::make_generator<at::CPUGeneratorImpl>(11);
    const torch::Tensor pixels = (data->prepare(raw, &gen) * 255.0).round().to(torch::kUInt8);
    int mirrored_only = 0, shifted = 0, unexplained = 0;
    for (std::int64_t i = 0; i < raw.size(0); ++i) {
      const auto found = placements(raw[i], pixels[i], 3);
      if (found.empty()) ++unexplained;
      const bool plain = std::any_of(found.begin(), found.end(), [](const auto& p) { return !std::get<2>(p); });
      mirrored_only += !found.empty() && !plain;
      shifted += std::none_of(found.begin(), found.end(),
                              [](const auto& p) { return std::get<0>(p) == 3 && std::get<1>(p) == 3; });
    }
    CHECK(unexplained == 0);
    CHECK(shifted > 64);  // 48 of 49 offsets move the image
    if (mode == "crop") {
      CHECK(mirrored_only == 0);
    } else {
      CHECK(mirrored_only > 32);  // half are mirrored; few images are their own mirror image
    }
  }
}

TEST_CASE("fashion-mnist: augment flip mirrors without shifting", "[datasets]") {
  const torch::Tensor raw = fashion(FashionMnistOptions().limit_train(128))->split("train").inputs;
  const auto data = fashion(FashionMnistOptions().augment("flip").crop_padding(3).normalize(false));
  auto gen = at::make_generator<at::CPUGeneratorImpl>(11);
  const torch::Tensor pixels = (data->prepare(raw, &gen) * 255.0).round().to(torch::kUInt8);
  int mirrored = 0;
  for (std::int64_t i = 0; i < raw.size(0); ++i) {
    const bool same = torch::equal(pixels[i], raw[i]);
    const bool flipped = torch::equal(pixels[i], raw[i].flip({2}));
    CHECK((same || flipped));  // crop_padding is ignored: no shift
    mirrored += flipped && !same;
  }
  CHECK(mirrored > 32);
}

// ---- BatchLoader --------------------------------------------------------------------------

namespace {

// Examples that are their own index, so batches show exactly which examples they hold;
// "augmentation" adds uniform noise drawn from the generator.
class IndexDataset : public Dataset {
 public:
  explicit IndexDataset(std::int64_t n)
      : split_{torch::arange(n, torch::kLong).view({n, 1}), torch::arange(n, torch::kLong), {}} {}
  DatasetInfo info() const override { return {}; }
  const Split& split(const std::string& name) const override {
    if (name != "train") throw ConfigError("no split '" + name + "'");
    return split_;
  }
  torch::Tensor prepare(const torch::Tensor& raw, torch::Generator* generator) const override {
    const torch::Tensor x = raw.to(torch::kDouble);
    return generator ? x + torch::rand(x.sizes(), *generator, torch::kDouble) : x;
  }
  std::string fingerprint() const override { return "index"; }

 private:
  Split split_;
};

torch::Tensor epoch_targets(const BatchLoader& loader, std::int64_t epoch) {
  std::vector<torch::Tensor> parts;
  for (std::int64_t i = 0; i < loader.batches_per_epoch(); ++i) parts.push_back(loader.batch(epoch, i, false).second);
  return torch::cat(parts);
}

}  // namespace

TEST_CASE("BatchLoader: each epoch visits every example once; drop_last drops the partial batch", "[datasets]") {
  const IndexDataset data(1000);
  const BatchLoader keep(data, "train", 128, true, 3);
  const BatchLoader drop(data, "train", 128, true, 3, true);
  CHECK(keep.size() == 1000);
  CHECK(keep.batches_per_epoch() == 8);
  CHECK(drop.batches_per_epoch() == 7);
  for (std::int64_t epoch : {0, 1, 5}) {
    const torch::Tensor seen = epoch_targets(keep, epoch);
    CHECK(torch::equal(std::get<0>(seen.sort()), torch::arange(1000, torch::kLong)));
    const torch::Tensor kept = epoch_targets(drop, epoch);
    CHECK(kept.size(0) == 7 * 128);
    CHECK(std::get<0>(at::_unique(kept)).size(0) == 7 * 128);
  }
  CHECK(keep.batch(0, 7, false).second.size(0) == 1000 - 7 * 128);
  CHECK_THROWS(drop.batch(0, 7, false));  // the dropped partial batch is not served either
  CHECK_THROWS(keep.batch(0, 8, false));
  CHECK_THROWS(keep.batch(-1, 0, false));
  CHECK_THROWS(BatchLoader(data, "train", 0, true, 3));
  CHECK(keep.batch(0, 0, false).first.sizes() == torch::IntArrayRef{128, 1});
  // Inputs and targets stay paired.
  const auto [inputs, targets] = keep.batch(2, 3, false);
  CHECK(torch::equal(inputs.view({-1}).to(torch::kLong), targets));

  const IndexDataset even(1024);
  CHECK(BatchLoader(even, "train", 128, true, 3).batches_per_epoch() == 8);
  CHECK(BatchLoader(even, "train", 128, true, 3, true).batches_per_epoch() == 8);
  // Without shuffling the order is the split's.
  CHECK(torch::equal(epoch_targets(BatchLoader(data, "train", 128, false, 3), 4), torch::arange(1000, torch::kLong)));
}

TEST_CASE("BatchLoader: a batch is a pure function of (seed, epoch, index)", "[datasets]") {
  const IndexDataset data(1000);
  const BatchLoader loader(data, "train", 100, true, 42);
  const BatchLoader twin(data, "train", 100, true, 42);
  const BatchLoader other(data, "train", 100, true, 43);
  const std::vector<std::pair<std::int64_t, std::int64_t>> visits{{0, 0}, {0, 9}, {1, 4}, {3, 2}, {1, 0}};
  // The twin visits in reverse order, so its cached epoch order differs at every call.
  for (auto it = visits.rbegin(); it != visits.rend(); ++it) twin.batch(it->first, it->second, true);
  for (const auto& [epoch, index] : visits) {
    for (bool augment : {false, true}) {
      const auto a = loader.batch(epoch, index, augment);
      const auto b = twin.batch(epoch, index, augment);
      CHECK(torch::equal(a.first, b.first));
      CHECK(torch::equal(a.second, b.second));
    }
  }
  CHECK_FALSE(torch::equal(epoch_targets(loader, 0), epoch_targets(loader, 1)));
  CHECK_FALSE(torch::equal(epoch_targets(loader, 0), epoch_targets(other, 0)));
  // Each (epoch, index) draws its own augmentation.
  const auto noise = [&](std::int64_t epoch, std::int64_t index) {
    const auto [x, y] = loader.batch(epoch, index, true);
    return std::get<0>((x.view({-1}) - y.to(torch::kDouble)).sort());
  };
  CHECK_FALSE(torch::equal(noise(0, 0), noise(0, 1)));
  CHECK_FALSE(torch::equal(noise(0, 0), noise(1, 0)));
}

TEST_CASE("BatchLoader: fashion-mnist batches are reproducible and augmented only when asked", "[datasets]") {
  const auto data = fashion(FashionMnistOptions().limit_train(512));
  const BatchLoader loader(*data, "train", 128, true, 9);
  const BatchLoader twin(*data, "train", 128, true, 9);
  CHECK(loader.batches_per_epoch() == 4);
  const auto plain = loader.batch(2, 1, false);
  const auto augmented = loader.batch(2, 1, true);
  CHECK(torch::equal(augmented.first, twin.batch(2, 1, true).first));
  CHECK(torch::equal(plain.first, twin.batch(2, 1, false).first));
  CHECK(torch::equal(plain.second, augmented.second));
  CHECK_FALSE(torch::equal(plain.first, augmented.first));
  CHECK(augmented.first.sizes() == torch::IntArrayRef{128, 1, 28, 28});
  // Without augmentation a batch is the prepared raw examples.
  const torch::Tensor all = data->prepare(data->split("train").inputs, nullptr);
  const torch::Tensor found = torch::cdist(plain.first.view({128, -1}), all.view({512, -1})).argmin(1);
  CHECK(torch::equal(all.index_select(0, found), plain.first));
  CHECK(torch::equal(data->split("train").targets.index_select(0, found), plain.second));
}

// ---- Fingerprint and registry -------------------------------------------------------------

TEST_CASE("fashion-mnist: the fingerprint follows the file contents and the split", "[datasets]") {
  const std::string base = fashion()->fingerprint();
  CHECK(base.size() == 16);
  CHECK(base.find_first_not_of("0123456789abcdef") == std::string::npos);
  CHECK(fashion()->fingerprint() == base);
  CHECK(fashion(FashionMnistOptions().augment("none"))->fingerprint() == base);  // not a split parameter
  CHECK(fashion(FashionMnistOptions().split_seed(1))->fingerprint() != base);
  CHECK(fashion(FashionMnistOptions().val_size(0))->fingerprint() != base);
  CHECK(fashion(FashionMnistOptions().limit_train(10))->fingerprint() != base);

  TempRoot dir;
  CHECK(fashion(FashionMnistOptions().root(dir.root()))->fingerprint() == base);  // contents, not paths
  // The same labels compressed differently are different files.
  dir.write_gzip("t10k-labels-idx1-ubyte.gz", gunzip(dir.path("t10k-labels-idx1-ubyte.gz")), 1);
  const auto recompressed = fashion(FashionMnistOptions().root(dir.root()));
  CHECK(recompressed->fingerprint() != base);
  CHECK(torch::equal(recompressed->split("test").targets, fashion()->split("test").targets));
}

TEST_CASE("fashion-mnist: registered with its paper, schema and validated parameters", "[datasets]") {
  const EntryInfo& info = dataset_registry().info("fashion-mnist");
  CHECK(info.paper.find("arXiv:1708.07747") != std::string::npos);
  CHECK(info.schema.names() == std::vector<std::string>{"root", "val_size", "split_seed", "augment", "crop_padding",
                                                        "normalize", "limit_train", "limit_test"});
  CHECK(info.schema.find("augment")->choices == std::vector<std::string>{"none", "crop", "crop-flip", "flip"});
  CHECK(info.schema.find("root")->default_value.as_string() == kRealRoot);

  const auto data = dataset_registry().create(ConfigNode::string("fashion-mnist"), DatasetArgs{});
  REQUIRE(data != nullptr);
  CHECK(data->split("val").size() == 5000);

  ConfigNode node = ConfigNode::map();
  node.set("type", ConfigNode::string("fashion-mnist"));
  node.set("val_size", ConfigNode::integer(-1));
  node.set("augment", ConfigNode::string("blur"));
  const std::string text = testing::error_text([&] { dataset_registry().create(node, DatasetArgs{}); });
  CHECK(text.find("2 errors") != std::string::npos);
  CHECK(text.find("dataset.val_size") != std::string::npos);
  CHECK(text.find("crop-flip") != std::string::npos);
  // Out-of-range options are refused from C++ as well.
  CHECK_THROWS_AS(fashion(FashionMnistOptions().val_size(60000)), ConfigError);
  CHECK_THROWS_AS(fashion(FashionMnistOptions().augment("blur")), ConfigError);
}

// ---- Damaged files ------------------------------------------------------------------------

TEST_CASE("fashion-mnist: a missing file names the file and the package", "[datasets]") {
  const std::string name = GENERATE(from_range(kFiles));
  TempRoot dir;
  dir.remove(name);
  check_file_error(load_error(dir.root()), dir.path(name) + ": file is missing",
                   "apt-get install dataset-fashion-mnist");
  CHECK_THROWS_AS(fashion(FashionMnistOptions().root(dir.root())), ConfigError);
}

TEST_CASE("fashion-mnist: the missing-file message", "[datasets][golden]") {
  ConfigNode node = ConfigNode::map();
  node.set("type", ConfigNode::string("fashion-mnist"));
  node.set("root", ConfigNode::string("/nonexistent/fmnist", Source::command_line("dataset.root=/nonexistent/fmnist")));
  const std::string text = testing::error_text([&] { dataset_registry().create(node, DatasetArgs{}); });
  const std::string mismatch = testing::golden_mismatch("dataset_file_missing", text);
  INFO(mismatch);
  CHECK(mismatch.empty());
}

TEST_CASE("fashion-mnist: a truncated file says how many bytes it lacks", "[datasets]") {
  const auto [name, expected] = GENERATE(table<std::string, std::string>({
      {"train-images-idx3-ubyte.gz", "expected 47040016 bytes of image data, got "},
      {"train-labels-idx1-ubyte.gz", "expected 60008 bytes of label data, got "},
      {"t10k-images-idx3-ubyte.gz", "expected 7840016 bytes of image data, got "},
      {"t10k-labels-idx1-ubyte.gz", "expected 10008 bytes of label data, got "},
  }));
  TempRoot dir;
  const std::string bytes = read_bytes(dir.path(name));
  dir.write_raw(name, bytes.substr(0, bytes.size() / 2));
  check_file_error(load_error(dir.root()), dir.path(name) + " is truncated: " + expected, "--reinstall");
}

TEST_CASE("fashion-mnist: a damaged file is a ConfigError naming it, never a crash", "[datasets]") {
  const std::string labels = "t10k-labels-idx1-ubyte.gz";
  const std::string images = "t10k-images-idx3-ubyte.gz";
  TempRoot dir;
  SECTION("wrong magic number") {
    dir.write_gzip(labels, idx_header(2051, {10000}) + std::string(10000, '\0'));
    check_file_error(load_error(dir.root()), dir.path(labels) + " has magic number 2051, expected 2049", "--reinstall");
  }
  SECTION("images where labels belong") {
    dir.write_gzip(images, label_file(10000));
    check_file_error(load_error(dir.root()), dir.path(images) + " has magic number 2049, expected 2051", "--reinstall");
  }
  SECTION("wrong image size") {
    dir.write_gzip(images, idx_header(2051, {10000, 28, 27}));
    check_file_error(load_error(dir.root()), dir.path(images) + " holds a 10000x28x27 array, expected 10000x28x28",
                     "--reinstall");
  }
  SECTION("fewer labels than images") {
    dir.write_gzip(labels, label_file(9999));
    check_file_error(load_error(dir.root()), dir.path(labels) + " holds a 9999 array, expected 10000", "--reinstall");
  }
  SECTION("a label outside 0..9") {
    dir.write_gzip(labels, label_file(10000, std::string("\x01\x02\x03\x0a", 4)));
    check_file_error(load_error(dir.root()), dir.path(labels) + " holds label 10 at position 3", "0..9");
  }
  SECTION("a byte after the data") {
    dir.write_gzip(labels, label_file(10000) + "x");
    check_file_error(load_error(dir.root()), dir.path(labels) + " is longer than expected: more than 10008 bytes",
                     "--reinstall");
  }
  SECTION("not gzip") {
    dir.write_raw(labels, label_file(10000));
    check_file_error(load_error(dir.root()), dir.path(labels) + " is corrupt: not a valid gzip stream", "--reinstall");
  }
  SECTION("a bad checksum") {
    std::string bytes = read_bytes(dir.path(labels));
    bytes[bytes.size() - 8] ^= 0x55;  // the CRC-32 in the gzip trailer
    dir.write_raw(labels, bytes);
    check_file_error(load_error(dir.root()), dir.path(labels) + " is corrupt", "incorrect data check");
  }
  SECTION("an empty file") {
    dir.write_raw(labels, "");
    check_file_error(load_error(dir.root()),
                     dir.path(labels) + " is truncated: expected 10008 bytes of label data, got 0", "--reinstall");
  }
  SECTION("a directory") {
    dir.remove(labels);
    REQUIRE(mkdir(dir.path(labels).c_str(), 0700) == 0);
    check_file_error(load_error(dir.root()), "cannot read " + dir.path(labels), "--reinstall");
  }
}

// ---- Timing (hidden: run with "[datasets-bench]") -------------------------------------------

TEST_CASE("fashion-mnist: load and prepare times", "[.][datasets-bench]") {
  using Clock = std::chrono::steady_clock;
  const auto ms = [](Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); };
  TempRoot dir;  // copies: files this process has not read yet, so they are really decoded
  for (const auto& name : kFiles) dir.write_raw(name, read_bytes(dir.path(name)));
  const auto start = Clock::now();
  const auto data = fashion(FashionMnistOptions().root(dir.root()));
  const double load_ms = ms(Clock::now() - start);

  const torch::Tensor raw = data->split("train").inputs.slice(0, 0, 128);
  std::vector<double> plain, augmented;
  for (int i = 0; i < 200; ++i) {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(i);
    auto t0 = Clock::now();
    data->prepare(raw, nullptr);
    auto t1 = Clock::now();
    data->prepare(raw, &gen);
    auto t2 = Clock::now();
    plain.push_back(ms(t1 - t0));
    augmented.push_back(ms(t2 - t1));
  }
  const auto median = [](std::vector<double> v) {
    std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
    return v[v.size() / 2];
  };
  std::cout << "torch threads: " << torch::get_num_threads() << "\n"
            << "fashion-mnist load (70k images, 4 files): " << load_ms << " ms\n"
            << "prepare 128 batch, no augmentation: " << median(plain) << " ms (median of 200)\n"
            << "prepare 128 batch, crop-flip:       " << median(augmented) << " ms (median of 200)\n";
  CHECK(load_ms < 2000);
  CHECK(median(augmented) < 5.0);  // under 5% of a 100 ms training step
}

}  // namespace BLOCKLAB_TEST_FILE
