// Auto-Correlation with time-delay aggregation, Autoformer's replacement of self-attention.
//
// Paper: "Autoformer: Decomposition Transformers with Auto-Correlation for Long-Term Series
// Forecasting" (Wu et al., 2021, arXiv:2106.13008, §3.2, eqs. 5-6; layers/AutoCorrelation.py;
// shared/blocks catalog C8). Per batch b, head h, channel e, over time (length L):
//   R(tau) = irfft(rfft(q) conj(rfft(k)), n = L)[tau] = sum_t q[(t + tau) mod L] k[t]   (Wiener-Khinchin)
//   m[b, tau] = mean_{h,e} R[b, h, e, tau];   k = max(1, floor(factor ln L)) delays
//   training:  tau_1..tau_k = topk(mean_b m[b, :]) shared by the batch,
//   inference: tau_{b,1..k} = topk(m[b, :]) per sample,
//   w[b, i] = softmax_i m[b, tau_i],   out[b, t] = sum_i w[b, i] v[b, (t + tau_i) mod L]
// The training path rolls v by -tau_i; the inference path gathers from [v; v] at t + tau (the same
// numbers). Keys and values are zero-padded or cut to the queries' length first. Not causal: the
// correlation is circular (the code's mask flag is ignored, and so it is here).
//
// AutoCorrelation (the layer): q, k, v = Linear(D -> D) (with bias), split into heads; the above;
// Linear(D -> D) out. Parameters 4 D^2 + 4 D.
//
// Shape contract: queries [B, L, D], keys and values [B, S, D] -> [B, L, D].
#pragma once

#include <torch/torch.h>

#include <cstdint>

namespace blocklab {

// k = max(1, floor(factor ln L)), at most L.
std::int64_t delay_count(double factor, std::int64_t length);

// q, k [B, H, E, L] -> R [B, H, E, L], the circular cross-correlation over the last axis.
torch::Tensor period_correlation(const torch::Tensor& q, const torch::Tensor& k);

// v, corr [B, H, E, L] -> [B, H, E, L]: the batch-shared delays (training path).
torch::Tensor delay_aggregation_training(const torch::Tensor& v, const torch::Tensor& corr, double factor);
// The same with per-sample delays (inference path).
torch::Tensor delay_aggregation_inference(const torch::Tensor& v, const torch::Tensor& corr, double factor);

class AutoCorrelationImpl : public torch::nn::Module {
 public:
  AutoCorrelationImpl(std::int64_t dim, std::int64_t heads, double factor);
  // Training mode takes the training path, eval mode the inference path.
  torch::Tensor forward(const torch::Tensor& queries, const torch::Tensor& keys, const torch::Tensor& values);

  torch::nn::Linear query{nullptr}, key{nullptr}, value{nullptr}, out{nullptr};

 private:
  std::int64_t heads_;
  double factor_;
};
TORCH_MODULE(AutoCorrelation);

}  // namespace blocklab
