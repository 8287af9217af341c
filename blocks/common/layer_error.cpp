#include "blocks/common/layer_error.h"

#include <c10/util/Exception.h>

#include <cstdio>
#include <cstdlib>
#include <new>

namespace blocklab {

LayerError::LayerError(std::string layer, std::string message, bool out_of_memory)
    : std::runtime_error("in " + layer + ": " + message),
      layer_(std::move(layer)),
      message_(std::move(message)),
      out_of_memory_(out_of_memory) {}

std::string short_error_text(const std::exception& e) {
  if (const auto* layer = dynamic_cast<const LayerError*>(&e)) return layer->message();
  const auto* torch_error = dynamic_cast<const c10::Error*>(&e);
  std::string text = torch_error ? torch_error->what_without_backtrace() : e.what();
  // LibTorch appends context lines (and sometimes a trace) after the first line of the message.
  const auto newline = text.find('\n');
  if (newline != std::string::npos) text.resize(newline);
  if (dynamic_cast<const std::bad_alloc*>(&e)) return "out of memory (std::bad_alloc)";
  // The CPU allocator's "[enforce fail at alloc_cpu.cpp:N] err == 0. DefaultCPUAllocator: can't
  // allocate memory: you tried to allocate N bytes. Error code 12 (...)": keep the request.
  const auto tried = text.find("tried to allocate ");
  if (tried != std::string::npos) {
    const double bytes = std::atof(text.c_str() + tried + 18);
    char size[64];
    std::snprintf(size, sizeof size, "%.0f bytes (%.1f MiB)", bytes, bytes / (1024.0 * 1024.0));
    return std::string("could not allocate ") + size;
  }
  if (text.rfind("[enforce fail at ", 0) == 0 && text.find("] ") != std::string::npos)
    text.erase(0, text.find("] ") + 2);
  return text;
}

bool is_out_of_memory(const std::exception& e) {
  if (const auto* layer = dynamic_cast<const LayerError*>(&e)) return layer->out_of_memory();
  if (dynamic_cast<const c10::OutOfMemoryError*>(&e) || dynamic_cast<const std::bad_alloc*>(&e)) return true;
  const std::string text = e.what();
  for (const char* sign : {"not enough memory", "out of memory", "can't allocate memory", "Cannot allocate memory"})
    if (text.find(sign) != std::string::npos) return true;
  return false;
}

}  // namespace blocklab
