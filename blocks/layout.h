// MixerContext: the layout of the tokens a token mixer mixes, one type for the forward call and
// for what the probe records (blocks/probe.h keeps it with each mixer call).
//
//   tokens [B, N, C] = prefix tokens (class/register) followed by the body tokens; for images the
//   body is a grid_height x grid_width patch grid in row-major order (0 x 0 for plain sequences).
#pragma once

#include <torch/torch.h>

#include <cstdint>

namespace blocklab {

class AttentionProbe;

struct MixerContext {
  std::int64_t grid_height = 0;    // tokens from an image: patch grid (0 for plain sequences)
  std::int64_t grid_width = 0;
  std::int64_t prefix_tokens = 0;  // class/register tokens before the grid tokens
  // Absolute positions [N] (int64) of the tokens, when they do not start at 0: a recurrent
  // step or a continued sequence. Undefined = 0..N-1.
  torch::Tensor positions;
  // Valid lengths [B] (int64) of right-padded sequences: tokens at or after lengths[b] are
  // padding and must not change the outputs of valid tokens. Undefined = every token is valid.
  torch::Tensor lengths;
  bool causal = false;              // token i may only see tokens j <= i
  AttentionProbe* probe = nullptr;  // records attention maps when capturing
  int layer = -1;                   // index of the enclosing block, for the probe

  bool has_grid() const { return grid_height > 0 && grid_width > 0; }
  // The positions of n tokens: `positions` when given, else 0..n-1 (int64 on `device`).
  torch::Tensor token_positions(std::int64_t n, const torch::Device& device) const {
    return positions.defined() ? positions : torch::arange(n, torch::TensorOptions(torch::kLong).device(device));
  }
  // The same layout without the probe (what a record keeps).
  MixerContext without_probe() const {
    MixerContext c = *this;
    c.probe = nullptr;
    return c;
  }
};

}  // namespace blocklab
