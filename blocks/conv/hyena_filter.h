// Hyena's implicit long filter, shared by conv/hyena, conv/hyena-2d and mixer/monarch.
//
// Paper: "Hyena Hierarchy: Towards Larger Convolutional Language Models", Poli et al., 2023,
// arXiv:2302.10866, Algorithm 3 and Section 3.3; official code HazyResearch/safari
// (src/models/sequence/hyena.py: PositionalEmbedding, Sin, ExponentialModulation, HyenaFilter)
// and HazyResearch/m2 (bert/src/mm/hyena_utils.py, the same filter with a reverse MLP).
//   positional features of t = 0..L_max-1 (a learnable table, the code's lr 1e-5 parameter):
//     z_t = [t / (L_max - 1), cos(f_j w_t), -sin(f_j w_t)]_{j=1..bands},  w_t = 2 pi t / L_max,
//     f_j = linspace(1e-4, bands - 1, bands), bands = (emb_dim - 1) / 2   (Re, Im of e^{-i f w})
//   FFN:    h_t = W_out sin(a . (W_k ... sin(a . (W_1 z_t + b_1)) ... + b_k))   (one learned
//           frequency vector a [width], init `frequency`, shared by every Sin; W_out no bias)
//   window: h_t[c] <- h_t[c] (exp(-t/(L_max-1) |delta_c|) + shift),
//           delta = linspace(ln(target) / slow_decay, ln(target) / fast_decay, channels) (fixed)
// The filter of a length n <= L_max is the first n rows (positions normalised by L_max, so
// the same n-prefix for every n): longer sequences are refused.
//
// Also here: the long convolutions the three blocks share (causal or two-sided, FFT or direct)
// and the zeroing of right padding that gives them variable lengths.
//
// Shape contract: filter(n) -> [n, channels].
#pragma once

#include <torch/torch.h>

#include <sstream>
#include <string>
#include <vector>

#include "blocks/common/options.h"
#include "blocks/common/weight_decay.h"
#include "blocks/layout.h"

namespace blocklab {

struct HyenaFilterOptions {
  TORCH_ARG(std::int64_t, filter_width) = 64;  // width of the filter FFN (the code's filter_order)
  TORCH_ARG(std::int64_t, emb_dim) = 3;        // positional features: t and (emb_dim - 1) / 2 cos/sin bands
  TORCH_ARG(std::int64_t, filter_layers) = 2;  // inner Linear + Sin layers of the FFN
  TORCH_ARG(double, frequency) = 1.0;          // initial frequency a of the Sin activations
  TORCH_ARG(double, fast_decay) = 0.3;         // the fastest channel's window reaches `decay_target` at t = 0.3
  TORCH_ARG(double, slow_decay) = 1.5;         // the slowest at t = 1.5
  TORCH_ARG(double, decay_target) = 1e-2;
  TORCH_ARG(double, window_shift) = 0.0;  // added to the window (0: a pure exponential decay)
};

// The FFN of positional features [..., in] -> [..., channels] with Sin activations.
class ImplicitFilterMlpImpl : public torch::nn::Module {
 public:
  ImplicitFilterMlpImpl(std::int64_t in_features, std::int64_t channels, const HyenaFilterOptions& options);
  torch::Tensor forward(const torch::Tensor& z);

  torch::Tensor frequency;  // [width]: a of sin(a x), shared by every layer
  torch::nn::ModuleList layers;

 private:
  std::int64_t inner_;
};
TORCH_MODULE(ImplicitFilterMlp);

// Hyena's positional features of positions 0..max_tokens-1 (normalised by max_tokens): [max_tokens, emb_dim].
torch::Tensor hyena_positional_features(std::int64_t max_tokens, std::int64_t emb_dim);
// The per-channel decay rates |delta_c| of the exponential window: [channels].
torch::Tensor hyena_decay_rates(std::int64_t channels, const HyenaFilterOptions& options);

class HyenaFilterImpl : public torch::nn::Module, public DeclaresNoWeightDecay {
 public:
  // `mlps` FFNs share the positional table and the window (M2's bidirectional filter: 2).
  HyenaFilterImpl(std::int64_t channels, std::int64_t max_tokens, const HyenaFilterOptions& options,
                  std::int64_t mlps = 1);
  // h [n, channels] of FFN `mlp`, windowed; n <= max_tokens.
  torch::Tensor filter(std::int64_t n, std::int64_t mlp = 0);
  // The window exp(-t |delta_c|) + shift [n, channels] (in the table's dtype).
  torch::Tensor window(std::int64_t n) const;
  std::int64_t max_tokens() const { return positions.size(0); }
  std::vector<std::string> no_weight_decay() const override { return {"positions"}; }

