// The query/key/value projection of a multi-head attention (Vaswani et al. 2017,
// arXiv:1706.03762, §3.2.2: head_i = Attn(X W_Q^i, X W_K^i, X W_V^i)), with
//   kv_heads   grouped-query attention (Ainslie et al. 2023, "GQA", arXiv:2305.13245, §2.2):
//              kv_heads key/value heads, each shared by heads / kv_heads query heads;
//              kv_heads = 1 is multi-query attention (Shazeer 2019, arXiv:1911.02150)
//   head_dim   the width d of each head (default dim / heads)
//   qk_norm    LayerNorm over the head width on q and k (Dehghani et al. 2023, "Scaling Vision
//              Transformers to 22 Billion Parameters", arXiv:2302.05442, §2.1; eps 1e-6)
//   rotary     rotary positions on q and k after the norm, 1-D or 2-D axial (common/rotary.h)
//
// One Linear C -> (heads + 2 kv_heads) d, output laid out [q | k | v] with heads contiguous
// in each (the reference ViT's qkv layout when kv_heads = heads and d = C / heads).
// The parts are registered on the owning module under flat names (qkv, q_norm, k_norm), so
// the state-dict names of an attention do not depend on how it is assembled.
#pragma once

#include <array>
#include <string>
#include <utility>

#include "blocks/layout.h"

namespace blocklab {

struct ProjectionConfig {
  std::int64_t heads = 4;
  std::int64_t kv_heads = 0;  // 0: heads
  std::int64_t head_dim = 0;  // 0: dim / heads
  bool qkv_bias = true;
  bool qk_norm = false;
  std::string rotary = "none";  // none | 1d | 2d
  double rotary_base = 10000.0;
};

class QkvProjection {
 public:
  QkvProjection(torch::nn::Module& owner, std::int64_t dim, const ProjectionConfig& config);

  // x [B, N, C] -> q [B, h, N, d], k, v [B, h, N, d]: strided views of one projection; grouped
  // key/value heads are repeated to h heads (kv head g serves query heads g*h/kv ..).
  std::array<torch::Tensor, 3> split(const torch::Tensor& x);
  // q, k after the per-head stages: the norm (qk_norm), then the rotation (rotary).
  std::pair<torch::Tensor, torch::Tensor> position(const torch::Tensor& q, const torch::Tensor& k,
                                                   const MixerContext& ctx);

  std::int64_t heads() const { return heads_; }
  std::int64_t kv_heads() const { return kv_heads_; }
  std::int64_t head_dim() const { return head_dim_; }
  const std::string& rotary() const { return rotary_; }

  torch::nn::Linear qkv{nullptr};
  torch::nn::LayerNorm q_norm{nullptr}, k_norm{nullptr};

 private:
  std::int64_t heads_, kv_heads_, head_dim_;
  std::string rotary_;
  double rotary_base_;
};

}  // namespace blocklab
