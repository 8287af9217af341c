// blocklab bench mixers (analysis/bench_mixers.cpp): token mixers against N next to softmax.
#pragma once

#include <string>
#include <vector>

namespace blocklab {

// `args` after "bench mixers"; returns the exit status.
int bench_mixers_command(const std::vector<std::string>& args);

}  // namespace blocklab
