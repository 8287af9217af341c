// sparse/fit: FIT's interleaved local (group) and global (latent) attention as one token mixer.
//
// Paper: "FIT: Far-reaching Interleaved Transformers", Chen & Li 2023, arXiv:2305.12689, §2;
// read against google-research/pix2seq architectures/transformers.py (FIT, get_layer_config,
// get_chunk_ar_mask; catalog_000_001 B 1-05). The body tokens are cut into t groups of n tokens
// (a grid: g x g windows, zero-padded to whole windows as the local mixers do; a sequence: runs
// of g consecutive tokens, the last one shorter); each group owns m latents. One layer of FIT's
// "(1)1" stage, per forward, with the update y for x [B, N, C]:
//   (1) local   o_local = MHSA within each group (the local core over the windows)
//   (2) read    L_g = P_g + CrossAttn(LN(P_g), LN(x_g))        P [t_max, m, C]: learned table
//   (3) global  L = L + SelfAttn(LN(L))                         over all t m latents of a sample
//   (4) write   y_i = o_local_i + CrossAttn(LN(x_i), LN(L_g(i)))
// Causal (FITAR, the official autoregressive FIT): the tokens, prefix included, are one sequence
// of runs in token order (a grid is read in raster order); (1) is causal within the run, (3)
// block-causal (latent chunk k sees chunks <= k: get_chunk_ar_mask), and (4) shifted: run k
// reads the latents of run k - 1, run 0 m zero latents (FITAR's _latent_shift). So output i
// depends on tokens <= i only, and the last run's latents are unused.
// CrossAttn(a, c) = softmax(a W_q (c W_k)^T / sqrt(d)) c W_v W_o per head (FIT's cross layers
// without MLP, heads = h, head width d). Latents do not persist across layers: every layer
// starts from its own learned table, one row per group position (FIT's positional latent init),
// rows taken in group order (windows row-major). Drawn trunc-normal with std 1, not FIT's 0.02:
// the table meets LN(P) and LN(L) at once, and LN divides by that scale, so a 0.02 table makes
// the read and write paths ~50x as sensitive to every step (the ViT check stalled at loss
// 0.70 -> 0.49 with 0.02, reached 0.0007 with 1); std 1 is the scale of the normalised tokens
// the mixer receives. Cost: local t n^2, read and write t m n, global (t m)^2; no N x N matrix.
// Prefix tokens (class, registers) are global tokens of the local attention (local_core.h,
// with_prefix: they see every token and every group sees them); they take no part in read,
// global and write (their write update is 0). The read sees the mixer's input x (the official
// stage reads after its local layers; in a stack the next layer's read sees this layer's local).
// The probe records nothing (the token x token map does not describe the latent path): weights
// none. Causal use reads a grid as a sequence, so it does not combine with rotary 2d.
// latents: 0 turns (2)-(4) off: windowed softmax attention.
//
// Shape contract: x [B, N, C] -> [B, N, C]; N = prefix + grid tokens, or a plain sequence.
#pragma once

#include <algorithm>
#include <optional>

#include "blocks/attention/parts/output.h"
#include "blocks/local/local_attention.h"

namespace blocklab {

struct FitAttentionOptions : MultiHeadOptions<FitAttentionOptions> {
  TORCH_ARG(std::int64_t, group) = 7;    // group side g: g x g windows on a grid, runs of g tokens (default 7)
  TORCH_ARG(std::int64_t, latents) = 4;  // m latents per group; 0: local attention only (default 4)
};

// FIT's cross-attention without MLP: queries from LN(a), keys and values from LN(c), each query
// over the context tokens its pattern gives it (the local core; a pattern part per group size).
class FitCrossAttentionImpl : public torch::nn::Module {
 public:
  FitCrossAttentionImpl(std::int64_t dim, std::int64_t heads, std::int64_t head_dim, bool qkv_bias, double attn_drop,
                        double proj_drop);
  // a [B, N_q, C], c [B, N_k, C]; pattern over N_q queries and N_k keys -> [B, N_q, C].
  torch::Tensor forward(const torch::Tensor& a, const torch::Tensor& c, const LocalPattern& pattern);

  torch::nn::LayerNorm query_norm{nullptr}, context_norm{nullptr};
  torch::nn::Linear q{nullptr}, kv{nullptr};  // C -> h d, C -> 2 h d ([k | v])

 private:
  std::int64_t heads_, head_dim_;
  double attn_drop_;
  OutputProjection output_;
};
TORCH_MODULE(FitCrossAttention);

class FitAttentionImpl : public LocalAttentionImpl {
 public:
  static constexpr const char* kKey = "sparse/fit";
  FitAttentionImpl(std::int64_t dim, const FitAttentionOptions& options, const MultiHeadConfig& config);
  const FitAttentionOptions& options() const { return options_; }

  // Pads the grid to whole windows, mixes, crops.
  torch::Tensor forward(const torch::Tensor& x, const MixerContext& ctx) override;
  // Causal, no weights to the probe; plain sequences allowed.
  MixerCapabilities capabilities() const override;

  // The group windows of a (padded) grid height x width (a sequence: 1 x N), and the read,
  // global and write patterns between the groups' tokens and their latents.
  struct Groups {
    std::int64_t height = 0, width = 0, count = 0;  // count: t
    bool causal = false;
    torch::Device device = torch::kCPU;
    LocalPattern body, read, global, write;
  };
  const Groups& groups(std::int64_t height, std::int64_t width, bool causal, const torch::Device& device);
  std::int64_t max_groups() const { return latent_table.defined() ? latent_table.size(0) : 0; }

  torch::Tensor latent_table{nullptr};  // [t_max, m, C] (latents > 0)
  FitCrossAttention read{nullptr};      // (2)
  torch::nn::LayerNorm global_norm{nullptr};
  std::shared_ptr<MultiHeadAttentionImpl> global_attention;  // (3), registered as "global"
  FitCrossAttention write{nullptr};                          // (4)

 protected:
  LocalPattern body_pattern(std::int64_t height, std::int64_t width, bool causal) const override;
  bool takes_sequences() const override { return true; }
  bool supports_causal() const override { return true; }

 private:
  torch::Tensor mix(const torch::Tensor& x, const MixerContext& ctx);
  // (3): SelfAttn over the latents' pattern (all, or block-causal) from normed [B, t m, C].
  torch::Tensor global_mix(const torch::Tensor& normed, const LocalPattern& pattern);
  std::int64_t fitted(std::int64_t extent) const { return std::min(options_.group(), extent); }

  FitAttentionOptions options_;
  double attn_drop_;
  std::optional<Groups> groups_;
};
TORCH_MODULE(FitAttention);

// Runs of `run` consecutive tokens over a sequence of `length` (the last run shorter), as a
// local pattern: one part for the whole runs, one for the rest; causal within each run if asked.
LocalPattern fit_run_pattern(std::int64_t length, std::int64_t run, bool causal = false);

const OptionsSchema<FitAttentionOptions>& fit_attention_schema();

}  // namespace blocklab
