#include "analysis/attention_maps.h"

namespace blocklab {

torch::Tensor mixing_matrix(TokenMixerImpl& mixer, const torch::Tensor& x, const MixerContext& ctx) {
  TORCH_CHECK(x.dim() == 3 && x.size(0) == 1, "mixing_matrix: expected x [1, N, C], got ", x.sizes());
  const std::int64_t n = x.size(1), c = x.size(2);
  MixerContext quiet = ctx;
  quiet.probe = nullptr;
  torch::Tensor m = torch::zeros({n, n}, torch::kFloat64);
  // One backward pass per output token: a batch of C copies of x, copy k selecting output
  // channel k of token i, gives every row d y_{i,k} / d x of the Jacobian at once.
  const torch::Tensor eye = torch::eye(c, x.options());
  for (std::int64_t i = 0; i < n; ++i) {
    torch::Tensor xs = x.detach().expand({c, n, c}).clone().set_requires_grad(true);
    torch::Tensor y = mixer.forward(xs, quiet);  // [C, N, C]
    torch::Tensor picked = (y.select(1, i) * eye).sum();
    torch::Tensor grad = torch::autograd::grad({picked}, {xs})[0];  // [C(k), N(j), C(d)]
    m[i] = grad.to(torch::kFloat64).pow(2).sum(std::vector<std::int64_t>{0, 2}).sqrt();
  }
  return m;
}

torch::Tensor normalize_rows(const torch::Tensor& m) {
  const torch::Tensor sums = m.sum(-1, /*keepdim=*/true);
  return torch::where(sums > 0, m / sums.clamp_min(1e-300), torch::zeros_like(m));
}

torch::Tensor attention_rollout(const torch::Tensor& layer_attention) {
  TORCH_CHECK(layer_attention.dim() == 3 && layer_attention.size(1) == layer_attention.size(2),
              "attention_rollout: expected [L, N, N], got ", layer_attention.sizes());
  const std::int64_t n = layer_attention.size(1);
  const torch::Tensor eye = torch::eye(n, layer_attention.options());
  torch::Tensor rollout = eye;
  for (std::int64_t l = 0; l < layer_attention.size(0); ++l)
    rollout = torch::matmul(normalize_rows(0.5 * layer_attention[l] + 0.5 * eye), rollout);
  return rollout;
}

torch::Tensor mean_attention_distance(const torch::Tensor& probs, std::int64_t prefix, std::int64_t grid_h,
                                      std::int64_t grid_w) {
  const std::int64_t g = grid_h * grid_w;
  TORCH_CHECK(probs.dim() == 3 && probs.size(-1) == prefix + g, "mean_attention_distance: expected [h, ",
              prefix + g, ", ", prefix + g, "], got ", probs.sizes());
  const torch::Tensor idx = torch::arange(g, probs.options().dtype(torch::kFloat64));
  const torch::Tensor row = torch::floor(idx / static_cast<double>(grid_w)), col = idx - row * grid_w;
  const torch::Tensor dist = (row.unsqueeze(1) - row.unsqueeze(0)).pow(2).add((col.unsqueeze(1) - col.unsqueeze(0)).pow(2)).sqrt();
  const torch::Tensor grid = normalize_rows(probs.to(torch::kFloat64).slice(1, prefix).slice(2, prefix));  // [h, g, g]
  return (grid * dist).sum(-1).mean(-1);
}

torch::Tensor attention_entropy(const torch::Tensor& probs) {
  const torch::Tensor p = probs.to(torch::kFloat64);
  return -(p * torch::log(p.clamp_min(1e-300))).sum(-1).mean(-1);
}

torch::Tensor attention_to_grid(const torch::Tensor& m, std::int64_t prefix, std::int64_t grid_h,
                                std::int64_t grid_w) {
  TORCH_CHECK(m.size(-1) == prefix + grid_h * grid_w && m.size(-2) == m.size(-1), "attention_to_grid: expected [..., ",
              prefix + grid_h * grid_w, ", ", prefix + grid_h * grid_w, "], got ", m.sizes());
  const torch::Tensor grid_keys = m.narrow(-1, prefix, grid_h * grid_w);
  const torch::Tensor received = prefix > 0 ? grid_keys.select(-2, 0)  // the class token's row
                                            : grid_keys.narrow(-2, prefix, grid_h * grid_w).mean(-2);
  const torch::Tensor total = received.sum(-1, true).clamp_min(1e-300);
  auto shape = received.sizes().vec();
  shape.back() = grid_h;
  shape.push_back(grid_w);
  return (received / total).reshape(shape);
}

std::map<int, LayerCapture> captures_by_layer(const AttentionProbe& probe) {
  std::map<int, LayerCapture> layers;
  for (const auto& r : probe.records())
    if (!layers[r.layer].record) layers[r.layer].record = &r;
  for (const auto& c : probe.mixer_calls())
    if (!layers[c.context.layer].call) layers[c.context.layer].call = &c;
  return layers;
}

// The mean over queries i >= from of probs[:, i, i - offset]: one diagonal of every head's map.
static torch::Tensor mean_of_diagonal(const torch::Tensor& probs, std::int64_t offset, std::int64_t from) {
  TORCH_CHECK(probs.dim() == 3 && probs.size(1) == probs.size(2), "head scores: probs must be [h, N, N]");
  const std::int64_t n = probs.size(1);
  TORCH_CHECK(offset >= 0 && from >= offset && from < n, "head scores: need queries from ", from, " in ", n,
              " tokens");
  // diagonal(-offset) holds probs[:, i, i - offset] for i = offset .. n-1.
  return probs.to(torch::kFloat64).diagonal(-offset, 1, 2).slice(1, from - offset).mean(1);
}

torch::Tensor induction_scores(const torch::Tensor& probs, std::int64_t period) {
  TORCH_CHECK(period >= 2, "induction scores: the period must be at least 2, got ", period);
  return mean_of_diagonal(probs, period - 1, period);
}

torch::Tensor previous_token_scores(const torch::Tensor& probs) { return mean_of_diagonal(probs, 1, 1); }

}  // namespace blocklab
