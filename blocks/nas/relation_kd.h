// Self-attention relation distillation (MiniLMv2, Wang et al. 2021, "MiniLMv2: Multi-Head
// Self-Attention Relation Distillation for Compressing Pretrained Transformers", arXiv:2012.15828,
// §3.1), AutoDistil's task-agnostic objective (Xu et al., "AutoDistil: Few-shot Task-agnostic
// Neural Architecture Search for Distilling Large Language Models", NeurIPS 2022; catalog
// 003/004 C41).
//
// The queries (keys, values) of one layer, heads concatenated to [B, N, W], are split again into
// A relation heads of width d_r = W / A, so teacher and student with different widths and head
// counts give relations of the same shape; for X in {Q, K, V} and relation head a:
//   R_X,a = softmax(X_a X_a^T / sqrt(d_r))                     [B, A, N, N]
//   L = sum_{X in Q, K, V} 1 / (B A N) sum_{b, a, i} KL(R^T_X,a[b, i] || R^S_X,a[b, i])
// L is 0 exactly when the student's relations are the teacher's.
#pragma once

#include <torch/torch.h>

#include <cstdint>

namespace blocklab {

// One attention layer's queries, keys and values, heads concatenated: [B, N, W] each.
struct AttentionRelations {
  torch::Tensor q, k, v;
};

// log R_X: log softmax(X_a X_a^T / sqrt(d_r)) per relation head, [B, A, N, N]; throws
// std::invalid_argument when A does not divide X's width.
torch::Tensor log_self_relations(const torch::Tensor& x, std::int64_t relation_heads);

// L above (a scalar); the teacher's side carries no gradient.
torch::Tensor relation_kd_loss(const AttentionRelations& teacher, const AttentionRelations& student,
                               std::int64_t relation_heads);

}  // namespace blocklab
