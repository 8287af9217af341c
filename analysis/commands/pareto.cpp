// blocklab pareto <search-dir> <retrain sweeps or runs...>: the report of an architecture search.
//
// Joins the subnets `blocklab search` chose for retraining (<search-dir>/retrain.jsonl and
// conf/model/) with their from-scratch runs, and writes <out>/tables/<name>.md (the commands
// above the table: every retrained subnet with what the search measured and its accuracy from
// scratch, which front subnets dominate the reference, Kendall's tau between inherited and
// from-scratch accuracy) and <out>/plots/<name>_latency / _parameters.{png,svg}
// (analysis/pareto_report.h).
#include <iostream>

#include "analysis/pareto_report.h"
#include "analysis/run_records.h"
#include "experiments/run_files.h"
#include "registry/cli_options.h"
#include "registry/command.h"
#include "registry/registry.h"

namespace blocklab {
namespace {

int pareto_command(const std::vector<std::string>& args) {
  po::options_description opts("Options");
  opts.add_options()("help,h", "show this help")("metric", po::value<std::string>(),
                                                 "the from-scratch metric (default test/acc)")(
      "out", po::value<std::string>(), "write tables/<name>.md and plots/<name>_*.{png,svg} under this directory")(
      "name", po::value<std::string>(), "file name of the table and plots (default pareto)")(
      "commands", po::value<std::string>(), "the commands that made the results, printed above the table");
  const auto cl = parse_command_line("pareto", args, opts);
  if (cl.vars.count("help")) {
    std::cout << command_help(
        "pareto", "<search-dir> <sweep-dirs or run-dirs...>",
        "The report of an architecture search: the subnets blocklab search chose for retraining, joined with "
        "their runs from scratch, as a Pareto table with Kendall's tau between inherited and from-scratch "
        "accuracy, and plots.",
        opts,
        "Example:\n  blocklab pareto results/searches/fmnist_supernet/<id> results/sweeps/<front> results/sweeps/<tau> "
        "--out results --name fmnist_nas\n");
    return 0;
  }
  if (cl.positional.size() < 2)
    throw UsageError(
        "blocklab pareto: give the search directory and the retraining sweeps (or runs)\n"
        "  see: blocklab pareto --help");
  const std::string metric = cl.vars.count("metric") ? string_option(cl, "metric") : "test/acc";
  auto subnets = load_retrained(cl.positional[0]);
  const std::vector<std::string> paths(cl.positional.begin() + 1, cl.positional.end());
  const std::int64_t unmatched = assign_runs(subnets, load_run_records(paths), metric);
  if (unmatched > 0) std::cerr << "pareto: " << unmatched << " runs ran none of the search's subnets (ignored)\n";
  const std::string commands = cl.vars.count("commands") ? string_option(cl, "commands") + "\n" : "";
  const std::string md = pareto_markdown(subnets, metric, commands);
  std::cout << md;
  if (cl.vars.count("out")) {
    const std::string out = string_option(cl, "out");
    const std::string name =
        cl.vars.count("name") ? checked_file_name("pareto", "--name", string_option(cl, "name")) : "pareto";
    write_file_atomic(output_path_inside("pareto", out, "tables/" + name + ".md"), md);
    render_pareto_plots(subnets, metric, output_path_inside("pareto", out, "plots/" + name));
  }
  return 0;
}

const bool BLOCKLAB_UNIQUE(registered_) = CommandRegistry::instance().add(
    {"pareto", "the report of an architecture search: Pareto table, Kendall tau, plots", pareto_command, 63});

}  // namespace
}  // namespace blocklab
