// Block-diagonal and Monarch matrices (structured linear layers), used by Monarch Mixer.
//
// Paper: "Monarch Mixer: A Simple Sub-Quadratic GEMM-Based Architecture", Fu et al., 2023,
// arXiv:2310.12109, Section 3 (M = P L P^T R P with block-diagonal L and R); "Monarch:
// Expressive Structured Matrices for Efficient and Accurate Training", Dao et al., 2022,
// arXiv:2204.00595, Definition 3.1. Official code HazyResearch/m2 (bert/src/mm/blockdiag_linear.py,
// blockdiag_butterfly_multiply.py, reference version 3) and HazyResearch/fly (MonarchLinear).
//
// BlockdiagLinear(in, out, nb): weight [nb, out/nb, in/nb]; y = concat_i W_i x_i (+ b): the
//   input split into nb chunks, one dense block each. Sizes not divisible by nb are padded
//   (input with zeros, output truncated), as the code's in/out_features_extended.
// MonarchLinear(in, out, nb): two block-diagonal factors with a stride permutation after each
//   (k = l = nb blocks; W1 [k, q, p], k p = in; W2 [l, s, r], l r = k q; out = l s):
//     o1 = BD(W1) x;  P1: view o1 as [r, l], transpose to [l, r];  o2 = BD(W2) P1 o1;
//     P2: view o2 as [l, s], transpose to [s, l].
//   q = in/nb when in <= out (then W2 [nb, out/nb, in/nb]) else out/nb (fly's shapes). With
//   n = m^2 and nb = m it is the paper's square Monarch matrix (2 n^1.5 parameters). With
//   identity blocks the two permutations cancel: M = I.
// Both initialise each block as a Linear of its fan-in (uniform +-1/sqrt(in block)), i.e.
//   the code's set_weights_from_dense_init of kaiming_uniform(a = sqrt(5)) rescaled by sqrt(nb),
//   and the bias as torch.nn.Linear's.
// dense() materialises the matrix [out, in] from block_diag and permutation matrices (not from
// forward), the tests' reference.
//
// Shape contract: x [..., in] -> [..., out].
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>

namespace blocklab {

class BlockdiagLinearImpl : public torch::nn::Module {
 public:
  BlockdiagLinearImpl(std::int64_t in, std::int64_t out, std::int64_t nblocks, bool bias = true);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor dense() const;  // [out, in], without the bias

  torch::Tensor weight;  // [nb, out_block, in_block]
  torch::Tensor bias;    // [out] or undefined

 private:
  std::int64_t in_, out_;
};
TORCH_MODULE(BlockdiagLinear);

class MonarchLinearImpl : public torch::nn::Module {
 public:
  MonarchLinearImpl(std::int64_t in, std::int64_t out, std::int64_t nblocks, bool bias = true);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor dense() const;  // [out, in], without the bias

  torch::Tensor weight1;  // [k, q, p]: the right factor R (applied first)
  torch::Tensor weight2;  // [l, s, r]: the left factor L
  torch::Tensor bias;     // [out] or undefined

 private:
  std::int64_t in_, out_;
};
TORCH_MODULE(MonarchLinear);

// A linear layer in -> out by kind: dense (torch::nn::Linear), blockdiag or monarch (nblocks).
torch::nn::AnyModule structured_linear(const std::string& kind, std::int64_t in, std::int64_t out, std::int64_t nblocks,
                                       bool bias);

// x [..., in] padded with zeros to `width` (x itself when already that wide).
torch::Tensor pad_features(const torch::Tensor& x, std::int64_t width);
// The dense block-diagonal matrix of blocks [nb, rows, cols]: [nb rows, nb cols].
torch::Tensor block_diagonal(const torch::Tensor& blocks);
// The stride permutation as a matrix [a b, a b]: (P x) = x viewed as [a, b], transposed, flattened.
torch::Tensor stride_permutation(std::int64_t a, std::int64_t b, const torch::TensorOptions& options);

}  // namespace blocklab
