// blocklab: the CLI. Subcommands register themselves (registry/command.h); main dispatches.
#include "registry/command.h"

int main(int argc, char** argv) { return blocklab::run_cli(argc, argv); }
