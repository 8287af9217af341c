// blocklab bench scan (analysis/bench_scan.cpp): the shared sequence primitives alone (selective
// scan, SSD, causal long convolution), fast form against its reference loop, against N.
#pragma once

#include <string>
#include <vector>

namespace blocklab {

// `args` after "bench scan"; returns the exit status.
int bench_scan_command(const std::vector<std::string>& args);

}  // namespace blocklab
