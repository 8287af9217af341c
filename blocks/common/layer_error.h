// Errors with the layer they came from. A shape error or an out-of-memory deep inside a block
// reaches the user as "in model.blocks.2 (attention/softmax): <what failed>", not as the last
// frame of a C++ stack trace.
#pragma once

#include <stdexcept>
#include <string>
#include <utility>

namespace blocklab {

class LayerError : public std::runtime_error {
 public:
  LayerError(std::string layer, std::string message, bool out_of_memory);
  const std::string& layer() const { return layer_; }
  const std::string& message() const { return message_; }  // the inner error, without a trace
  bool out_of_memory() const { return out_of_memory_; }

 private:
  std::string layer_, message_;
  bool out_of_memory_;
};

// The message of an exception without LibTorch's C++ stack trace; for anything else what().
std::string short_error_text(const std::exception& e);
// Whether an exception says that memory ran out (CPU or GPU allocator, std::bad_alloc).
bool is_out_of_memory(const std::exception& e);

// Runs f(); an exception from it (other than a LayerError of an inner layer, which already
// names the innermost place) becomes a LayerError naming the layer. `name()` builds the
// layer's name only when something failed.
template <class Name, class F>
auto within_layer(Name&& name, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const LayerError&) {
    throw;
  } catch (const std::exception& e) {
    throw LayerError(name(), short_error_text(e), is_out_of_memory(e));
  }
}

}  // namespace blocklab
