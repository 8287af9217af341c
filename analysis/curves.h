// Training curves: a run's metrics.jsonl as series, and the charts `blocklab plot` draws.
//
// metrics.jsonl has one flat JSON object per line (experiments/tasks/classify.cpp):
//   training lines   {"step","epoch","loss","lr","images_per_s"}   every trainer.log_every steps
//   evaluation lines {"epoch","step","val/acc","val/loss","test/acc","test/loss","eval_time_s"}
//   a diverged run   {"step","loss": NaN,"diverged": true}          its last line
// Every other number on a line is a metric too, so new tasks need no change here.
//
// Decisions:
//   - The file is streamed line by line with a small JSON reader (no YAML parser per line):
//     runs log thousands of lines.
//   - A last line without its newline that does not parse is a write cut off by a kill: it
//     is ignored. Any other line that does not parse makes the file corrupt (ConfigError
//     naming file and line).
//   - Evaluation metrics are those of lines that carry a "split/name" key (val/acc, test/loss):
//     every number on such a line, eval_time_s included. The others are training metrics.
//   - A step at or before the previous one (a run restarted from an earlier checkpoint
//     without cutting the file back) replaces the points from that step on. Since `blocklab
//     run` cuts the file back when it resumes, such a line means two writers (the same run
//     started twice): `plot`, `table` and `attn` warn, naming the file and the line.
//   - The "diverged" line ends the curves: its values (NaN/Infinity) are not drawn, and the
//     run is marked in the legend. Non-finite values elsewhere are left out too.
//   - x axis: training metrics against step and evaluation metrics against epoch (Auto);
//     --x step draws both against step, --x epoch both against epoch (training lines at
//     step / steps-per-epoch, steps per epoch read from the evaluation lines).
//   - Overlay labels are the config leaves that differ between the runs drawn ("trainer.lr=
//     0.001, seed=1"; output_dir never counts), the run id when the configs are equal, with
//     the id appended where two labels would read the same. Labels over 36 characters use the
//     shortest unambiguous key names ("lr=0.001, seed=1"); lines are ordered by those values
//     (numbers ascending), so colours follow the sweep's order. A chart with long legend
//     entries is drawn wider (up to 1200 px) and entries are cut so the "(diverged)" mark stays.
//   - Curves longer than 8 points per pixel column are decimated for drawing (per column:
//     first, lowest, highest, last point), so 100k-step runs give the same picture quickly
//     and small SVGs.
//   - Mean over seeds: runs whose configs differ only in repetition keys (seed, output_dir,
//     threads, device, as for `blocklab table`) become one line, the mean with a band of ±
//     the sample std (n−1), at the x values every member logged (the shortest member, e.g.
//     a diverged one, ends the group's line).
//   - Smoothing (--smooth K) is a trailing mean over the last K logged values of training
//     metrics whose name contains "loss"; the raw curve stays underneath, faint.
//   - Loss charts switch to a log y axis when the values span a factor of 20 or more.
//   - Train and evaluation on one chart (curves_loss_train_val): the training `loss` against
//     step as a plain line, `val/loss`, `test/loss` (any "<split>/loss" of the evaluation
//     lines) against their step as markers joined by a dashed (dotted) line; against epoch
//     with --x epoch. Drawn by default when no --metrics are given and a run logged both;
//     --together NAMES asks for it for other training metrics. One line of each kind gets a
//     colour per kind; several runs keep a colour per run and the styles tell the kinds apart.
#pragma once

#include <cstddef>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "analysis/plot.h"
#include "analysis/run_records.h"

