#include "blocks/nas/relation_kd.h"

#include <cmath>
#include <stdexcept>
#include <string>

namespace blocklab {

torch::Tensor log_self_relations(const torch::Tensor& x, std::int64_t relation_heads) {
  const auto b = x.size(0), n = x.size(1), width = x.size(2);
  if (relation_heads < 1 || width % relation_heads != 0)
    throw std::invalid_argument("relation heads " + std::to_string(relation_heads) + " do not divide the width " +
                                std::to_string(width));
  const auto d = width / relation_heads;
  const auto heads = x.reshape({b, n, relation_heads, d}).transpose(1, 2);  // [B, A, N, d_r]
  return torch::log_softmax(heads.matmul(heads.transpose(-2, -1)) / std::sqrt(static_cast<double>(d)), -1);
}

torch::Tensor relation_kd_loss(const AttentionRelations& teacher, const AttentionRelations& student,
                               std::int64_t relation_heads) {
  torch::Tensor total;
  for (const auto& [t, s] : {std::pair{teacher.q, student.q}, {teacher.k, student.k}, {teacher.v, student.v}}) {
    const auto log_t = log_self_relations(t.detach(), relation_heads);
    const auto log_s = log_self_relations(s, relation_heads);
    // KL(T || S) per row, averaged over the batch, the relation heads and the rows.
    const auto kl = (log_t.exp() * (log_t - log_s)).sum(-1).mean();
    total = total.defined() ? total + kl : kl;
  }
  return total;
}

}  // namespace blocklab
