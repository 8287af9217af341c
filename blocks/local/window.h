// local/window: Swin's window attention: multi-head self-attention inside non-overlapping
// window x window windows, optionally of the grid cyclically shifted by shift (the shifted
// windows of Swin's odd blocks, with the mask that keeps the wrapped-around regions apart), with
// the relative position bias of Swin.
//
// Paper: "Swin Transformer: Hierarchical Vision Transformer using Shifted Windows", Liu et al.
// 2021, arXiv:2103.14030, §3.2 (eq. (4)): Attention(Q, K, V) = softmax(Q K^T / sqrt(d) + B) V
// per window, B the (2M - 1) x (2M - 1) relative position table per head (trunc-normal, std 0.02)
// indexed by the offset query - key inside the window.
// As Swin: a grid side not above the window makes the window that side and drops the shift; a
// grid that is not a multiple of the window is zero-padded at the bottom and right before the
// projection (the padded tokens take part in the attention, as in Swin v1) and cropped after.
//
// Shape contract: x [B, N, C] -> [B, N, C]; N = prefix + grid tokens (prefix tokens are global
// tokens: local_core.h, with_prefix). Not causal.
#pragma once

#include "blocks/local/local_attention.h"

namespace blocklab {

struct WindowAttentionOptions : MultiHeadOptions<WindowAttentionOptions> {
  TORCH_ARG(std::int64_t, window) = 7;  // window side M (Swin: 7)
  TORCH_ARG(std::int64_t, shift) = 0;   // cyclic shift (Swin's odd blocks: M / 2)
  TORCH_ARG(bool, rel_bias) = true;     // Swin's relative position bias
};

class WindowAttentionImpl : public LocalAttentionImpl {
 public:
  static constexpr const char* kKey = "local/window";
  WindowAttentionImpl(std::int64_t dim, const WindowAttentionOptions& options, const MultiHeadConfig& config);
  const WindowAttentionOptions& options() const { return options_; }

  // Pads the grid to a multiple of the window, attends, crops.
  torch::Tensor forward(const torch::Tensor& x, const MixerContext& ctx) override;

  // [(2M - 1)^2, h]: offset (dy, dx) = query - key at (dy + M - 1) (2M - 1) + dx + M - 1 (Swin's layout).
  torch::Tensor relative_position_bias_table{nullptr};

 protected:
  LocalPattern body_pattern(std::int64_t height, std::int64_t width, bool causal) const override;
  std::vector<torch::Tensor> body_biases(const LocalPattern& body, std::int64_t height, std::int64_t width,
                                         bool causal) override;

 private:
  WindowAttentionOptions options_;
};
TORCH_MODULE(WindowAttention);

const OptionsSchema<WindowAttentionOptions>& window_attention_schema();

}  // namespace blocklab
