// The output of a multi-head attention: the heads concatenated and projected back,
//   out = Concat(head_1..head_h) W_O                Vaswani et al. 2017, arXiv:1706.03762, §3.2.2
// optionally gated first, per head and channel, by the block's input (the G1 gate of "Gated
// Attention for Large Language Models", Qiu et al., 2025, arXiv:2505.06708, eq. (5)):
//   head_i <- head_i ⊙ sigmoid(X W_g + b_g)_i,  W_g: C -> heads d
// then dropout (proj_drop). Parts are registered on the owning module under flat names
// (proj, gate), so the state-dict names do not depend on how an attention is assembled.
#pragma once

#include <torch/torch.h>

namespace blocklab {

class OutputProjection {
 public:
  // inner = heads * head width; with `gate`, a Linear C -> inner (registered after proj).
  OutputProjection(torch::nn::Module& owner, std::int64_t inner, std::int64_t dim, bool gate, double proj_drop);
  // o [B, h, N, d] -> [B, N, C]; x [B, N, C] is the attention's input (needed with the gate).
  torch::Tensor merge(const torch::Tensor& o, const torch::Tensor& x, bool training);

  torch::nn::Linear proj{nullptr};
  torch::nn::Linear gate{nullptr};

 private:
  double proj_drop_;
};

}  // namespace blocklab
