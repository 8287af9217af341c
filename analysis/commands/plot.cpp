// blocklab plot <run-dir | sweep-dir | dir of runs>...: training curves from metrics.jsonl,
// one chart per metric; several runs are overlaid, one line per run (or per group of seeds).
#include <iostream>

#include "analysis/curves.h"
#include "analysis/plot.h"
#include "analysis/run_records.h"
#include "registry/cli_options.h"
#include "registry/command.h"
#include "registry/registry.h"

namespace blocklab {
namespace {

const char* kPlotDetails =
    "Charts:\n"
    "  One chart per metric: <dir>/curves_<metric>.png (\"/\" becomes \"_\": curves_test_acc.png), .svg with --svg.\n"
    "  Default metrics: loss, lr, and every evaluation metric (val/acc, test/loss, ...). Training metrics\n"
    "  are drawn against step, evaluation metrics against epoch; --x step or --x epoch puts both on one\n"
    "  axis (training steps on an epoch axis: step / steps per epoch). Loss charts use a log y axis when\n"
    "  the values span a factor of 20 or more.\n"
    "Train and evaluation:\n"
    "  curves_loss_train_val.png draws the training loss (a line, against step) with val/loss and test/loss\n"
    "  (markers on a dashed or dotted line, against the step of their evaluation; --x epoch: against\n"
    "  epoch). Drawn when --metrics is not given and a run logged both; --together loss,NAME asks for it\n"
    "  (curves_<NAME>_train_val.png pairs NAME with <split>/NAME), --together none leaves it out.\n"
    "Runs:\n"
    "  One run: its curves, into <run dir>/plots/. Several runs: one line per run, labelled by the config\n"
    "  values that differ between them (\"trainer.lr=0.001, seed=1\"; the run id when configs are equal;\n"
    "  \"lr=0.001, seed=1\" when full key names make labels long), in the order of those values, into\n"
    "  --out (default for a sweep: <sweep dir>/plots/). --mean-over-seeds draws runs that differ only\n"
    "  in seed (or output_dir, threads, device) as one line, the mean with a ± sample-std band, at the\n"
    "  steps every run of the group logged. A diverged run ends where it diverged and reads \"(diverged)\"\n"
    "  in the legend; a run with no metrics yet, or a sweep job without a run, is left out with a note.\n"
    "  A last line cut off by a kill is ignored; any other unreadable line is an error.\n"
    "Smoothing:\n"
    "  --smooth K draws loss curves as a trailing mean over the last K logged values, over the raw curve\n"
    "  drawn faintly (with --mean-over-seeds: each run is smoothed, then averaged).\n"
    "Examples:\n"
    "  blocklab plot results/runs/vit_fmnist/3f2a9c01b7d4\n"
    "  blocklab plot results/sweeps/5d1e0a2b9c47 --mean-over-seeds --metrics loss,test/acc --smooth 10\n"
    "  blocklab plot results/runs/vit_fmnist --out figures/vit --x epoch --svg\n";

CurveOptions options_from(const CommandLine& cl) {
  CurveOptions o;
  if (cl.vars.count("metrics")) o.metrics = name_list("plot", "--metrics", string_option(cl, "metrics"));
  const std::string x = choice_option(cl, "plot", "x", {"step", "epoch"});
  if (x == "step") o.x = CurveX::Step;
  if (x == "epoch") o.x = CurveX::Epoch;
  o.smooth = static_cast<int>(integer_option(cl, "plot", "smooth", 0, 100000, 0));
  o.mean_over_seeds = cl.vars["mean-over-seeds"].as<bool>();
  if (cl.vars.count("together")) {
    const std::string names = string_option(cl, "together");
    o.together = names == "none" ? std::vector<std::string>{} : name_list("plot", "--together", names);
  }
  return o;
}

int plot_command(const std::vector<std::string>& args) {
  po::options_description opts("Options");
  opts.add_options()("help,h", "show this help")(
      "metrics", po::value<std::string>(), "metrics to draw, comma-separated (default: loss, lr and the evaluations)")(
      "x", po::value<std::string>(),
      "step or epoch: one x axis for every chart (default: step for training "
      "metrics, epoch for evaluations)")("out", po::value<std::string>(),
                                         "directory for the charts (required for several runs unless one sweep)")(
      "svg", po::bool_switch(), "also write SVG")("smooth", po::value<std::string>(),
                                                  "trailing mean of the loss over K logged values, 0 to 100000 (default 0: off)")(
      "mean-over-seeds", po::bool_switch(), "one line per config: the mean over seeds with a ± std band")(
      "together", po::value<std::string>(),
      "training metrics drawn with their evaluations on one chart (default: loss unless --metrics; none: off)");
  const auto cl = parse_command_line("plot", args, opts);
  if (cl.vars.count("help")) {
    std::cout << command_help("plot",
                              "<run-dir | sweep-dir | dir of runs>... [--metrics NAMES] [--x step|epoch] "
                              "[--out DIR] [--svg] [--smooth K] [--mean-over-seeds] [--together NAMES]",
                              "Draws training curves from metrics.jsonl: one run's, or several runs overlaid.", opts,
                              kPlotDetails);
    return 0;
  }
  if (cl.positional.empty())
    throw UsageError(
        "blocklab plot: name a run directory, a sweep directory or a directory of runs\n"
        "  see: blocklab plot --help");
  const CurveOptions options = options_from(cl);
  const bool svg = cl.vars["svg"].as<bool>();

  const std::vector<RunRecord> records = load_run_records(cl.positional);
  std::string out = string_option(cl, "out");
  if (out.empty() && cl.positional.size() == 1) {
    const std::string sweep = resolve_sweep_directory(cl.positional[0]);
    if (!sweep.empty())
      out = sweep + "/plots";
    else if (records.size() == 1)
      out = records[0].run_dir + "/plots";
  }
  if (out.empty())
    throw UsageError("blocklab plot: " + std::to_string(records.size()) +
                     " runs are drawn into one set of charts: say where with --out DIR\n  see: blocklab plot --help");

  const CurveSet set = load_curves(records);
  for (const std::string& note : set.notes) std::cerr << "note: " << note << "\n";
  for (const std::string& warning : set.warnings) std::cerr << "warning: " << warning << "\n";
  std::vector<std::string> notes;
  const std::vector<CurveChart> charts = curve_charts(set, options, &notes);
  for (const std::string& note : notes) std::cerr << "note: " << note << "\n";
  for (const CurveChart& c : charts) {
    const std::string stem = out + "/" + c.file_stem;
    render_line_chart(c.chart, output_path_inside("plot", out, c.file_stem + ".png"),
                      svg ? output_path_inside("plot", out, c.file_stem + ".svg") : "");
    std::cerr << "wrote " << stem << ".png\n";
    if (svg) std::cerr << "wrote " << stem << ".svg\n";
  }
  return 0;
}

const bool BLOCKLAB_UNIQUE(registered_) = CommandRegistry::instance().add(
    {"plot", "draw training curves of runs or a sweep (loss, lr, evaluations; overlays, mean over seeds)", plot_command,
     65});

}  // namespace
}  // namespace blocklab
