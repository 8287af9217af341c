// When a run fails: one clear line for the user (what failed, in which layer and phase, what
// to try), the failure recorded in summary.json (status "failed", the line, the step) so that
// `blocklab status` and `table` show the reason, and LibTorch's raw message and C++ stack
// trace only on request (BLOCKLAB_TRACE=1).
#pragma once

#include <cstdint>
#include <exception>
#include <string>

namespace blocklab {

class RunFiles;

// True when BLOCKLAB_TRACE is set to anything but "" or "0".
bool trace_requested();

// One line: "out of memory in model.blocks.2 (attention/softmax) during training step 12:
// ...; try a smaller trainer.batch_size or model". `phase` says what the run was doing
// ("training step 12", "evaluation on test"); may be empty.
std::string describe_failure(const std::exception& e, const std::string& phase);

// Records a failed run (summary.json), prints "error: <line>" (and the raw text when traced),
// and returns the exit status 1.
int fail_run(RunFiles& files, const std::exception& e, const std::string& phase, std::int64_t step);

}  // namespace blocklab
