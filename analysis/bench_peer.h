// The Python peers of the bench commands (analysis/bench/*.py): run one with the project's
// Python (BLOCKLAB_PYTHON) and read its result, the last output line that holds a JSON object
// (warnings may come before it).
#pragma once

#include <array>
#include <cstdio>
#include <sstream>
#include <stdexcept>
#include <string>

#include "experiments/json_io.h"

namespace blocklab {

// Runs analysis/bench/<script> with `arguments` (already quoted for the shell); throws when it
// cannot start, fails or prints no JSON object, with its output.
inline Json run_python_peer(const std::string& script, const std::string& arguments) {
  const std::string cmd = std::string("'") + BLOCKLAB_PYTHON + "' '" + BLOCKLAB_SOURCE_DIR + "/analysis/bench/" +
                          script + "' " + arguments + " 2>&1";
  std::string out;
  FILE* pipe = popen(cmd.c_str(), "r");
  if (!pipe) throw std::runtime_error("cannot start the Python peer " + script);
  std::array<char, 4096> buf{};
  while (std::size_t n = fread(buf.data(), 1, buf.size(), pipe)) out.append(buf.data(), n);
  if (pclose(pipe) != 0) throw std::runtime_error("the Python peer " + script + " failed:\n" + out);
  std::istringstream lines(out);
  Json result;
  for (std::string line; std::getline(lines, line);) {
    Json value;
    if (try_parse_json(line, value) && value.is_object()) result = std::move(value);
  }
  if (!result.is_object()) throw std::runtime_error("unexpected output of the Python peer " + script + ":\n" + out);
  return result;
}

}  // namespace blocklab
