// blocklab status <sweep dir | sweep id>: a sweep's progress from its ledger.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>

#include "experiments/json_io.h"
#include "experiments/run_files.h"
#include "experiments/sweep.h"
#include "registry/cli_options.h"
#include "registry/command.h"

namespace blocklab {
namespace {

// The last training line of a running job ("step 120/540"), from its run's metrics.jsonl.
std::string running_position(const SweepDirectory& sweep, const SweepJob& job) {
  const std::string record = job_dir(sweep, job) + "/run_dir.txt";
  if (!file_exists(record)) return "";
  std::string run_dir = read_file(record);
  while (!run_dir.empty() && run_dir.back() == '\n') run_dir.pop_back();
  std::ifstream in(run_dir + "/metrics.jsonl");
  std::string position;
  Json n;
  for (std::string line; std::getline(in, line);)  // training lines carry "loss", "step" and "epoch"
    if (try_parse_json(line, n) && n.is_object() && n.contains("loss") && n.contains("step") && n.contains("epoch"))
      position = "step " + json_text(n["step"]) + ", epoch " + json_text(n["epoch"]);
  return position.empty() ? "started" : position;
}

int status_command(const std::vector<std::string>& args) {
  po::options_description opts("Options");
  opts.add_options()("help,h", "show this help")("all,a", "list every job (default: the unfinished ones)");
  const auto cl = parse_command_line("status", args, opts);
  if (cl.vars.count("help")) {
    std::cout << command_help("status", "<sweep dir | sweep id>",
                              "Shows a sweep's progress from its ledger: how many jobs are done, running, pending, "
                              "failed (with the reason and the tail of the log) or diverged.",
                              opts);
    return 0;
  }
  if (cl.positional.size() != 1) throw UsageError("blocklab status: give one sweep directory or id");
  const SweepDirectory sweep = read_sweep_directory(cl.positional[0]);
  const bool all = cl.vars.count("all") > 0;
  std::map<std::string, int> counts;
  std::ostringstream lines;
  for (const auto& job : sweep.jobs) {
    const JobState st = read_job_state(sweep, job);
    ++counts[st.state];
    if (!all && st.state == "done") continue;
    char head[64];
    std::snprintf(head, sizeof head, "%4d  %s  %-8s ", job.index, job.id.c_str(), st.state.c_str());
    lines << head << params_text(job);
    if (st.state == "running") {
      if (claim_state(sweep, job) == "live")
        lines << "  (" << running_position(sweep, job) << ", " << st.host << ")";
      else
        lines << "  (its worker is gone: the next `blocklab sweep` or `blocklab job` call continues it)";
    }
    if (st.attempts > 1) lines << "  [attempt " << st.attempts << "]";
    lines << "\n";
    if (st.state == "failed" || st.state == "diverged") {
      lines << "        " << st.reason << "\n";
      if (st.state == "failed" && !st.log_tail.empty()) {
        std::istringstream tail(st.log_tail);
        std::string l;
        while (std::getline(tail, l)) lines << "        | " << l << "\n";
      }
    }
  }
  std::cout << "sweep " << sweep.id << " (" << sweep.experiment;
  for (const auto& o : sweep.override_texts) std::cout << " " << o;
  std::cout << ")\n" << sweep.dir << "\n" << sweep.jobs.size() << " jobs:";
  for (const char* s : {"done", "running", "pending", "failed", "diverged"})
    if (counts[s]) std::cout << " " << counts[s] << " " << s;
  std::cout << "\n" << lines.str();
  return counts["failed"] ? 1 : 0;
}

const bool BLOCKLAB_UNIQUE(registered_) = CommandRegistry::instance().add(
    {"status", "progress of a sweep from its ledger (done, running, failed with reasons)", status_command, 46});

}  // namespace
}  // namespace blocklab
