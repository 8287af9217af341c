#include "experiments/training/precision.h"

#include <ATen/autocast_mode.h>
#include <torch/version.h>

#include <stdexcept>

namespace blocklab {

namespace {

// The device-generic autocast API arrived in torch 2.4; before it, CUDA and CPU had their own
// functions (Debian's libtorch 1.13 is the fallback build).
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
bool autocast_enabled(c10::DeviceType t) { return at::autocast::is_autocast_enabled(t); }
at::ScalarType autocast_dtype(c10::DeviceType t) { return at::autocast::get_autocast_dtype(t); }
void set_autocast(c10::DeviceType t, bool enabled, at::ScalarType dtype) {
  at::autocast::set_autocast_enabled(t, enabled);
  at::autocast::set_autocast_dtype(t, dtype);
}
#else
bool autocast_enabled(c10::DeviceType t) {
  return t == c10::DeviceType::CUDA ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled();
}
at::ScalarType autocast_dtype(c10::DeviceType t) {
  return t == c10::DeviceType::CUDA ? at::autocast::get_autocast_gpu_dtype() : at::autocast::get_autocast_cpu_dtype();
}
void set_autocast(c10::DeviceType t, bool enabled, at::ScalarType dtype) {
  if (t == c10::DeviceType::CUDA) {
    at::autocast::set_enabled(enabled);
    at::autocast::set_autocast_gpu_dtype(dtype);
  } else {
    at::autocast::set_cpu_enabled(enabled);
    at::autocast::set_autocast_cpu_dtype(dtype);
  }
}
#endif

}  // namespace

const char* precision_name(Precision p) { return p == Precision::bf16 ? "bf16" : "fp32"; }

Precision parse_precision(const std::string& text) {
  if (text == "fp32") return Precision::fp32;
  if (text == "bf16") return Precision::bf16;
  throw std::invalid_argument("precision '" + text + "' is neither fp32 nor bf16");
}

void add_precision_key(Schema& trainer) {
  trainer.add_choice("precision", "fp32", {"fp32", "bf16"},
                     "fp32, or bf16: forward and loss under bfloat16 autocast (weights, gradients and optimizer "
                     "state stay float32)");
}

Precision read_precision(const ParamReader& trainer) { return parse_precision(trainer.get_string("precision")); }

AutocastScope::AutocastScope(const torch::Device& device, Precision precision) {
  if (precision == Precision::fp32) return;
  if (!device.is_cuda() && !device.is_cpu())
    throw std::invalid_argument(std::string("bf16 autocast runs on cpu or cuda, not ") + device.str());
  type_ = device.type();
  was_enabled_ = autocast_enabled(type_);
  previous_dtype_ = autocast_dtype(type_);
  set_autocast(type_, true, at::kBFloat16);
  at::autocast::increment_nesting();
  active_ = true;
}

AutocastScope::~AutocastScope() {
  if (!active_) return;
  // The cache holds the bf16 copies of the weights made inside the outermost scope; they are
  // stale once an optimizer step changes the weights.
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  set_autocast(type_, was_enabled_, previous_dtype_);
}

}  // namespace blocklab
