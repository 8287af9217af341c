// ssm/lmu: the Legendre Memory Unit token mixer of LMUFormer.
//
// Papers: "LMUFormer: Low Complexity Yet Powerful Spiking Model With Legendre Memory Units",
// Liu et al., 2024, arXiv:2402.04882 (the mixer, its FFT training form and recurrent inference);
// "Legendre Memory Units: Continuous-Time Representation in Recurrent Neural Networks",
// Voelker et al., 2019 (NeurIPS) (the memory); the parallel form: Chilkuri & Eliasmith 2021,
// "Parallelizing Legendre Memory Unit Training", arXiv:2102.11417, eqs. (18)-(26).
// Official code read: zeyuliu1037/LMUFormer src/blocks/lmu_cell.py (LMUFFTCell), src/blocks/lmu.py.
//
// The memory: an order-d linear state space whose state m(t) holds the Legendre coefficients of
// the input's last theta time units (the window u(t - theta'), 0 <= theta' <= theta):
//   theta dm/dt = A m + B u,  A_ij = (2i+1) (-1 if i < j else (-1)^(i-j+1)),  B_i = (2i+1) (-1)^i
// (written here with the 1/theta folded into A and B), discretised by zero-order hold with
// dt = 1: A_bar = exp(A), B_bar = A^-1 (A_bar - I) B. Decoding: u(t - theta') ~
// sum_i P_i(2 theta'/theta - 1) m_i(t), P_i the Legendre polynomials.
//
// The mixer (LMUFFTCell + LMU), x [B, N, C] -> [B, N, C]:
//   u_t = ReLU(W_u x_t + b_u)                              C -> 1      (eq. 18 of Chilkuri)
//   m_t = A_bar m_{t-1} + B_bar u_t = sum_{s<=t} H_{t-s} u_s,  H_j = A_bar^j B_bar   (eq. 26)
//   h_t = ReLU(W_h [m_t; x_t] + b_h)                       d + C -> C  (eq. 20)
//   y_t = W_o h_t + b_o                                    C -> C      (proj_conv, a 1x1 conv)
// The parallel form convolves u with the impulse response H by FFT (blocks/common/long_conv.h),
// the recurrent form steps m. Not ours: LMUFormer's conv patch embedding, and the BatchNorm after
// proj_conv (batch statistics would mix tokens across time and samples during training; the
// stacks here normalise before the mixer).
//
// Always causal (ctx.causal = false changes nothing), recurrent: the state is m [B, d].
#pragma once

#include <string>
#include <utility>

#include "blocks/common/init.h"
#include "blocks/common/options.h"
#include "blocks/interfaces.h"

namespace blocklab {

// The continuous Legendre state space of order d and window theta: A [d, d], B [d] (float64),
// A_ij = (2i+1)/theta * (-1 if i < j else (-1)^(i-j+1)), B_i = (2i+1)/theta * (-1)^i.
std::pair<torch::Tensor, torch::Tensor> legendre_state_space(std::int64_t order, double theta);

// Zero-order hold of dx/dt = A x + B u with step dt: A_bar = exp(A dt), B_bar = int_0^dt exp(A s) ds B
// (= A^-1 (A_bar - I) B for invertible A), from the exponential of the block matrix [[A, B], [0, 0]] dt.
// A [d, d], B [d] -> A_bar [d, d], B_bar [d], in A's dtype.
std::pair<torch::Tensor, torch::Tensor> zero_order_hold(const torch::Tensor& A, const torch::Tensor& B, double dt);

// The impulse response H [n, d], H_j = A_bar^j B_bar, by doubling: H[L:2L] = H[0:L] (A_bar^L)^T.
torch::Tensor impulse_response(const torch::Tensor& A_bar, const torch::Tensor& B_bar, std::int64_t n);

// The decoder [d] of the delayed input u(t - delay) from the memory m_t: P_i(2 delay / theta - 1).
torch::Tensor legendre_decoder(std::int64_t order, double delay, double theta);

struct LmuOptions {
  TORCH_ARG(std::int64_t, memory) = 0;  // order d of the memory (0 = dim, as LMUFormer)
  TORCH_ARG(double, theta) = 128.0;     // window theta in tokens (LMUFormer: 128)
  TORCH_ARG(std::string, form) = "parallel";
};

class LmuMixerImpl : public TokenMixerImpl, public KeepsOwnInit {
 public:
  static constexpr const char* kKey = "ssm/lmu";
  LmuMixerImpl(std::int64_t dim, const LmuOptions& options = {});

  torch::Tensor forward(const torch::Tensor& x, const MixerContext& ctx) override;
  MixerCapabilities capabilities() const override;
  MixerState init_state(std::int64_t batch, const torch::TensorOptions& options) override;
  MixerStep step(const torch::Tensor& x_t, const MixerState& state, const MixerContext& ctx) override;

  // The memory m [B, N, d] of the inputs u [B, N] (from m_{-1} = 0), by the given form.
  torch::Tensor memory(const torch::Tensor& u, const std::string& form) const;
  std::int64_t order() const { return A_bar.size(0); }

  torch::nn::Linear input{nullptr};   // W_u: C -> 1
  torch::nn::Linear hidden{nullptr};  // W_h: d + C -> C
  torch::nn::Linear proj{nullptr};    // W_o: C -> C
  torch::Tensor A_bar;                // [d, d], fixed buffer
  torch::Tensor B_bar;                // [d], fixed buffer

 private:
  torch::Tensor inputs(const torch::Tensor& x);  // u [B, N]
  torch::Tensor outputs(const torch::Tensor& m, const torch::Tensor& x);
  std::string form_;
};
TORCH_MODULE(LmuMixer);

const OptionsSchema<LmuOptions>& lmu_schema();

}  // namespace blocklab
