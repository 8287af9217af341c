// Long convolutions by FFT, shared by the blocks that convolve over the whole sequence: Hyena's
// implicit filters, LMU's parallel (convolution) form, the relative-position Toeplitz products
// of kernelized attention.
//
// The FFT computes a circular convolution; padding both operands to a size that no entry of the
// wanted window aliases in (n + m - 1 for the whole linear convolution of n and m taps, less for
// a window of it) makes it equal to the linear one, and the power of two at or above that keeps
// pocketfft on its fastest radix.
#pragma once

#include <torch/torch.h>

namespace blocklab {

// The smallest power of two >= n (n >= 1).
std::int64_t power_of_two_at_least(std::int64_t n);

// The linear convolution y_t = sum_s k_s u_{t-s} along dimension `dim` of u (n taps) and of k
// (m taps), read at t = from .. from + length - 1 (the full result has n + m - 1 entries). k
// broadcasts against u in every other dimension. Differentiable in u and k.
torch::Tensor fft_conv(const torch::Tensor& u, const torch::Tensor& k, std::int64_t dim, std::int64_t from,
                       std::int64_t length);

// The causal long convolution y_t = sum_{s <= t} k_s u_{t-s}, t = 0 .. n - 1, by FFT.
torch::Tensor causal_fft_conv(const torch::Tensor& u, const torch::Tensor& k, std::int64_t dim);

// The same by direct summation over the taps, O(n m): the tests' reference, and cheaper than
// the FFT for short kernels.
torch::Tensor causal_direct_conv(const torch::Tensor& u, const torch::Tensor& k, std::int64_t dim);

}  // namespace blocklab
