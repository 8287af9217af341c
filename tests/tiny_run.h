// Tiny training runs of the blocklab executable (a ViT on a slice of Fashion-MNIST, a few
// seconds each) and readers for what they leave in their run directories.
#pragma once

#include <catch2/catch.hpp>

#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "process_support.h"

namespace blocklab::testing {

inline const std::vector<std::string>& tiny_overrides() {
  static const std::vector<std::string> overrides = {
      "model.dim=16",           "model.depth=1",          "model.patch=7",      "model.mixer.heads=2",
      "dataset.limit_train=512", "dataset.limit_test=200", "dataset.val_size=0", "trainer.batch_size=32",
      "trainer.epochs=3",        "trainer.log_every=4",    "trainer.eval_batch_size=100", "threads=1"};
  return overrides;
}

// A forecast_temps run of a few seconds: DLinear on a synthetic series of 788 steps (look-back
// 24, horizon 8: 520 training windows, 16 batches of 32), 3 epochs = 48 steps.
inline const std::vector<std::string>& forecast_tiny_overrides() {
  static const std::vector<std::string> overrides = {
      "dataset=synthetic_series", "dataset.steps=788",     "dataset.lookback=24",
      "dataset.horizon=8",        "dataset.channels=3",    "trainer.epochs=3",
      "trainer.log_every=4",      "trainer.batch_size=32", "threads=1"};
  return overrides;
}

// `blocklab run vit_fmnist -q output_dir=<out>` with the tiny overrides, then `extra`.
inline std::vector<std::string> tiny(const std::string& out, std::vector<std::string> extra = {}) {
  std::vector<std::string> args = {"run", "vit_fmnist", "-q", "output_dir=" + out};
  args.insert(args.end(), tiny_overrides().begin(), tiny_overrides().end());
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

// Whether a run has created its directory under <out>/<experiment> yet (the experiment's folder
// appears a moment before the run's own: a watcher polling a live run must wait for both).
inline bool has_run_dir(const fs::path& out, const std::string& experiment = "vit_fmnist") {
  std::error_code ec;
  return fs::exists(out / experiment, ec) && !fs::is_empty(out / experiment, ec);
}

// The only run directory under <out>/<experiment>.
inline fs::path run_dir(const fs::path& out, const std::string& experiment = "vit_fmnist") {
  std::vector<fs::path> dirs;
  for (const auto& e : fs::directory_iterator(out / experiment)) dirs.push_back(e.path());
  REQUIRE(dirs.size() == 1);
  return dirs[0];
}

// The raw JSON text of a top-level key of summary.json ("" when absent).
inline std::string summary_field(const fs::path& dir, const std::string& key) {
  const std::string s = slurp(dir / "summary.json");
  const auto at = s.find("\"" + key + "\": ");
  if (at == std::string::npos) return "";
  const auto start = at + key.size() + 4;
  return s.substr(start, s.find_first_of(",}", start) - start);
}

// metrics.jsonl without the wall-clock fields (images_per_s, *_time_s), which are timings.
inline std::string metrics_without_timing(const fs::path& dir) {
  std::istringstream in(slurp(dir / "metrics.jsonl"));
  std::string out;
  for (std::string line; std::getline(in, line);) {
    std::string cleaned;
    std::istringstream fields(line.substr(1, line.size() - 2));
    for (std::string f; std::getline(fields, f, ',');)
      if (f.find("_per_s\"") == std::string::npos && f.find("_time_s\"") == std::string::npos) cleaned += f + ",";
    out += cleaned + "\n";
  }
  return out;
}

// The "step" of every training line of metrics.jsonl (those with "lr"), in file order.
inline std::vector<long> metric_steps(const fs::path& dir) {
  std::istringstream in(slurp(dir / "metrics.jsonl"));
  std::vector<long> steps;
  for (std::string line; std::getline(in, line);) {
    const auto at = line.find("\"step\": ");
    if (at != std::string::npos && line.find("\"lr\": ") != std::string::npos)
      steps.push_back(std::stol(line.substr(at + 8)));
  }
  return steps;
}

// The listops experiment (task seqcls) at the size of the tiny ViT run: 256 expressions of
// 16..64 tokens, batches of 16, 48 steps in 3 epochs, a one-layer encoder of width 16.
inline const std::vector<std::string>& tiny_listops_overrides() {
  static const std::vector<std::string> overrides = {"model.dim=16",
                                                     "model.stack.depth=1",
                                                     "model.mixer.heads=2",
                                                     "dataset.train_size=256",
                                                     "dataset.val_size=32",
                                                     "dataset.test_size=64",
                                                     "dataset.min_length=16",
                                                     "dataset.max_length=64",
                                                     "trainer.batch_size=16",
                                                     "trainer.epochs=3",
                                                     "trainer.log_every=4",
                                                     "trainer.eval_batch_size=64",
                                                     "threads=1"};
  return overrides;
}

// A tiny character language model on text/kjv (`blocklab run lm_kjv`): 512 windows of 32
// characters, one block of width 16, 3 epochs of 16 steps; a second or two.
inline const std::vector<std::string>& tiny_lm_overrides() {
  static const std::vector<std::string> overrides = {"dataset.context=32",
                                                     "dataset.limit_train=512",
                                                     "dataset.limit_val=16",
                                                     "dataset.limit_test=16",
                                                     "model.dim=16",
                                                     "model.stack.depth=1",
                                                     "model.mixer.heads=2",
                                                     "trainer.batch_size=32",
                                                     "trainer.epochs=3",
                                                     "trainer.log_every=4",
                                                     "trainer.eval_batch_size=16",
                                                     "trainer.checkpoint_every=0",
                                                     "trainer.warmup=0.5",
                                                     "threads=1"};
  return overrides;
}

}  // namespace blocklab::testing
