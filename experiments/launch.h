// `blocklab run <experiment> --nproc N`: starts N ranks of this binary on this machine (each
// with BLOCKLAB_RANK, BLOCKLAB_WORLD_SIZE and a file-store rendezvous, see distributed.h) and
// supervises them like torchrun does: stop signals are passed on to every rank, and when a
// rank dies (kill -9, a crash) the others are stopped at once, so the run ends as a whole and
// continues with --resume from its last checkpoint. The ranks die with the launcher.
#pragma once

#include <string>
#include <vector>

namespace blocklab {

// Runs `blocklab run <run_args...>` as `nproc` ranks; returns the run's exit status: 0 when
// every rank finished, 75 when a stop signal checkpointed them, else the first failure's.
int launch_ranks(int nproc, const std::vector<std::string>& run_args);

}  // namespace blocklab
