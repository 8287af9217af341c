// Mixed precision for training: `trainer.precision: fp32 | bf16` (default fp32).
//
// bf16 runs the forward pass and the loss under LibTorch's autocast (the C++ side of Python's
// torch.autocast(device_type, dtype=torch.bfloat16)): matrix products, convolutions and
// scaled_dot_product_attention run in bfloat16 (on CUDA: tensor cores, SDPA's flash kernel),
// reductions, softmax and norms stay in float32, and the weights, gradients and optimizer state
// stay float32. bfloat16 has float32's exponent range, so no loss scaling is needed (unlike fp16).
// The backward pass runs outside the scope, as PyTorch recommends: autograd replays each op in
// the dtype its forward used.
//
// On CPU, autocast to bfloat16 works too (its own op lists); whether it is faster depends on the
// processor (AVX-512 BF16 / AMX); fp32 stays the default.
#pragma once

#include <torch/torch.h>

#include <string>

#include "registry/schema.h"

namespace blocklab {

enum class Precision { fp32, bf16 };

// "fp32" or "bf16".
const char* precision_name(Precision p);
// "fp32" -> fp32, "bf16" -> bf16; anything else throws std::invalid_argument naming the choices.
Precision parse_precision(const std::string& text);

// Adds `precision` (a choice: fp32, bf16; default fp32) to a `trainer` schema.
void add_precision_key(Schema& trainer);
// trainer.precision from a validated `trainer` section.
Precision read_precision(const ParamReader& trainer);

// RAII: while alive, autocast to bfloat16 is on for the device's type (CUDA or CPU) when
// `precision` is bf16; for fp32 it does nothing. Restores the previous autocast state (enabled
// flag and dtype) on destruction, and clears autocast's cache of cast weights when the outermost
// scope closes (as torch.autocast's __exit__ does), so scopes nest. Not copyable or movable.
class AutocastScope {
 public:
  AutocastScope(const torch::Device& device, Precision precision);
  ~AutocastScope();
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

  bool active() const { return active_; }

 private:
  bool active_ = false;
  c10::DeviceType type_ = c10::DeviceType::CPU;
  bool was_enabled_ = false;
  at::ScalarType previous_dtype_ = at::kFloat;
};

}  // namespace blocklab
