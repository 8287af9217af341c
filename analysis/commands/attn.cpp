// blocklab attn <run-dir>: what a trained model attends to, as pictures, arrays and a page.
// Runs on images get the view below; runs on token ids or series get the sequence view
// (attn_sequence.cpp: maps labelled with the tokens, one query's map, induction and
// previous-token scores per head).
//
// Rebuilds the run's model from config.yaml, loads its checkpoint, runs a few samples with the
// attention probe on (the reference path; its output equals the fused kernel's) and writes
// into <run>/attn/: per layer the heads' class-token (or mean received) attention over the
// image (the DINO view), token x token maps per head, attention rollout (Abnar and Zuidema
// 2020), the effective mixing matrix of every mixer (the Jacobian norm, for mixers with or
// without attention weights), mean attention distance and entropy per head, the raw arrays
// (.npy) and index.html linking every picture.
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <sstream>

#include "analysis/attention_maps.h"
#include "analysis/commands/attn_common.h"
#include "analysis/curves.h"
#include "analysis/heatmap.h"
#include "analysis/npy.h"
#include "datasets/dataset.h"
#include "experiments/checkpoint.h"
#include "experiments/model_builder.h"
#include "experiments/run_files.h"
#include "experiments/task.h"
#include "registry/cli_options.h"
#include "registry/command.h"
#include "registry/config_error.h"
#include "registry/registry.h"
#include "registry/yaml_io.h"

namespace fs = std::filesystem;