  torch::Tensor positions;  // [max_tokens, emb_dim], learnable (the code trains it with lr 1e-5)
  torch::Tensor time;       // [max_tokens] buffer: t / (max_tokens - 1)
  torch::Tensor decay;      // [channels] buffer: |delta_c|
  std::vector<ImplicitFilterMlp> mlps;

 private:
  double shift_;
};
TORCH_MODULE(HyenaFilter);

// The long convolution of v [B, n, C] with h [n, C] along the tokens:
//   causal:     y_t = sum_{s <= t} h_{t-s} v_s
//   two-sided:  + sum_{m >= 1} h_rev_{m-1} v_{t+m}   (M2's bidirectional kernel [h, 0] + [0, flip(h_rev)])
// when h_rev [n, C] is defined; by FFT or, when `direct`, by summation (the reference).
torch::Tensor implicit_long_conv(const torch::Tensor& v, const torch::Tensor& h, const torch::Tensor& h_rev,
                                 bool direct);
// The same operator materialised per channel: T [C, n, n], y_t = sum_s T[t, s] v_s.
torch::Tensor long_conv_matrix(const torch::Tensor& h, const torch::Tensor& h_rev);

// x [B, N, ...] with the tokens at or after ctx.lengths[b] set to zero (x itself without lengths).
torch::Tensor zero_padding(const torch::Tensor& x, const MixerContext& ctx);

// The filter's options and `conv` (fft | direct), declared on a block's Options O (which carries
// the same fields).
template <class O>
void declare_hyena_filter_options(OptionsSchema<O>& s) {
  const O d{};
  const auto def = [](auto v) {
    std::ostringstream text;
    text << " (default " << v << ")";
    return text.str();
  };
  BLOCKLAB_OPTION(s, filter_width, "width of the implicit filter's FFN" + def(d.filter_width())).min = 1;
  BLOCKLAB_OPTION(s, emb_dim,
                  "positional features of the filter, odd >= 3: t and (emb_dim-1)/2 cos/sin bands" + def(d.emb_dim()))
      .min = 3;
  BLOCKLAB_OPTION(s, filter_layers, "inner Linear + Sin layers of the filter FFN" + def(d.filter_layers())).min = 0;
  BLOCKLAB_OPTION(s, frequency, "initial frequency a of the FFN's sin(a x) (learned)" + def(d.frequency())).min = 0.0;
  BLOCKLAB_OPTION(s, fast_decay,
                  "the fastest channel's window falls to decay_target at t = fast_decay" + def(d.fast_decay()))
      .min = 1e-6;
  BLOCKLAB_OPTION(s, slow_decay,
                  "the slowest channel's window falls to decay_target at t = slow_decay" + def(d.slow_decay()))
      .min = 1e-6;
  auto& target =
      BLOCKLAB_OPTION(s, decay_target, "window value reached at fast_decay/slow_decay" + def(d.decay_target()));
  target.min = 1e-12;
  target.max = 1.0;
  BLOCKLAB_OPTION(s, window_shift, "constant added to the exponential window" + def(d.window_shift()));
  s.choice(
      "conv", {"fft", "direct"},
      "how the long convolutions run: fft (O(N log N)) or direct summation (O(N^2), the reference) (default fft)",
      [](O& o, const std::string& v) { o.conv(v); }, [](const O& o) { return o.conv(); });
}

template <class O>
HyenaFilterOptions hyena_filter_options(const O& o) {
  return HyenaFilterOptions()
      .filter_width(o.filter_width())
      .emb_dim(o.emb_dim())
      .filter_layers(o.filter_layers())
      .frequency(o.frequency())
      .fast_decay(o.fast_decay())
      .slow_decay(o.slow_decay())
      .decay_target(o.decay_target())
      .window_shift(o.window_shift());
}

// Rules between filter values (emb_dim odd), failing at `params` with the block's key.
void check_hyena_filter_options(const ConfigNode& params, const HyenaFilterOptions& o, const std::string& key);

}  // namespace blocklab
