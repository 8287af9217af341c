#include "experiments/failure.h"

#include <cstdlib>
#include <iostream>

#include "blocks/common/layer_error.h"
#include "experiments/run_files.h"
#include "experiments/run_setup.h"
#include "registry/command.h"

namespace blocklab {

bool trace_requested() {
  const char* v = std::getenv("BLOCKLAB_TRACE");
  return v && *v && std::string(v) != "0";
}

std::string describe_failure(const std::exception& e, const std::string& phase) {
  if (dynamic_cast<const FileWriteError*>(&e)) return e.what();  // names the file and the fix
  const auto* layer = dynamic_cast<const LayerError*>(&e);
  const bool oom = is_out_of_memory(e);
  std::string where = layer ? " in " + layer->layer() : "";
  if (!phase.empty()) where += " during " + phase;
  if (oom)
    return "out of memory" + where + ": " + short_error_text(e) +
           "; try a smaller trainer.batch_size or a smaller model (model.dim, model.depth)";
  const bool from_torch = layer || dynamic_cast<const c10::Error*>(&e);
  // A data-parallel rank whose peer is gone (killed, crashed): Gloo's transport reports it.
  const std::string text = e.what();
  if (text.find("gloo/transport") != std::string::npos || (from_torch && text.find("NCCL") != std::string::npos))
    return "the data-parallel group broke" + where + ": another rank stopped (" + short_error_text(e) +
           "); the last checkpoint is kept: continue with --resume";
  if (!from_torch) return where.empty() ? e.what() : std::string(e.what()) + " (" + where.substr(1) + ")";
  return "LibTorch error" + where + ": " + short_error_text(e) +
         "; check the block's options (blocklab describe <block>), or run with BLOCKLAB_TRACE=1 for the full trace";
}

int fail_run(RunFiles& files, const std::exception& e, const std::string& phase, std::int64_t step) {
  const std::string line = describe_failure(e, phase);
  try {
    files.finish(JsonObject()
                     .set("status", "failed")
                     .set("error", line)
                     .set("step", step)
                     .set("run_id", files.id));
  } catch (const std::exception& write_error) {
    std::cerr << "warning: the failure could not be recorded: " << write_error.what() << "\n";
  }
  try {
    files.log_line("error: " + line);
  } catch (const std::exception&) {
    // The log may sit on the same full disk; the terminal still gets the line.
  }
  std::cerr << "error: " << line << "\n";
  if (trace_requested()) std::cerr << "raw error (BLOCKLAB_TRACE):\n" << e.what() << "\n";
  return 1;
}

namespace {
// Commands other than run (attn, bench, block) show LibTorch errors the same way.
[[maybe_unused]] const bool formatter_installed = [] {
  set_error_formatter([](const std::exception& e) {
    std::string line = describe_failure(e, "");
    if (trace_requested()) line += std::string("\nraw error (BLOCKLAB_TRACE):\n") + e.what();
    return line;
  });
  return true;
}();
}  // namespace

}  // namespace blocklab