namespace blocklab {
namespace {

Heatmap overlay_panel(const torch::Tensor& grid, const torch::Tensor& image, const std::string& title) {
  Heatmap h = matrix_panel(grid, title);
  h.x_label = h.y_label = "";
  h.image = to_doubles(image);
  h.image_h = static_cast<int>(image.size(0));
  h.image_w = static_cast<int>(image.size(1));
  h.alpha = 0.55;
  return h;
}

// The image view: attention over the patch grid of image-classification runs.
int attn_images(const AttnOptions& o, const LoadedRun& run) {
  const DatasetInfo& info = run.info;
  const std::string& checkpoint = run.checkpoint;
  const Dataset* dataset = run.dataset.get();
  const Split& split = dataset->split(o.split);
  const std::vector<std::int64_t> samples =
      o.samples.empty() ? select(o.samples, std::min<std::int64_t>(4, split.size()), "samples")
                        : o.samples.resolve(split.size(), "samples of the " + o.split + " split");
  if (samples.empty()) throw UsageError("blocklab attn: the " + o.split + " split has no samples; choose another --split");
  const torch::Tensor index = torch::tensor(samples, torch::kInt64);
  const torch::Tensor raw = split.inputs.index_select(0, index);
  const torch::Tensor inputs = dataset->prepare(raw, nullptr);
  const torch::Tensor labels = split.targets.index_select(0, index);
  const torch::Tensor images = raw.to(torch::kFloat64).mean(1) / 255.0;  // [S, H, W]

  const Model& model = run.model;
  AttentionProbe probe;
  probe.enable();
  probe.keep_mixer_calls();  // also where the grid and the prefix tokens are
  torch::Tensor predicted;
  {
    torch::NoGradGuard no_grad;
    predicted = model->forward(inputs, &probe).argmax(1);
  }
  const std::map<int, LayerCapture> captured = captures_by_layer(probe);
  if (captured.empty()) throw ConfigError("the run's model recorded no token mixer: nothing to show");
  // Layers are layer ids (0 .. depth-1), found by the id each capture carries.
  const std::int64_t depth = model->stack().depth();
  const std::vector<std::int64_t> layers = select(o.layers, depth, "layers");
  auto capture = [&](std::int64_t l) -> const LayerCapture* {
    const auto it = captured.find(static_cast<int>(l));
    return it == captured.end() ? nullptr : &it->second;
  };
  const MixerContext layout = model->stem().layout();
  const std::int64_t prefix = layout.prefix_tokens, gh = layout.grid_height, gw = layout.grid_width;
  const bool on_grid = gh > 0 && gw > 0;
  std::vector<const AttentionRecord*> records;  // in layer order
  for (const auto& [layer, c] : captured)
    if (c.record) records.push_back(c.record);
  // The layout layer l's mixer saw (a staged stack halves the grid between stages).
  auto layout_of = [&](std::int64_t l) -> MixerContext {
    const LayerCapture* c = capture(l);
    return c && c->call ? c->call->context : layout;
  };
  bool same_tokens = true;
  for (const auto* r : records) same_tokens = same_tokens && r->probs.size(-1) == records.front()->probs.size(-1);
  auto rollout_of = [&](std::int64_t sample) {
    std::vector<torch::Tensor> head_means;
    for (const auto* r : records) head_means.push_back(r->probs[sample].mean(0));
    return attention_rollout(torch::stack(head_means).to(torch::kFloat64));
  };
  // --heads against one layer's own head count; an error names the layer.
  auto heads_of = [&](std::int64_t l, const AttentionRecord& r) {
    try {
      return select(o.heads, r.probs.size(1), "heads");
    } catch (const UsageError& e) {
      std::string text = e.what();
      text.insert(std::min(text.find('\n'), text.size()), " in layer " + std::to_string(l) + " (" + r.mixer + ")");
      throw UsageError(text);
    }
  };

  // Check --heads against every drawn layer (each with its own head count) before writing.
  for (auto l : layers)
    if (const LayerCapture* c = capture(l); c && c->record) heads_of(l, *c->record);

  StagedDirectory staged(output_path_inside("attn", o.run_dir, "attn"));
  const std::string& out = staged.path();
  fs::create_directories(out + "/arrays");
  std::vector<std::string> written;
  auto render = [&](const HeatmapFigure& f, const std::string& name) {
    render_heatmaps(f, out + "/" + name + ".png", o.svg ? out + "/" + name + ".svg" : "");
    written.push_back(name + ".png");
  };
  IndexPage page;
  auto class_name = [&](std::int64_t k) {
    return k >= 0 && k < static_cast<std::int64_t>(info.class_names.size()) ? info.class_names[static_cast<std::size_t>(k)]
                                                                            : std::to_string(k);
  };

  save_npy(out + "/arrays/images.npy", images);
  write_npy(out + "/arrays/labels.npy", {labels.size(0)}, labels.contiguous().data_ptr<std::int64_t>());
  const torch::Tensor predicted_cpu = predicted.to(torch::kCPU).contiguous();
  write_npy(out + "/arrays/predicted.npy", {predicted_cpu.size(0)}, predicted_cpu.data_ptr<std::int64_t>());
  for (const auto* r : records) save_npy(out + "/arrays/probs_layer" + std::to_string(r->layer) + ".npy", r->probs);

  // Per-head statistics over the samples: mean attention distance (patches) and entropy; rows
  // are the recording layers, each with its own head count (NaN where a layer has fewer heads).
  if (!records.empty() && on_grid) {
    std::int64_t heads_max = 0;
    for (const auto* r : records) heads_max = std::max(heads_max, r->probs.size(1));
    const auto rows = static_cast<std::int64_t>(records.size());
    torch::Tensor distance = torch::full({rows, heads_max}, std::nan(""), torch::kFloat64);
    torch::Tensor entropy = distance.clone();
    for (std::int64_t l = 0; l < rows; ++l) {
      const torch::Tensor& probs = records[static_cast<std::size_t>(l)]->probs;
      const std::int64_t h = probs.size(1);
      distance[l].slice(0, 0, h).zero_(), entropy[l].slice(0, 0, h).zero_();
      const MixerContext at = layout_of(records[static_cast<std::size_t>(l)]->layer);
      for (std::int64_t s = 0; s < probs.size(0); ++s) {
        distance[l].slice(0, 0, h) += mean_attention_distance(probs[s], at.prefix_tokens, at.grid_height, at.grid_width) /
                                      static_cast<double>(samples.size());
        entropy[l].slice(0, 0, h) += attention_entropy(probs[s]) / static_cast<double>(samples.size());
      }
    }
    save_npy(out + "/arrays/head_distance.npy", distance);
    save_npy(out + "/arrays/head_entropy.npy", entropy);
    HeatmapFigure f;
    f.title = "per head, mean over " + std::to_string(samples.size()) + " samples";
    f.shared_scale = false;
    f.columns = 2;
    std::vector<std::string> layer_labels;
    for (const auto* r : records) layer_labels.push_back(std::to_string(r->layer));
    for (auto [m, title] : {std::pair{distance, std::string("mean attention distance (patches)")},
                            std::pair{entropy, std::string("attention entropy (nats)")}}) {
      f.panels.push_back(layers_by_heads_panel(m, title, layer_labels));
    }
    render(f, "head_stats");
    page.section("Heads", "Mean attention distance (in patches, over grid tokens) and entropy of each head, "
                          "averaged over the samples: local heads have small distances, diffuse heads high entropy. "
                          "Rows are layers that record attention weights; blank cells: the layer has fewer heads.");
    page.picture("head_stats.png", "layers x heads");
  }

  for (std::size_t si = 0; si < samples.size(); ++si) {
    const auto s = static_cast<std::int64_t>(si);
    const std::string tag = o.split + std::to_string(samples[si]);
    const std::string truth = class_name(labels[s].item<std::int64_t>());
    const std::string guess = class_name(predicted_cpu[s].item<std::int64_t>());
    page.section("Sample " + std::to_string(samples[si]) + " of " + o.split, "label: " + truth + ", predicted: " + guess);
    const torch::Tensor image = images[s];

    if (!records.empty()) {
      // Rollout multiplies the layers' maps: not across stages of different resolution.
      const torch::Tensor rollout = same_tokens ? rollout_of(s) : torch::Tensor();
      if (rollout.defined()) save_npy(out + "/arrays/rollout_" + tag + ".npy", rollout);
      if (rollout.defined() && on_grid) {
        HeatmapFigure f;
        f.title = "attention rollout, " + truth + " (predicted " + guess + ")";
        f.shared_scale = false;
        Heatmap input = overlay_panel(torch::zeros({gh, gw}), image, "input");
        input.alpha = 0.0;
        input.colorbar = false;  // just the image
        f.panels = {input, overlay_panel(attention_to_grid(rollout, prefix, gh, gw), image,
                                         prefix ? "rollout: class token" : "rollout: received")};
        render(f, tag + "_rollout");
        page.picture(tag + "_rollout.png", "attention rollout over all layers (0.5 A + 0.5 I, multiplied)");
      }
      for (auto l : layers) {
        const LayerCapture* c = capture(l);
        if (!c || !c->record) continue;  // this layer's mixer records no attention weights
        const torch::Tensor probs = c->record->probs[s];  // [h, N, N], h = this layer's heads
        const std::vector<std::int64_t> heads = heads_of(l, *c->record);
        const std::string lname = "layer " + std::to_string(l) + " (" + c->record->mixer + ", " +
                                  std::to_string(probs.size(0)) + " heads)";
        const MixerContext at = layout_of(l);
        if (at.has_grid()) {
          const auto to_grid = [&](const torch::Tensor& m) {
            return attention_to_grid(m, at.prefix_tokens, at.grid_height, at.grid_width);
          };
          HeatmapFigure f;
          f.title = lname + ": " + (at.prefix_tokens ? "class-token attention" : "attention received") + " per head, " + truth;
          f.shared_scale = false;
          for (auto h : heads) f.panels.push_back(overlay_panel(to_grid(probs[h]), image, "head " + std::to_string(h)));
          f.panels.push_back(overlay_panel(to_grid(probs.mean(0)), image, "mean of heads"));
          render(f, tag + "_layer" + std::to_string(l) + "_heads");
          page.picture(tag + "_layer" + std::to_string(l) + "_heads.png", lname + ": per head, over the image");
        }
        const std::int64_t n = probs.size(-1);
        const auto [from, last] = o.tokens.empty() ? std::pair<std::int64_t, std::int64_t>{0, n - 1}
                                                   : o.tokens.single_range(n, "tokens");
        const std::int64_t to = last + 1;
        HeatmapFigure f;
        f.title = lname + ": token x token attention (tokens " + std::to_string(from) + ".." + std::to_string(to - 1) + ")";
        f.colorbar_label = "probability";
        for (auto h : heads)
          f.panels.push_back(matrix_panel(probs[h].slice(0, from, to).slice(1, from, to), "head " + std::to_string(h)));
        render(f, tag + "_layer" + std::to_string(l) + "_tokens");
        page.picture(tag + "_layer" + std::to_string(l) + "_tokens.png", lname + ": token x token, per head");
      }
    }

    // Effective mixing matrices, for every mixer (attention or not).
    if (o.mixing) {
      HeatmapFigure grids, matrices;
      grids.title = "effective mixing (Jacobian norm) received per token, " + truth;
      grids.shared_scale = false;
      matrices.title = "effective mixing matrices ||dy_i/dx_j||, rows normalised";
      matrices.shared_scale = false;
      std::vector<torch::Tensor> all;
      std::vector<std::int64_t> drawn;
      for (auto l : layers) {
        const LayerCapture* c = capture(l);
        if (!c || !c->call) continue;
        const MixerCall& call = *c->call;
        MixerContext ctx;
        ctx = call.context;
        const torch::Tensor m = normalize_rows(mixing_matrix(*call.mixer, call.input.slice(0, s, s + 1), ctx));
        all.push_back(m);
        drawn.push_back(l);
        const std::string title = "layer " + std::to_string(l);
        const MixerContext& at = call.context;
        if (at.has_grid())
          grids.panels.push_back(
              overlay_panel(attention_to_grid(m, at.prefix_tokens, at.grid_height, at.grid_width), image, title));
        matrices.panels.push_back(matrix_panel(m, title));
      }
      if (all.empty()) continue;  // the chosen layers have no mixer call
      bool same_size = true;
      for (const auto& m : all) same_size = same_size && m.sizes() == all.front().sizes();
      if (same_size)
        save_npy(out + "/arrays/mixing_" + tag + ".npy", torch::stack(all));
      else  // stages of different resolution: one array per layer
        for (std::size_t i = 0; i < all.size(); ++i)
          save_npy(out + "/arrays/mixing_" + tag + "_layer" + std::to_string(drawn[i]) + ".npy", all[i]);
      if (on_grid) {
        render(grids, tag + "_mixing_grid");
        page.picture(tag + "_mixing_grid.png", "effective mixing, per layer, over the image");
      }
      render(matrices, tag + "_mixing");
      page.picture(tag + "_mixing.png", "effective mixing matrices, per layer");
    }
  }
  page.write(out + "/index.html", "Attention maps: " + o.run_dir,
             "Checkpoint " + fs::path(checkpoint).filename().string() + ", split " + o.split +
                 ". Arrays for every picture are in arrays/ (.npy; numpy.load).");
  staged.commit();
  const std::string final_dir = o.run_dir + "/attn";
  std::cerr << "wrote " << written.size() << " pictures, arrays and index.html into " << final_dir
            << " (replacing the earlier ones)\n";
  std::cout << final_dir << "/index.html\n";
  return 0;
}

int attn(const AttnOptions& o) {
  const LoadedRun run = load_run(o);
  if (run.info.height > 0 && run.info.width > 0) return attn_images(o, run);
  return attn_sequences(o, run);
}

int attn_command(const std::vector<std::string>& args) {
  po::options_description opts("Options");
  opts.add_options()("help,h", "show this help")("split", po::value<std::string>(),
                                                  "split the samples come from: train, val or test (default)")(
      "samples", po::value<std::string>(), "sample indices, e.g. 0,5,10-12 (default: 0-3)")(
      "layers", po::value<std::string>(), "layers to draw (default: all)")("heads", po::value<std::string>(),
                                                                            "heads to draw (default: all)")(
      "tokens", po::value<std::string>(), "token range of the token x token maps, FROM-TO (inclusive)")(
      "checkpoint", po::value<std::string>(), "best (default) or last")("svg", "also write SVG files")(
      "no-mixing", "skip the effective mixing matrices (one backward pass per token and layer)")(
      "query", po::value<std::int64_t>(), "sequences: also map where this query position looks, per layer and head")(
      "period", po::value<std::int64_t>(),
      "sequences: tokens per repeat of the induction-score probe (default: min(64, context / 2))");
  const auto cl = parse_command_line("attn", args, opts);
  if (cl.vars.count("help")) {
    std::cout << command_help(
        "attn", "<run-dir>",
        "Draws what a trained model attends to: per-head attention over the image, token x token maps, attention "
        "rollout, effective mixing matrices (any mixer), head distance and entropy; with the arrays (.npy) and an "
        "index.html, in <run-dir>/attn/. On sequence runs (language models, recall, sequence classification): "
        "token x token maps labelled with the tokens, the map of a --query position, and per-head induction and "
        "previous-token scores (Olsson et al. 2022).",
        opts, "Examples:\n  blocklab attn results/runs/vit_fmnist/fae098b377cc\n"
              "  blocklab attn <run> --samples 0,7 --layers 3 --heads 0,1 --svg\n"
              "  blocklab attn results/runs/lm_kjv/<id> --tokens 0-47 --query 40\n");
    return 0;
  }
  if (cl.positional.size() != 1) throw UsageError("blocklab attn: give one run directory\n  see: blocklab attn --help");
  AttnOptions o;
  o.run_dir = cl.positional[0];
  while (o.run_dir.size() > 1 && o.run_dir.back() == '/') o.run_dir.pop_back();
  o.split = choice_option(cl, "attn", "split", {"train", "val", "test"}, "test");
  auto index_list = [&](const char* name) {
    return cl.vars.count(name) ? IndexList("attn", std::string("--") + name, cl.vars[name].as<std::string>()) : IndexList();
  };
  o.samples = index_list("samples");
  o.layers = index_list("layers");
  o.heads = index_list("heads");
  o.tokens = index_list("tokens");
  if (!o.tokens.empty()) o.tokens.expect_single();
  o.checkpoint = choice_option(cl, "attn", "checkpoint", {"best", "last"}, "best");
  o.svg = cl.vars.count("svg") > 0;
  o.mixing = cl.vars.count("no-mixing") == 0;
  if (cl.vars.count("query")) o.query = cl.vars["query"].as<std::int64_t>();
  if (cl.vars.count("period")) o.period = cl.vars["period"].as<std::int64_t>();
  if (cl.vars.count("query") && o.query < 0)
    throw UsageError("blocklab attn: --query must be a token position >= 0");
  return attn(o);
}

const bool BLOCKLAB_UNIQUE(registered_) = CommandRegistry::instance().add(
    {"attn", "attention maps, rollout and mixing matrices of a trained run (pictures + index.html)", attn_command, 62});

}  // namespace
}  // namespace blocklab
