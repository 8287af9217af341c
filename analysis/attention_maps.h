// What blocks attend to: captured attention probabilities, effective mixing matrices of any
// token mixer, attention rollout, per-head distance and entropy, and token maps on the patch
// grid. The numbers behind `blocklab attn`; no drawing here.
#pragma once

#include <torch/torch.h>

#include <map>

#include "blocks/interfaces.h"

namespace blocklab {

// What the probe captured in one layer: its attention record (attention-like mixers) and its
// mixer call (any mixer); either may be absent.
struct LayerCapture {
  const AttentionRecord* record = nullptr;
  const MixerCall* call = nullptr;
};
// The probe's records and calls by layer id (AttentionRecord.layer, MixerCall.context.layer),
// never by position: in a hybrid stack only some layers record attention, and layers differ in
// their head counts. The first capture of a layer wins.
std::map<int, LayerCapture> captures_by_layer(const AttentionProbe& probe);

// The effective mixing matrix of a token mixer at input x [1, N, C]: M[i, j] = || d y_i / d x_j ||_F
// (the Frobenius norm over channels of the Jacobian block of output token i with respect to
// input token j). Works for every mixer, with or without attention weights. Returns [N, N].
torch::Tensor mixing_matrix(TokenMixerImpl& mixer, const torch::Tensor& x, const MixerContext& ctx);

// Rows scaled to sum to 1 (rows of zeros stay zero).
torch::Tensor normalize_rows(const torch::Tensor& m);

// Attention rollout (Abnar and Zuidema 2020): per layer the head-mean attention A_l [N, N] is
// replaced by 0.5 A_l + 0.5 I with rows renormalised, and the layers are multiplied,
// R = Â_L ... Â_1. Takes [L, N, N] (head means) and returns R [N, N].
torch::Tensor attention_rollout(const torch::Tensor& layer_attention);

// Per head, averaged over queries: the mean distance (in patches, over grid tokens only) and
// the entropy (nats) of attention rows. probs [h, N, N]; returns [h] each.
torch::Tensor mean_attention_distance(const torch::Tensor& probs, std::int64_t prefix, std::int64_t grid_h,
                                      std::int64_t grid_w);
torch::Tensor attention_entropy(const torch::Tensor& probs);

// Per-head scores of Olsson et al. 2022 ("In-context Learning and Induction Heads",
// arXiv:2209.11895), measured on a sequence of random tokens repeated with period T (the
// input is [x_0 .. x_{T-1}, x_0 .. x_{T-1}, ...]), probs [h, N, N]; each returns [h]:
//   induction (prefix matching): the mean over queries i >= T of the attention to i - T + 1, the
//     token after the previous occurrence of the current token;
//   previous token: the mean over queries i >= 1 of the attention to i - 1.
// Both are 1 for an ideal head of that kind; a uniform causal head scores the mean of 1/(i+1).
torch::Tensor induction_scores(const torch::Tensor& probs, std::int64_t period);
torch::Tensor previous_token_scores(const torch::Tensor& probs);

// What a token map says about the image: the row of the first prefix (class) token when
// there is one, otherwise the attention each grid token receives averaged over the grid
// queries. m [N, N] (or [h, N, N]); returns the grid part reshaped to [grid_h, grid_w]
// (or [h, grid_h, grid_w]), prefix (class and register) tokens dropped and the result
// renormalised to sum to 1 over the grid.
torch::Tensor attention_to_grid(const torch::Tensor& m, std::int64_t prefix, std::int64_t grid_h,
                                std::int64_t grid_w);

}  // namespace blocklab
