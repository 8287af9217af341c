// Result tables: one metric of many runs, grouped by config values, as mean ± std over seeds.
//
// Rows are the distinct values of one or more config keys (--rows), columns the distinct
// values of one key (--cols, optional). Runs that land in one cell must have the same config
// apart from their seed and how they were executed (output_dir, threads, device); otherwise
// build_table refuses, naming the keys that differ, rather than average different configs.
//
// Decisions (also in `blocklab table --help`):
//   - Axis order: numbers ascending; other values in the order first seen, which is the
//     order a sweep was typed in (manifest order), then the order of the paths given (a
//     directory of runs is read in name order). A key a run does not have reads "(unset)",
//     placed last.
//   - A cell averages its finished runs: mean ± sample std (n−1), n = runs averaged. Failed,
//     diverged, pending and running runs are counted next to n, never averaged.
//   - The best cell of each column is bold; ties (equal as printed) are all bold.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "analysis/plot.h"
#include "analysis/run_records.h"

namespace blocklab {

enum class Direction { Max, Min };
const char* direction_name(Direction d);  // "max" / "min"

// Higher is better for accuracy-like names (acc, auc, f1, precision, recall, iou, r2, bleu),
// lower for losses, errors and times (loss, mse, mae, rmse, error, err, ppl, perplexity, time).
// The last word of the name that says either decides ("acc_err" is an error); nullopt when
// none does.
std::optional<Direction> metric_direction(const std::string& metric);

struct TableSpec {
  std::vector<std::string> rows;  // dotted config keys (at least one)
  std::string cols;               // dotted config key; "" = a single column, the metric
  std::string metric;             // a summary.json metric ("test/acc", "wall_time_s")
  std::optional<Direction> best;  // nullopt: from the metric's name
  int precision = 4;              // decimals of mean and std
  // More summary numbers shown per row next to the metric (--also parameters,train_images_per_s):
  // mean ± std over the row's finished runs, never bold. Only without --cols.
  std::vector<std::string> also;
};

// One config key's distinct values, in table order.
struct Axis {
  std::string key;
  std::vector<std::string> labels;  // what the table prints for each value
  // The values as numbers when every one is a number (a numeric plot axis); else empty.
  std::vector<double> numbers;
};

struct Cell {
  std::vector<double> values;  // the metric of each finished run, in input order
  int failed = 0, diverged = 0, pending = 0, running = 0;
  int without_metric = 0;  // finished runs whose summary lacks the metric
  bool empty() const { return values.empty() && failed + diverged + pending + running + without_metric == 0; }
  int n() const { return static_cast<int>(values.size()); }
  double mean() const;  // NaN when n == 0
  double stddev() const;  // sample standard deviation (n−1); 0 when n == 1, NaN when n == 0
};

struct Table {
  TableSpec spec;
  Direction direction = Direction::Max;
  std::vector<Axis> row_axes;                 // one per --rows key
  std::optional<Axis> col_axis;               // absent without --cols
  std::vector<std::vector<int>> row_groups;   // the row tuples present: an index per row axis
  std::vector<std::vector<Cell>> cells;       // [row group][column]
  std::vector<std::vector<bool>> best;        // [row group][column]
  std::vector<std::vector<Cell>> also_cells;  // [row group][spec.also index]
  std::size_t columns() const { return col_axis ? col_axis->labels.size() : 1; }
  // "model.mixer.type=attention/softmax, trainer.lr=0.001" for a row group.
  std::string row_label(std::size_t row) const;
};

// Groups `runs` into the table. Throws ConfigError for an unknown key or metric (with the
// nearest names), a metric of unknown direction without spec.best, and cells whose runs
// differ in other config keys.
Table build_table(const std::vector<RunRecord>& runs, const TableSpec& spec);

// A cell as plain text: "0.8512 ± 0.0031 (n=3)", "0.8512 (n=1, 1 failed)", "failed (n=3)",
// "—" when no run falls in it.
std::string format_cell(const Cell& cell, int precision);

std::string format_markdown(const Table& table);  // GitHub table with a caption line
std::string format_latex(const Table& table);     // booktabs tabular in a table float
std::string format_csv(const Table& table);       // long format, one line per cell

// "test_acc_by_model.mixer.type_x_trainer.lr": the file name of the table and its plot.
std::string table_file_stem(const TableSpec& spec);

// The metric against the column values, one line per row group with a ± std band.
LineChart table_chart(const Table& table);

// The plot `blocklab table` writes. Over a numeric key, a line chart: against the columns
// when they are numbers (table_chart), else against the single rows key when it is numeric
// (a line per column). Otherwise the key is categorical (mixers, masks; or several rows
// keys) and the plot is a dot chart: a row per row group sorted best first in the table's
// direction, mean ± std error bars, one marker series per column (with a legend), and the
// baseline marked: the row labelled `baseline`, or the table's first row when "" (for a
// sweep, the first value of the sweep).
struct TablePlot {
  bool dots = false;  // which of the two is drawn
  LineChart line;
  DotChart dot;
};

// Throws ConfigError when `baseline` names no row (listing them), or is given for a line chart.
TablePlot table_plot(const Table& table, const std::string& baseline = "");

// The plot to PNG and SVG (either path may be ""), as render_line_chart / render_dot_chart.
void render_table_plot(const TablePlot& plot, const std::string& png_path, const std::string& svg_path);

// ---- Config comparisons (shared with the training-curve overlays of `blocklab plot`) ----

// Top-level keys that say how a run was executed, not what it computed (seed, output_dir,
// threads, device): runs that differ only in these are repetitions of one config.
const std::vector<std::string>& repetition_keys();

// A config value's identity for grouping: numbers compare by value (2e-3 == 0.002), strings
// by text, and a string "1" differs from the number 1.
std::string config_value_identity(const ConfigNode& value);

// A value as tables and legends print it: scalars as written in config.yaml, lists in flow style.
std::string config_value_text(const ConfigNode& value);

// The leaf paths (dotted) whose values are not the same in every config, in name order; a
// leaf that some configs lack counts as differing.
std::vector<std::string> varying_config_leaves(const std::vector<const ConfigNode*>& configs);

}  // namespace blocklab
