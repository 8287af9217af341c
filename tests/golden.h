// Golden files: tests/golden/<name>.txt hold the exact text a user sees. Run the tests with
// BLOCKLAB_UPDATE_GOLDEN=1 to rewrite them after an intended change (then review the diff).
#pragma once

#include <string>

namespace blocklab::testing {

// Compares `actual` with tests/golden/<name>.txt (or rewrites it); returns "" when equal,
// otherwise a readable expected/actual message.
std::string golden_mismatch(const std::string& name, const std::string& actual);

// The text of the ConfigError thrown by `f`, or "<no error>".
template <class F>
std::string error_text(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "<no error>";
}

}  // namespace blocklab::testing
