// blocklab: the CLI. Subcommands register themselves (registry/command.h); main dispatches.
#include <malloc.h>

#include <climits>

#include "registry/command.h"

namespace {

// Every CPU tensor comes from glibc's malloc. By default it maps each block above a moving
// threshold afresh (zero-filled page by page, unmapped when freed) and gives the heap's free top
// back to the system, so that the buffers of a training step, freed and allocated again at every
// step, cost page faults in proportion to their size. A fixed threshold at glibc's cap (32 MiB)
// and no trimming keep them in the heap for reuse. Measured (bench mixers, 1 sequence of 65,536
// tokens, 2 threads): linear/elu 361 -> 233 ms, retention/retnet 793 -> 552 ms forward +
// backward; the memory stays with the process until it exits.
void keep_tensor_memory() {
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, INT_MAX);
}

}  // namespace

int main(int argc, char** argv) {
  keep_tensor_memory();
  return blocklab::run_cli(argc, argv);
}
