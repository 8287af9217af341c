// What the two views of `blocklab attn` share (analysis/commands/attn.cpp for image runs,
// attn_sequence.cpp for token and series runs): loading a run's model and data, the staged
// output directory, the index page, arrays and heatmap panels.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "analysis/heatmap.h"
#include "blocks/model.h"
#include "datasets/dataset.h"
#include "experiments/run_files.h"
#include "experiments/trained_run.h"
#include "registry/cli_options.h"
#include "registry/config_node.h"
#include "registry/schema.h"

namespace blocklab {

struct AttnOptions {
  std::string run_dir, split = "test", checkpoint = "best";
  IndexList samples, layers, heads, tokens;  // empty: all (samples: the first four)
  std::int64_t query = -1;                   // sequences: the query position to map (-1: none)
  std::int64_t period = 0;                   // sequences: repeat length of the induction probe (0: auto)
  bool svg = false, mixing = true;
};

// The run behind the pictures (experiments/trained_run.h), with a warning when its metrics
// file has steps out of order.
using LoadedRun = TrainedRun;
LoadedRun load_run(const AttnOptions& o);

// The view of runs without an image (token ids, series): attn_sequence.cpp.
int attn_sequences(const AttnOptions& o, const LoadedRun& run);

// Every index below `count` when `wanted` is empty; otherwise the wanted ones, checked.
std::vector<std::int64_t> select(const IndexList& wanted, std::int64_t count, const std::string& what);

// A fresh directory beside `target` that replaces it on commit(): pictures of an earlier call
// that this one does not draw do not linger, and a failure midway keeps the earlier set (the
// staging directory is removed instead).
class StagedDirectory {
 public:
  explicit StagedDirectory(std::string target)
      : target_(std::move(target)), staging_(target_ + ".new-" + std::to_string(::getpid())) {
    std::filesystem::remove_all(staging_);
    std::filesystem::create_directories(staging_);
  }
  ~StagedDirectory() {
    std::error_code ec;
    if (!committed_) std::filesystem::remove_all(staging_, ec);
  }
  StagedDirectory(const StagedDirectory&) = delete;
  StagedDirectory& operator=(const StagedDirectory&) = delete;
  const std::string& path() const { return staging_; }
  void commit() {
    const std::string old = target_ + ".old-" + std::to_string(::getpid());
    const bool had = std::filesystem::exists(std::filesystem::symlink_status(target_));
    if (had) std::filesystem::rename(target_, old);
    try {
      std::filesystem::rename(staging_, target_);
    } catch (...) {
      if (had) std::filesystem::rename(old, target_);
      throw;
    }
    committed_ = true;
    std::error_code ec;
    if (had) std::filesystem::remove_all(old, ec);
  }

 private:
  std::string target_, staging_;
  bool committed_ = false;
};

std::vector<double> to_doubles(const torch::Tensor& t);
void save_npy(const std::string& path, const torch::Tensor& t);
// A [rows, cols] matrix as a panel with "key token" / "query token" axes.
Heatmap matrix_panel(const torch::Tensor& m, const std::string& title);
// A per-head statistic [layers, heads] as an annotated panel; rows labelled with `layers`.
Heatmap layers_by_heads_panel(const torch::Tensor& m, const std::string& title, const std::vector<std::string>& layers);

// An index.html that links every picture, grouped in sections.
class IndexPage {
 public:
  void section(const std::string& title, const std::string& text = "") {
    html_ << "<h2>" << title << "</h2>\n";
    if (!text.empty()) html_ << "<p>" << text << "</p>\n";
  }
  void picture(const std::string& file, const std::string& caption) {
    html_ << "<figure><a href=\"" << file << "\"><img src=\"" << file << "\" alt=\"" << caption
          << "\"></a><figcaption>" << caption << "</figcaption></figure>\n";
  }
  void write(const std::string& path, const std::string& title, const std::string& intro) const {
    write_file_atomic(path, "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>" + title +
                                "</title>\n<style>body{font-family:sans-serif;margin:2em;max-width:1400px}"
                                "figure{display:inline-block;margin:0.5em;vertical-align:top}"
                                "img{max-width:640px;border:1px solid #ddd}figcaption{font-size:90%;color:#444}"
                                "</style></head><body>\n<h1>" +
                                title + "</h1>\n<p>" + intro + "</p>\n" + html_.str() + "</body></html>\n");
  }

 private:
  std::ostringstream html_;
};

}  // namespace blocklab
