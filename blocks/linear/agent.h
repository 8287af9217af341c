// linear/agent: Agent Attention, softmax attention through n pooled agent tokens.
//
// Paper: "Agent Attention: On the Integration of Softmax and Linear Attention", Han et al.,
// 2023, arXiv:2312.08874 (agent attention, its agent bias and diversity restoration); official
// code LeapLabTHU/Agent-Attention, agent_transformer/models/agent_deit.py (AgentAttention);
// catalog_002 B-52. Per head, d = C / heads, n agents (a square):
//   q, k, v     = x W_qkv (+ b)
//   agents      A = AdaptiveAvgPool2d(sqrt(n) x sqrt(n))(q of the grid tokens as [B, C, H, W])
//               -> [B, n, C] -> heads [B, h, n, d]
//   aggregation V_A = softmax(A K^T / sqrt(d) + B1) V    [B, h, n, d]  (agents <- tokens)
//   broadcast   O   = softmax(Q A^T / sqrt(d) + B2) V_A  [B, h, N, d]  (tokens <- agents)
//   diversity   O_grid += DWConv3x3(V_grid)  (depthwise over the C channels, with bias)
//   out         = O W_o (+ b), then dropout (proj_drop)
// i.e. the generalised linear attention O = softmax(Q A^T) softmax(A K^T) V (the paper's
// equivalence). Its effective N x N map, the product of the two row-stochastic maps, is what
// the probe records (rows sum to 1); the DWConv term is a local convolution, not in that map.
//
// Agent biases (trunc-normal std 0.02), for a grid H x W (M = H W tokens):
//   B1 [h, n, N] = [ac | interp(an) + ah + aw]      an [h, n, 7, 7], ah [h, n, G, 1], aw [h, n, 1, G]
//   B2 [h, N, n] = [ca ; (interp(na) + ha + wa)^T]  na [h, n, 7, 7], ha [h, G, 1, n], wa [h, 1, G, n]
// with ac [h, n, 1] the bias of the class key and ca [h, 1, n] that of the class query. interp
// is bilinear (align_corners false, as F.interpolate in the official code). The official code
// stores ah/aw/ha/wa at the grid size (window = img_size / patch); here they are stored at
// G = bias_grid and resized bilinearly to the actual H and W, so one mixer serves any grid
// (at H = W = G the resize is the identity).
//
// Layout decisions (the official code has exactly one class token and a square grid):
//   - prefix tokens (class/register tokens) are not pooled into agents and get no DWConv; every
//     prefix token's key column takes ac and every prefix query row takes ca;
//   - the grid may be any H x W, including grids smaller than the agents' sqrt(n) x sqrt(n)
//     (adaptive pooling then repeats cells: a 1 x 1 grid gives n equal agents);
//   - position_bias false drops every bias (plain agent attention + DWConv).
// The biases are position tables: declared without weight decay (the project's rule; the
// official optimiser happens to decay them, as their names do not end in ".bias").
//
// Parameters: (3C^2 + 3C) qkv (+ bias) + (C^2 + C) proj + (9C + C) DWConv
//             + 2 h n 49 (an, na) + 4 h n G (ah, aw, ha, wa) + 2 h n (ac, ca) with position_bias.
// Complexity O(N n d h): linear in N. Not causal (the agents pool every grid cell).
// Shapes: x [B, N, C] -> [B, N, C], N = prefix_tokens + grid_height grid_width; C % heads == 0.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "blocks/attention/parts/output.h"
#include "blocks/attention/parts/projection.h"
#include "blocks/common/options.h"
#include "blocks/common/weight_decay.h"
#include "blocks/interfaces.h"

namespace blocklab {

struct AgentAttentionOptions {
  TORCH_ARG(std::int64_t, heads) = 4;
  TORCH_ARG(std::int64_t, agents) = 49;  // n, a square: the q grid pooled to sqrt(n) x sqrt(n)
  TORCH_ARG(bool, qkv_bias) = true;
  TORCH_ARG(double, proj_drop) = 0.0;
  TORCH_ARG(std::int64_t, bias_grid) = 7;  // G: the grid size ah/aw/ha/wa are stored at
  TORCH_ARG(bool, position_bias) = true;   // the agent biases B1, B2
};

class AgentAttentionImpl : public TokenMixerImpl, public DeclaresNoWeightDecay {
 public:
  static constexpr const char* kKey = "linear/agent";
  // The side of the an, na tables (7 x 7 in the official code, whatever the grid).
  static constexpr std::int64_t kAgentTable = 7;

  explicit AgentAttentionImpl(std::int64_t dim, const AgentAttentionOptions& options = {});

  torch::Tensor forward(const torch::Tensor& x, const MixerContext& ctx) override;
  // Not causal, normalised effective weights to the probe, needs a grid.
  MixerCapabilities capabilities() const override;
  std::vector<std::string> no_weight_decay() const override;
  const AgentAttentionOptions& options() const { return options_; }

  torch::nn::Conv2d dwc{nullptr};  // DWConv 3x3, C -> C, groups C, with bias
  // The agent biases (undefined without position_bias), shapes as in the header comment.
  torch::Tensor an_bias, na_bias, ah_bias, aw_bias, ha_bias, wa_bias, ac_bias, ca_bias;

 private:
  struct Layout {
    std::int64_t prefix, height, width;
    std::int64_t grid() const { return height * width; }
  };
  Layout layout_of(const torch::Tensor& x, const MixerContext& ctx) const;
  // q [B, h, N, d] -> agents A [B, h, n, d] (the grid's queries pooled per channel).
  torch::Tensor pool_agents(const torch::Tensor& q, const Layout& layout) const;
  // (B1 [h, n, N], B2 [h, N, n]) for the layout.
  std::pair<torch::Tensor, torch::Tensor> position_biases(const Layout& layout) const;
  // o [B, h, N, d] with DWConv(V) added to the grid rows.
  torch::Tensor restore_diversity(const torch::Tensor& o, const torch::Tensor& v, const Layout& layout);

  AgentAttentionOptions options_;
  std::int64_t side_;  // sqrt(n)
  double scale_;       // d^-1/2
  QkvProjection projection_;
  OutputProjection output_;
};
TORCH_MODULE(AgentAttention);

const OptionsSchema<AgentAttentionOptions>& agent_attention_schema();

}  // namespace blocklab
