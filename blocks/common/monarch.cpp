#include "blocks/common/monarch.h"

#include <cmath>

namespace blocklab {

namespace {

std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return (a + b - 1) / b; }

// Blocks of a Linear's init: uniform +-1/sqrt(fan_in) with fan_in the block's input width.
torch::Tensor block_init(std::int64_t nb, std::int64_t rows, std::int64_t cols) {
  const double bound = 1.0 / std::sqrt(static_cast<double>(cols));
  return torch::empty({nb, rows, cols}).uniform_(-bound, bound);
}

torch::Tensor bias_init(std::int64_t out, std::int64_t fan_in) {
  const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
  return torch::empty({out}).uniform_(-bound, bound);
}

void check_sizes(const char* what, std::int64_t in, std::int64_t out, std::int64_t nb) {
  TORCH_CHECK(in >= 1 && out >= 1 && nb >= 1 && nb <= std::min(in, out), what, ": ", nb,
              " blocks need in and out >= blocks, got in ", in, ", out ", out);
}

// x [..., width] -> the first n features with the bias added.
torch::Tensor finish(const torch::Tensor& y, std::int64_t n, const torch::Tensor& bias) {
  auto out = y.size(-1) == n ? y : y.narrow(-1, 0, n);
  return bias.defined() ? out + bias : out;
}

}  // namespace

torch::nn::AnyModule structured_linear(const std::string& kind, std::int64_t in, std::int64_t out, std::int64_t nblocks,
                                       bool bias) {
  if (kind == "monarch") return torch::nn::AnyModule(MonarchLinear(in, out, nblocks, bias));
  if (kind == "blockdiag") return torch::nn::AnyModule(BlockdiagLinear(in, out, nblocks, bias));
  TORCH_CHECK(kind == "dense", "structured_linear: unknown kind '", kind, "' (dense | blockdiag | monarch)");
  return torch::nn::AnyModule(torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(bias)));
}

torch::Tensor pad_features(const torch::Tensor& x, std::int64_t width) {
  const auto n = x.size(-1);
  if (n == width) return x;
  auto shape = x.sizes().vec();
  shape.back() = width - n;
  return torch::cat({x, torch::zeros(shape, x.options())}, -1);
}

torch::Tensor block_diagonal(const torch::Tensor& blocks) {
  std::vector<torch::Tensor> list;
  for (std::int64_t i = 0; i < blocks.size(0); ++i) list.push_back(blocks[i]);
  return torch::block_diag(list);
}

torch::Tensor stride_permutation(std::int64_t a, std::int64_t b, const torch::TensorOptions& options) {
  // Entry (i, j) of x viewed as [a, b] (index i b + j) moves to index j a + i.
  const auto source = torch::arange(a * b, torch::kLong).view({a, b}).t().reshape({-1});
  return torch::eye(a * b, options).index_select(0, source);
}

BlockdiagLinearImpl::BlockdiagLinearImpl(std::int64_t in, std::int64_t out, std::int64_t nb, bool with_bias)
    : in_(in), out_(out) {
  check_sizes("BlockdiagLinear", in, out, nb);
  weight = register_parameter("weight", block_init(nb, ceil_div(out, nb), ceil_div(in, nb)));
  if (with_bias) bias = register_parameter("bias", bias_init(out, in));
}

torch::Tensor BlockdiagLinearImpl::forward(const torch::Tensor& x) {
  const auto nb = weight.size(0), in_block = weight.size(2);
  const auto chunks = pad_features(x, nb * in_block).unflatten(-1, {nb, in_block});  // [..., nb, p]
  const auto y = torch::einsum("...kp,kqp->...kq", {chunks, weight}).flatten(-2);
  return finish(y, out_, bias);
}

torch::Tensor BlockdiagLinearImpl::dense() const { return block_diagonal(weight).narrow(0, 0, out_).narrow(1, 0, in_); }

MonarchLinearImpl::MonarchLinearImpl(std::int64_t in, std::int64_t out, std::int64_t nb, bool with_bias)
    : in_(in), out_(out) {
  check_sizes("MonarchLinear", in, out, nb);
  const auto in_block = ceil_div(in, nb), out_block = ceil_div(out, nb);
  const auto q = in_block < out_block ? in_block : out_block;  // fly: the smaller of the two
  weight1 = register_parameter("weight1", block_init(nb, q, in_block));
  weight2 = register_parameter("weight2", block_init(nb, out_block, q));
  if (with_bias) bias = register_parameter("bias", bias_init(out, in));
}

torch::Tensor MonarchLinearImpl::forward(const torch::Tensor& x) {
  const auto k = weight1.size(0), p = weight1.size(2);
  const auto l = weight2.size(0), r = weight2.size(2);
  const auto chunks = pad_features(x, k * p).unflatten(-1, {k, p});
  const auto o1 = torch::einsum("...kp,kqp->...kq", {chunks, weight1}).flatten(-2);  // BD(W1) x
  const auto permuted = o1.unflatten(-1, {r, l}).transpose(-1, -2);                  // P1: [r, l] -> [l, r]
  const auto o2 = torch::einsum("...lr,lsr->...ls", {permuted, weight2});            // BD(W2)
  return finish(o2.transpose(-1, -2).flatten(-2), out_, bias);                       // P2: [l, s] -> [s, l]
}

torch::Tensor MonarchLinearImpl::dense() const {
  const auto l = weight2.size(0), s = weight2.size(1), r = weight2.size(2);
  const auto o = weight1.options();
  const auto m = stride_permutation(l, s, o)
                     .mm(block_diagonal(weight2))  // P2 BD(W2) P1 BD(W1)
                     .mm(stride_permutation(r, l, o))
                     .mm(block_diagonal(weight1));
  return m.narrow(0, 0, out_).narrow(1, 0, in_);
}

}  // namespace blocklab
