// The sequence view of `blocklab attn` (token ids or series steps, no image): token x token maps
// per head labelled with the tokens (a text's characters), the attention of one query position
// (--query) over the keys, per layer, and on token models the per-head induction and
// previous-token scores of Olsson et al. 2022 (analysis/attention_maps.h), measured on a
// repeated random sequence; and for every mixer, with attention weights or not (SSMs, long
// convolutions, linear attention), the effective mixing matrix ||dy_i/dx_j|| per layer.
#include <algorithm>
#include <cmath>
#include <functional>
#include <iostream>
#include <map>

#include "analysis/attention_maps.h"
#include "analysis/commands/attn_common.h"
#include "analysis/npy.h"
#include "registry/config_error.h"

namespace blocklab {
namespace {

// How token `id` prints on an axis: its name (a character; blanks made visible), else the id.
std::string token_label(const DatasetInfo& info, std::int64_t id) {
  if (id < 0 || id >= static_cast<std::int64_t>(info.token_names.size())) return std::to_string(id);
  const std::string& name = info.token_names[static_cast<std::size_t>(id)];
  if (name == " ") return "\u2423";   // open box
  if (name == "\n") return "\u21b5";  // return arrow
  if (name == "\t") return "\u21e5";
  return name;
}

// Axis labels of tokens [from, to) of one sample: the tokens of id inputs, positions otherwise.
std::vector<std::string> labels_of(const DatasetInfo& info, const torch::Tensor& sample, std::int64_t from,
                                   std::int64_t to) {
  std::vector<std::string> labels;
  const bool ids = sample.dim() == 1 && !sample.is_floating_point();
  for (std::int64_t i = from; i < to; ++i)
    labels.push_back(ids ? token_label(info, sample[i].item<std::int64_t>()) : std::to_string(i));
  return labels;
}

// The records of every layer that keeps attention weights, by layer id.
std::map<int, const AttentionRecord*> records_of(const AttentionProbe& probe) {
  std::map<int, const AttentionRecord*> out;
  for (const auto& [layer, c] : captures_by_layer(probe))
    if (c.record) out[layer] = c.record;
  return out;
}

// Induction and previous-token scores per layer and head, on `batch` random sequences of
// `period` tokens repeated to fill the model's context; rows: the recording layers.
void head_scores(const LoadedRun& run, std::int64_t period, const std::string& out, IndexPage& page,
                 const std::function<void(const HeatmapFigure&, const std::string&)>& render) {
  const std::int64_t length = run.model->stem().tokens(), vocabulary = run.info.vocabulary;
  if (period == 0) period = std::min<std::int64_t>(64, length / 2);
  if (period < 2 || 2 * period > length)
    throw UsageError("blocklab attn: --period " + std::to_string(period) + " does not fit twice in the model's " +
                     std::to_string(length) + " tokens; use 2 <= period <= " + std::to_string(length / 2));
  auto gen = at::make_generator<at::CPUGeneratorImpl>(0x1d0c7105);
  const torch::Tensor block = torch::randint(vocabulary, {8, period}, gen, torch::kLong);
  const std::int64_t repeats = length / period;
  const torch::Tensor ids = block.repeat({1, repeats});
  AttentionProbe probe;
  probe.enable();
  {
    torch::NoGradGuard no_grad;
    run.model->forward(ids, &probe);
  }
  const auto records = records_of(probe);
  if (records.empty()) return;
  std::int64_t heads_max = 0;
  for (const auto& [l, r] : records) heads_max = std::max(heads_max, r->probs.size(1));
  const auto rows = static_cast<std::int64_t>(records.size());
  torch::Tensor induction = torch::full({rows, heads_max}, std::nan(""), torch::kFloat64);
  torch::Tensor previous = induction.clone();
  std::int64_t row = 0;
  std::vector<std::string> row_labels;
  for (const auto& [l, r] : records) {
    const std::int64_t h = r->probs.size(1);
    torch::Tensor ind = torch::zeros({h}, torch::kFloat64), prev = ind.clone();
    for (std::int64_t b = 0; b < r->probs.size(0); ++b) {
      ind += induction_scores(r->probs[b], period) / static_cast<double>(r->probs.size(0));
      prev += previous_token_scores(r->probs[b]) / static_cast<double>(r->probs.size(0));
    }
    induction[row].slice(0, 0, h).copy_(ind), previous[row].slice(0, 0, h).copy_(prev);
    row_labels.push_back(std::to_string(l));
    ++row;
  }
  save_npy(out + "/arrays/induction_scores.npy", induction);
  save_npy(out + "/arrays/previous_token_scores.npy", previous);
  HeatmapFigure f;
  f.title = "per head, on 8 random sequences of " + std::to_string(period) + " tokens repeated";
  f.shared_scale = false;
  f.columns = 2;
  for (auto [m, title] : {std::pair{induction, std::string("induction score")},
                          std::pair{previous, std::string("previous-token score")}}) {
    Heatmap h = layers_by_heads_panel(m, title, row_labels);
    h.vmin = 0, h.vmax = 1;
    f.panels.push_back(h);
  }
  render(f, "head_scores");
  page.section("Heads", "Induction (prefix matching) and previous-token scores of Olsson et al. 2022: the mean "
                        "attention from each token of a repeated random sequence to the token after its previous "
                        "occurrence, and to the token before it. 1 is an ideal head of that kind.");
  page.picture("head_scores.png", "layers x heads");
}

// The effective mixing matrix (the Jacobian norm, rows normalised) of every wanted layer's
// mixer call on sample s: one panel per layer over tokens [from, to), and the arrays.
void draw_mixing(const AttentionProbe& probe, const std::vector<std::int64_t>& layers, std::int64_t s,
                 std::int64_t from, std::int64_t to, const std::vector<std::string>& tokens, const std::string& tag,
                 const std::string& out, IndexPage& page,
                 const std::function<void(const HeatmapFigure&, const std::string&)>& render) {
  HeatmapFigure f;
  f.title = "effective mixing ||dy_i/dx_j|| per layer, rows normalised, tokens " + std::to_string(from) + ".." +
            std::to_string(to - 1);
  f.shared_scale = false;
  std::vector<torch::Tensor> all;
  for (const MixerCall& call : probe.mixer_calls()) {
    if (std::find(layers.begin(), layers.end(), call.context.layer) == layers.end()) continue;
    MixerContext ctx = call.context;
    if (ctx.lengths.defined()) ctx.lengths = ctx.lengths.slice(0, s, s + 1);
    const torch::Tensor m = normalize_rows(mixing_matrix(*call.mixer, call.input.slice(0, s, s + 1), ctx));
    all.push_back(m);
    Heatmap panel =
        matrix_panel(m.slice(0, from, to).slice(1, from, to), "layer " + std::to_string(call.context.layer));
    panel.row_labels = panel.col_labels = tokens;
    f.panels.push_back(panel);
  }
  if (all.empty()) return;
  save_npy(out + "/arrays/mixing_" + tag + ".npy", torch::stack(all));
  render(f, tag + "_mixing");
  page.picture(tag + "_mixing.png", "effective mixing matrices, per layer (any mixer)");
}

}  // namespace

int attn_sequences(const AttnOptions& o, const LoadedRun& run) {
  const DatasetInfo& info = run.info;
  const Split& split = run.dataset->split(o.split);
  const std::vector<std::int64_t> samples =
      o.samples.empty() ? select(o.samples, std::min<std::int64_t>(4, split.size()), "samples")
                        : o.samples.resolve(split.size(), "samples of the " + o.split + " split");
  if (samples.empty()) throw UsageError("blocklab attn: the " + o.split + " split has no samples; choose another --split");
  const torch::Tensor index = torch::tensor(samples, torch::kInt64);
  const torch::Tensor raw = split.inputs.index_select(0, index);
  const torch::Tensor lengths = split.lengths.defined() ? split.lengths.index_select(0, index) : torch::Tensor();
  AttentionProbe probe;
  probe.enable();
  probe.keep_mixer_calls(o.mixing);
  {
    torch::NoGradGuard no_grad;
    run.model->forward(run.dataset->prepare(raw, nullptr), &probe, lengths);
  }
  const auto records = records_of(probe);
  if (records.empty() && probe.mixer_calls().empty())
    throw ConfigError("the run's token mixers record no attention weights, and --no-mixing leaves nothing to draw",
                      Source{}, "model",
                      {"drop --no-mixing: the effective mixing matrices are drawn for any mixer",
                       "blocklab describe <mixer> says whether a mixer records weights"});
  const std::vector<std::int64_t> layers = select(o.layers, run.model->stack().depth(), "layers");
  const std::int64_t n =
      records.empty() ? probe.mixer_calls().front().input.size(1) : records.begin()->second->probs.size(-1);
  const auto [from, last] = o.tokens.empty() ? std::pair<std::int64_t, std::int64_t>{0, std::min<std::int64_t>(n, 64) - 1}
                                             : o.tokens.single_range(n, "tokens");
  const std::int64_t to = last + 1;
  if (o.query >= n)
    throw UsageError("blocklab attn: --query " + std::to_string(o.query) + " is past the " + std::to_string(n) +
                     " tokens of the run's sequences");

  StagedDirectory staged(output_path_inside("attn", o.run_dir, "attn"));
  const std::string& out = staged.path();
  std::filesystem::create_directories(out + "/arrays");
  std::vector<std::string> written;
  auto render = [&](const HeatmapFigure& f, const std::string& name) {
    render_heatmaps(f, out + "/" + name + ".png", o.svg ? out + "/" + name + ".svg" : "");
    written.push_back(name + ".png");
  };
  IndexPage page;
  for (const auto& [l, r] : records) save_npy(out + "/arrays/probs_layer" + std::to_string(l) + ".npy", r->probs);
  if (info.vocabulary > 0 && run.model->stem().layout().causal) head_scores(run, o.period, out, page, render);

  for (std::size_t si = 0; si < samples.size(); ++si) {
    const auto s = static_cast<std::int64_t>(si);
    const std::string tag = o.split + std::to_string(samples[si]);
    const std::vector<std::string> tokens = labels_of(info, raw[s], from, to);
    page.section("Sample " + std::to_string(samples[si]) + " of " + o.split,
                 "tokens " + std::to_string(from) + ".." + std::to_string(to - 1));
    for (auto l : layers) {
      const auto found = records.find(static_cast<int>(l));
      if (found == records.end()) continue;  // this layer's mixer records no attention weights
      const torch::Tensor probs = found->second->probs[s];  // [h, N, N]
      const std::string lname = "layer " + std::to_string(l) + " (" + found->second->mixer + ")";
      HeatmapFigure f;
      f.title = lname + ": token x token attention, tokens " + std::to_string(from) + ".." + std::to_string(to - 1);
      f.colorbar_label = "probability";
      for (auto h : select(o.heads, probs.size(0), "heads")) {
        Heatmap panel = matrix_panel(probs[h].slice(0, from, to).slice(1, from, to), "head " + std::to_string(h));
        panel.row_labels = panel.col_labels = tokens;
        f.panels.push_back(panel);
      }
      render(f, tag + "_layer" + std::to_string(l) + "_tokens");
      page.picture(tag + "_layer" + std::to_string(l) + "_tokens.png", lname + ": token x token, per head");
    }
    if (o.mixing) draw_mixing(probe, layers, s, from, to, tokens, tag, out, page, render);
    if (o.query < 0 || records.empty()) continue;
    // One query's attention over the keys: a row per head, a panel per layer.
    const std::vector<std::string> keys = labels_of(info, raw[s], 0, o.query + 1);
    const std::string query_token = labels_of(info, raw[s], o.query, o.query + 1).front();
    HeatmapFigure f;
    f.title = "query " + std::to_string(o.query) + " ('" + query_token + "'): attention over keys 0.." +
              std::to_string(o.query);
    f.columns = 1;
    for (auto l : layers) {
      const auto found = records.find(static_cast<int>(l));
      if (found == records.end()) continue;
      const torch::Tensor row = found->second->probs[s].select(1, o.query).slice(1, 0, o.query + 1);  // [h, q+1]
      Heatmap panel = matrix_panel(row, "layer " + std::to_string(l));
      panel.x_label = "key token", panel.y_label = "head";
      panel.col_labels = keys;
      for (std::int64_t h = 0; h < row.size(0); ++h) panel.row_labels.push_back(std::to_string(h));
      f.panels.push_back(panel);
    }
    render(f, tag + "_query" + std::to_string(o.query));
    page.picture(tag + "_query" + std::to_string(o.query) + ".png", "where query " + std::to_string(o.query) + " looks");
  }
  page.write(out + "/index.html", "Attention maps: " + o.run_dir,
             "Checkpoint " + std::filesystem::path(run.checkpoint).filename().string() + ", split " + o.split +
                 ". Arrays for every picture are in arrays/ (.npy; numpy.load).");
  staged.commit();
  std::cerr << "wrote " << written.size() << " pictures, arrays and index.html into " << o.run_dir << "/attn\n";
  std::cout << o.run_dir << "/attn/index.html\n";
  return 0;
}

}  // namespace blocklab
