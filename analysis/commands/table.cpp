// blocklab table <sweep-dir | run-dirs...> --rows KEY[,KEY] [--cols KEY] --metric NAME:
// a metric as mean ± std over seeds, in markdown, LaTeX or CSV, plus a plot for sweeps.
#include <algorithm>
#include <iostream>

#include "analysis/curves.h"
#include "analysis/plot.h"
#include "analysis/run_records.h"
#include "analysis/table.h"
#include "experiments/run_files.h"
#include "registry/cli_options.h"
#include "registry/command.h"
#include "registry/registry.h"

namespace blocklab {
namespace {

const char* kTableDetails =
    "Cells:\n"
    "  Runs are grouped by config without seed, output_dir, threads and device; runs in one cell must\n"
    "  agree on every other key (else an error names the keys to add to --rows/--cols). A cell reads\n"
    "  mean ± sample std (n−1) over its finished runs, n = runs averaged: \"0.8512 ± 0.0031 (n=3)\",\n"
    "  \"0.8512 (n=1)\". Failed, diverged, pending and running runs are counted, never averaged:\n"
    "  \"0.8512 ± 0.0031 (n=2, 1 failed)\", \"diverged (n=3)\". An empty cell is \"—\".\n"
    "Order:\n"
    "  Numbers ascending, other values in the order first seen (a sweep's manifest order, then the\n"
    "  paths as given; a directory of runs is read in name order). A key a run lacks is \"(unset)\", last.\n"
    "Best:\n"
    "  Bold per column. max for names with acc, auc, f1, precision, recall, iou, r2, bleu; min for\n"
    "  loss, mse, mae, rmse, error, err, ppl, perplexity, bpc, bpb, nll, time; otherwise say --best.\n"
    "  Cells equal as printed are all bold.\n"
    "Plot:\n"
    "  Over a numeric key, the metric against it: against the columns, one line per row (± std band);\n"
    "  with non-numeric columns and one numeric rows key, against the rows, one line per column. Over\n"
    "  categories (mixers, masks, several rows keys) a dot chart: a row per table row sorted best first,\n"
    "  markers with ± std error bars, one marker series per column. Its baseline (bold label, dashed line\n"
    "  through its value) is the table's first row, for a sweep its first value, or --baseline VALUE.\n"
    "Files:\n"
    "  For a sweep directory (or with --out DIR) all three formats go to <dir>/tables/<name>.{md,tex,csv}\n"
    "  and the plot to <dir>/plots/<name>.{png,svg}, <name> = <metric>_by_<rows>_x_<cols>.\n"
    "Examples:\n"
    "  blocklab table results/sweeps/3f2a9c01b7d4 --rows model.mixer.type --cols trainer.lr --metric test/acc\n"
    "  blocklab table results/runs/vit_fmnist --rows model.mixer --metric test/loss --format tex\n";

TableSpec spec_from(const CommandLine& cl) {
  TableSpec spec;
  const std::string rows = string_option(cl, "rows");
  spec.metric = string_option(cl, "metric");
  if (rows.empty() || spec.metric.empty())
    throw UsageError("blocklab table: --rows and --metric are required\n  see: blocklab table --help");
  spec.rows = name_list("table", "--rows", rows);
  name_list("table", "--metric", spec.metric);
  spec.cols = string_option(cl, "cols");
  if (cl.vars.count("cols")) {
    if (name_list("table", "--cols", spec.cols).size() != 1)
      throw UsageError("blocklab table: --cols takes one config key, not '" + spec.cols + "' (several go to --rows)");
    if (std::find(spec.rows.begin(), spec.rows.end(), spec.cols) != spec.rows.end())
      throw UsageError("blocklab table: '" + spec.cols + "' is in --rows and --cols: give it to one of them");
  }
  const std::string best = choice_option(cl, "table", "best", {"max", "min"});
  if (best == "max") spec.best = Direction::Max;
  if (best == "min") spec.best = Direction::Min;
  if (cl.vars.count("also")) spec.also = name_list("table", "--also", string_option(cl, "also"));
  spec.precision = static_cast<int>(integer_option(cl, "table", "precision", 0, 12, 4));
  return spec;
}

std::string format_table(const Table& table, const std::string& format) {
  if (format == "tex") return format_latex(table);
  if (format == "csv") return format_csv(table);
  return format_markdown(table);
}

// Tables in three formats and the plot under `dir`; says on stderr where they went. Each file
// must stay inside `dir` (a symlinked tables/ or plots/ pointing elsewhere is refused).
void write_outputs(const Table& table, const TablePlot& plot, const std::string& dir, const std::string& name) {
  const std::string stem = name.empty() ? table_file_stem(table.spec) : name;
  for (const char* ext : {".md", ".tex", ".csv"}) {
    const std::string path = output_path_inside("table", dir, "tables/" + stem + ext);
    write_file_atomic(path, format_table(table, ext + 1));
  }
  std::cerr << "wrote " << dir << "/tables/" << stem << ".{md,tex,csv}\n";
  const std::string png = output_path_inside("table", dir, "plots/" + stem + ".png");
  const std::string svg = output_path_inside("table", dir, "plots/" + stem + ".svg");
  render_table_plot(plot, png, svg);
  std::cerr << "wrote " << dir << "/plots/" << stem << ".{png,svg}\n";
}

// Warns about runs whose metrics.jsonl steps go back (two processes wrote the same run).
void warn_metrics_order(const std::vector<RunRecord>& records) {
  for (const RunRecord& r : records)
    if (!r.run_dir.empty())
      if (const std::string problem = metrics_order_problem(r.run_dir + "/metrics.jsonl"); !problem.empty())
        std::cerr << "warning: " << problem << "\n";
}

int table_command(const std::vector<std::string>& args) {
  po::options_description opts("Options");
  opts.add_options()("help,h", "show this help")(
      "rows", po::value<std::string>(), "config key(s) of the rows, comma-separated (model.mixer.type,trainer.lr)")(
      "cols", po::value<std::string>(), "config key of the columns (default: one column)")(
      "metric", po::value<std::string>(), "summary metric to tabulate (test/acc, val/loss, wall_time_s, ...)")(
      "format", po::value<std::string>(), "md (default), tex or csv (printed to stdout)")(
      "best", po::value<std::string>(), "max or min: which cell is best (default: from the metric's name)")(
      "precision", po::value<std::string>(), "decimals of mean and std, 0 to 12 (default: 4)")(
      "also", po::value<std::string>(), "more summary numbers per row, e.g. parameters,train_images_per_s (no --cols)")(
      "out", po::value<std::string>(), "also write tables/ and plots/ here (default: the sweep directory)")(
      "name", po::value<std::string>(), "file name (without extension) of the written table and plot")(
      "baseline", po::value<std::string>(), "the row marked in a dot chart (default: the first row)");
  const auto cl = parse_command_line("table", args, opts);
  if (cl.vars.count("help")) {
    std::cout << command_help("table", "<sweep-dir | run-dirs...> --rows KEY[,KEY] [--cols KEY] --metric NAME",
                              "Tabulates a metric over runs as mean ± std over seeds, one cell per config.", opts,
                              kTableDetails);
    return 0;
  }
  if (cl.positional.empty())
    throw UsageError("blocklab table: name a sweep directory, run directories or a directory of runs\n"
                     "  see: blocklab table --help");
  const std::string format = choice_option(cl, "table", "format", {"md", "tex", "csv"}, "md");
  const TableSpec spec = spec_from(cl);
  const std::string name = cl.vars.count("name") ? checked_file_name("table", "--name", string_option(cl, "name")) : "";

  const std::vector<RunRecord> records = load_run_records(cl.positional);
  warn_metrics_order(records);
  const Table table = build_table(records, spec);
  const TablePlot plot = table_plot(table, string_option(cl, "baseline"));  // checks --baseline before any output
  std::cout << format_table(table, format) << std::flush;
  std::string out = string_option(cl, "out");
  if (out.empty() && cl.positional.size() == 1) out = resolve_sweep_directory(cl.positional[0]);
  if (!out.empty()) write_outputs(table, plot, out, name);
  return 0;
}

const bool BLOCKLAB_UNIQUE(registered_) = CommandRegistry::instance().add(
    {"table", "tabulate a metric over runs or a sweep (mean ± std over seeds; md, tex, csv)", table_command, 60});

}  // namespace
}  // namespace blocklab