namespace blocklab {

// One metric of one run, in step order.
struct MetricSeries {
  std::string name;
  bool per_eval = false;                   // logged by evaluations, not by training steps
  std::vector<double> step, epoch, value;  // equal lengths; step/epoch NaN where a line lacks them
};

struct RunCurves {
  std::string path;                                               // the metrics.jsonl read
  std::vector<MetricSeries> metrics;                              // in order of first appearance
  bool diverged = false;                                          // a "diverged": true line was read
  double diverged_at = std::numeric_limits<double>::quiet_NaN();  // its step
  // Training steps per evaluation epoch (step / epoch of an evaluation line); NaN without one.
  double steps_per_epoch = std::numeric_limits<double>::quiet_NaN();
  // The first line whose step is not after the previous line's of its kind (training or
  // evaluation lines), as metrics_order_problem() words it; "" when the steps only increase.
  std::string order_problem;
  std::size_t lines = 0;        // complete lines read
  bool truncated_tail = false;  // the last line was cut off mid-write and ignored
  const MetricSeries* find(const std::string& name) const;
  bool has_points() const;  // any metric has a finite value
};

// Reads `path`. Throws ConfigError naming the file when it is missing or corrupt (a line in
// the middle that is not a JSON object); a cut-off last line is ignored.
RunCurves read_metrics_file(const std::string& path);

// Whether two processes appended to one metrics.jsonl: "" when every training line's step is
// after the previous training line's (and likewise for evaluation lines), else a message naming
// the file, the first line out of order and how many there are. `blocklab run` cuts the file
// back to its checkpoint when it resumes, so a single writer never steps back. Streams the file;
// a missing or unreadable file gives "" (the readers that need it say so).
std::string metrics_order_problem(const std::string& path);

// A trailing moving average: out[i] = mean of in[max(0, i−k+1) .. i]; non-finite values are
// skipped. k <= 1 returns `in`.
std::vector<double> trailing_mean(const std::vector<double>& in, int k);

enum class CurveX { Auto, Step, Epoch };

struct CurveOptions {
  std::vector<std::string> metrics;  // empty: default_curve_metrics
  // Training metrics drawn with their evaluations on one chart ("loss": loss, val/loss and
  // test/loss in curves_loss_train_val). nullopt: {"loss"} when `metrics` is empty and some
  // run logged loss and an evaluation of it, else none.
  std::optional<std::vector<std::string>> together;
  CurveX x = CurveX::Auto;
  int smooth = 0;  // trailing-mean window over loss curves; <= 1: none
  bool mean_over_seeds = false;
};

// A run to draw: its record (config, status), its curves and its overlay label.
struct CurveRun {
  RunRecord record;
  RunCurves curves;
  std::string label;  // what differs from the other runs ("trainer.lr=0.001, seed=1")
  std::string name;   // "<experiment>/<run id>" from the run directory
};

struct CurveSet {
  std::vector<CurveRun> runs;
  std::vector<std::string> notes;  // runs left out, and why ("... has no metrics yet")
  std::vector<std::string> warnings;  // metrics files whose steps go back (two writers)
};

// Reads the metrics of every record with a run directory and labels the runs. Records
// without a run directory (pending or failed sweep jobs) or without any metric yet are left
// out with a note. Throws ConfigError for a missing or corrupt metrics.jsonl.
CurveSet load_curves(const std::vector<RunRecord>& records);

// Labels for runs with these configs: the differing leaves (output_dir excluded; seed,
// threads and device last), "" for runs whose configs are all equal. When a label would be
// longer than `max_length` characters, keys are shortened to their shortest unambiguous
// suffix ("lr=0.001, seed=1" for trainer.lr and seed).
std::vector<std::string> differing_labels(const std::vector<const ConfigNode*>& configs,
                                          std::size_t max_length = std::string::npos);

// Every metric some run logged (sorted), and the default selection: loss, lr, then every
// evaluation metric named like "split/name", in order of first appearance.
std::vector<std::string> available_curve_metrics(const CurveSet& set);
std::vector<std::string> default_curve_metrics(const CurveSet& set);

struct CurveChart {
  std::string metric;
  std::string file_stem;  // "curves_test_acc"
  LineChart chart;
};

// One chart per metric (the selected ones; see CurveOptions), then one per `together` name. A
// metric no run logged is a ConfigError listing the available ones, as is a `together` name
// that no run logged in training or with an evaluation; a metric only some runs logged draws
// those runs.
// One run: a chart of that run (its id in the title); several: one line per run (or per
// group of seeds), labelled.
// Charts that cannot be drawn, and runs left out of a chart, are said in `notes`.
std::vector<CurveChart> curve_charts(const CurveSet& set, const CurveOptions& options,
                                     std::vector<std::string>* notes = nullptr);

// "curves_" + the metric with characters other than [A-Za-z0-9._-] as '_'.
std::string curve_file_stem(const std::string& metric);

}  // namespace blocklab
