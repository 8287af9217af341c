// local/window, local/maxvit-block, local/maxvit-grid, local/davit-window: multi-head
// self-attention inside groups of the grid, with a relative position bias over the offsets
// inside a group (not DaViT's).
//   local/window        Swin's windows: M x M windows, optionally of the grid cyclically shifted
//                       by `shift` (Swin's odd blocks), with the mask that keeps the wrapped-around
//                       regions apart.
//   local/maxvit-block  MaxViT's block attention: P x P windows, no shift.
//   local/maxvit-grid   MaxViT's grid attention: a G x G lattice of tokens (H / G, W / G) apart
//                       in every group: sparse, global mixing.
//   local/davit-window  DaViT's spatial window attention: M x M windows, no shift, no bias
//                       ("DaViT: Dual Attention Vision Transformers", Ding et al. 2022,
//                       arXiv:2204.03645, §3.2; catalog_002 B-39).
//
// Papers: "Swin Transformer: Hierarchical Vision Transformer using Shifted Windows", Liu et al.
// 2021, arXiv:2103.14030, §3.2 (eq. (4)); "MaxViT: Multi-Axis Vision Transformer", Tu et al.
// 2022, arXiv:2204.01697, §3.1 (catalog_002 B-48).
//   Attention(Q, K, V) = softmax(Q K^T / sqrt(d) + B) V per group, B the (2M - 1) x (2M - 1)
//   relative position table per head (trunc-normal, std 0.02) indexed by the offset query - key
//   inside the group (Swin's relative_position_index; MaxViT's 2-D relative bias).
// As Swin: a grid side not above the group side makes the group that side and drops the shift;
// a grid that is not a multiple of it is zero-padded at the bottom and right before the
// projection (the padded tokens take part in the attention, as in Swin v1 and its detection
// code, which pads before the shift) and cropped after.
//
// Shape contract: x [B, N, C] -> [B, N, C]; N = prefix + grid tokens (prefix tokens are global
// tokens: local_core.h, with_prefix). Not causal.
#pragma once

#include <algorithm>
#include <string>

#include "blocks/local/local_attention.h"

namespace blocklab {

struct WindowAttentionOptions : MultiHeadOptions<WindowAttentionOptions> {
  TORCH_ARG(std::int64_t, window) = 7;  // window side M (Swin: 7; MaxViT's block P: 7)
  TORCH_ARG(std::int64_t, shift) = 0;   // cyclic shift (Swin's odd blocks: M / 2)
  TORCH_ARG(std::int64_t, grid) = 7;    // MaxViT's grid side G (local/maxvit-grid)
  TORCH_ARG(bool, rel_bias) = true;     // the relative position bias
};

// How the grid is cut into groups.
enum class Partition { windows, grid };

class WindowAttentionImpl : public LocalAttentionImpl {
 public:
  static constexpr const char* kKey = "local/window";
  WindowAttentionImpl(std::int64_t dim, const WindowAttentionOptions& options, const MultiHeadConfig& config,
                      const std::string& key = kKey, Partition partition = Partition::windows);
  const WindowAttentionOptions& options() const { return options_; }

  // Pads the grid to a multiple of the group side, attends, crops.
  torch::Tensor forward(const torch::Tensor& x, const MixerContext& ctx) override;

  // [(2M - 1)^2, h], M the group side: offset (dy, dx) = query - key inside the group at
  // (dy + M - 1) (2M - 1) + dx + M - 1 (Swin's layout).
  torch::Tensor relative_position_bias_table{nullptr};

 protected:
  LocalPattern body_pattern(std::int64_t height, std::int64_t width, bool causal) const override;
  std::vector<torch::Tensor> body_biases(const LocalPattern& body, std::int64_t height, std::int64_t width, bool causal,
                                         const torch::Tensor& q_body) override;

 private:
  // The group side per axis on a grid of that extent (the configured side, at most the extent).
  std::int64_t fitted(std::int64_t extent) const { return std::min(side_, extent); }

  WindowAttentionOptions options_;
  Partition partition_;
  std::int64_t side_;  // M: the window (windows) or the grid (grid)
};
TORCH_MODULE(WindowAttention);

const OptionsSchema<WindowAttentionOptions>& window_attention_schema();  // local/window
const OptionsSchema<WindowAttentionOptions>& maxvit_block_schema();      // local/maxvit-block
const OptionsSchema<WindowAttentionOptions>& maxvit_grid_schema();       // local/maxvit-grid
const OptionsSchema<WindowAttentionOptions>& davit_window_schema();      // local/davit-window

}  // namespace blocklab
