// channel/eca: efficient channel attention, a 1-D convolution across the pooled channels instead
// of SE's two fully connected layers (no dimensionality reduction, k weights in all).
//
// Paper: "ECA-Net: Efficient Channel Attention for Deep Convolutional Neural Networks", Wang et
// al., CVPR 2020, arXiv:1910.03151, §3.2-3.3 (eq. 9-12); read against BangguWu/ECANet
// models/eca_module.py and models/eca_ns.py:
//   z = GAP(x) [B, C];  w_c = sigmoid(sum_{j=-p..p} a_j z_{c+j})  (zero beyond the ends),  out = w ⊙ x
// with k = 2p + 1 taps shared by every channel (shared: true, Conv1d(1, 1, k) without bias), or
// per channel (shared: false, the paper's ECA-NS: a_{c,j}, C k weights). The kernel size is
// adaptive, k = psi(C) = |log2(C) / gamma + b / gamma|_odd (eq. 12; gamma 2, b 1, rounded down
// and then up to odd as the code does: C = 64 -> 3, 256 -> 5, 2048 -> 7), unless set.
#pragma once

#include "blocks/channel_attention/channel_attention.h"
#include "registry/options_schema.h"

namespace blocklab {

struct EcaOptions {
  TORCH_ARG(std::int64_t, kernel) = 0;  // taps k, odd; 0 = psi(C) (default 0)
  TORCH_ARG(std::int64_t, gamma) = 2;   // psi's gamma (default 2)
  TORCH_ARG(std::int64_t, b) = 1;       // psi's b (default 1)
  TORCH_ARG(bool, shared) = true;       // one kernel for every channel (ECA) or one per channel (ECA-NS)
};

// psi(C) = |(log2 C + b) / gamma|_odd (eq. 12, as the official code rounds).
std::int64_t eca_kernel_size(std::int64_t channels, std::int64_t gamma = 2, std::int64_t b = 1);

class EcaImpl : public ChannelAttentionImpl {
 public:
  static constexpr const char* kKey = "channel/eca";
  EcaImpl(std::int64_t channels, const EcaOptions& options = {});
  torch::Tensor forward(const torch::Tensor& x) override;
  torch::Tensor gates(const torch::Tensor& x);  // w [B, C]
  std::int64_t kernel() const { return kernel_; }

  torch::Tensor weight;  // [1, k] (shared) or [C, k]: a_j or a_{c,j}

 private:
  std::int64_t kernel_;
};
TORCH_MODULE(Eca);

}  // namespace blocklab
