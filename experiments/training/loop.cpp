#include "experiments/training/loop.h"

#include <chrono>
#include <cmath>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>

#include "blocks/auxiliary_loss.h"
#include "blocks/common/weight_decay.h"
#include "datasets/dataset.h"
#include "experiments/checkpoint.h"
#include "experiments/distributed.h"
#include "experiments/failure.h"
#include "experiments/json_io.h"
#include "experiments/optim/optimizer.h"
#include "experiments/progress.h"
#include "experiments/run_setup.h"
#include "experiments/state_dict.h"

namespace blocklab {

Schema loop_trainer_schema(const std::string& examples, const std::function<void(Schema&)>& task_keys) {
  Schema trainer;
  trainer.add_int("epochs", 10, "passes over the training split").min = 1;
  auto& bs = trainer.add_int("batch_size", 128, examples + " per optimizer step");
  bs.min = 1, bs.max = 65536;
  trainer.add_float("lr", 1e-3, "peak learning rate").min = 0.0;
  trainer.add_float("warmup", 0.0, "linear warm-up length in epochs").min = 0.0;
  if (task_keys) task_keys(trainer);
  trainer.add_float("clip_grad", 0.0, "max global gradient norm (0: no clipping)").min = 0.0;
  trainer.add_int("log_every", 50, "optimizer steps between metrics lines").min = 1;
  trainer.add_int("checkpoint_every", 0, "optimizer steps between checkpoints (0: at each epoch end only)").min = 0;
  trainer
      .add_int("keep_checkpoints", 0,
               "also keep the checkpoints of the last K epochs as checkpoints/epoch_<E>.ckpt (0: last and best only)")
      .min = 0;
  trainer.add_int("val_every", 1, "epochs between evaluations (the last epoch is always evaluated)").min = 1;
  trainer.add_int("eval_batch_size", 1000, examples + " per evaluation batch").min = 1;
  trainer.add_int("max_steps", 0, "stop after this many steps (0: run all epochs)").min = 0;
  add_precision_key(trainer);
  return trainer;
}

void add_loop_sections(Schema& task_schema, Schema trainer) {
  task_schema.add_component("optimizer", "optimizer", "adamw", "optimizer");
  task_schema.add_component("scheduler", "scheduler", "cosine", "learning-rate schedule (with trainer.warmup)");
  task_schema.add_section("trainer", std::move(trainer), "training loop");
}

LoopSettings read_loop_settings(const ConfigNode& config, const Schema& task_schema) {
  const ParamReader root(config, task_schema, "");
  const ParamReader trainer(root.get_node("trainer"), *task_schema.find("trainer")->section, "trainer");
  LoopSettings s;
  s.epochs = trainer.get_int("epochs");
  s.batch_size = trainer.get_int("batch_size");
  s.lr = trainer.get_float("lr");
  s.warmup_epochs = trainer.get_float("warmup");
  s.clip_grad = trainer.get_float("clip_grad");
  s.log_every = trainer.get_int("log_every");
  s.checkpoint_every = trainer.get_int("checkpoint_every");
  s.keep_checkpoints = trainer.get_int("keep_checkpoints");
  s.val_every = trainer.get_int("val_every");
  s.eval_batch_size = trainer.get_int("eval_batch_size");
  s.max_steps = trainer.get_int("max_steps");
  s.precision = read_precision(trainer);
  s.optimizer = root.get_node("optimizer");
  s.scheduler = root.get_node("scheduler");
  return s;
}

namespace {

using Clock = std::chrono::steady_clock;

double seconds_between(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

// A checksum over every parameter and buffer, in name order: equal iff bit-identical.
std::string weights_fingerprint(const torch::nn::Module& model) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  auto add = [&](const std::string& name, const torch::Tensor& t) {
    h = fnv1a64(name.data(), name.size(), h);
    const torch::Tensor c = t.detach().to(torch::kCPU).contiguous();
    h = fnv1a64(c.data_ptr(), static_cast<std::size_t>(c.numel() * c.element_size()), h);
  };
  for (const auto& p : model.named_parameters()) add(p.key(), p.value());
  for (const auto& b : model.named_buffers()) add(b.key(), b.value());
  return hex64(h);
}

// LibTorch's intra-op threads set to n while alive.
class ThreadCount {
 public:
  explicit ThreadCount(int n) : previous_(at::get_num_threads()) {
    if (n != previous_) at::set_num_threads(n);
  }
  ~ThreadCount() {
    if (at::get_num_threads() != previous_) at::set_num_threads(previous_);
  }
  ThreadCount(const ThreadCount&) = delete;
  ThreadCount& operator=(const ThreadCount&) = delete;

 private:
  int previous_;
};

// Wall-clock accounting: the rate window of the metrics lines, and the run's data and step
// seconds for the summary.
struct Timing {
  Clock::time_point run_start = Clock::now(), window_start = run_start;
  std::int64_t window_examples = 0;
  double data_seconds = 0, step_seconds = 0;
  void restart_window() {
    window_start = Clock::now();
    window_examples = 0;
  }
};

class TrainingLoop {
 public:
  TrainingLoop(const RunRequest& request, RunSetup& setup, TaskHooks& hooks, const LoopSettings& settings,
               DataParallel* parallel)
      : request_(request), setup_(setup), files_(setup.files), hooks_(hooks), s_(settings), parallel_(parallel) {}

  // Trains to the end (0), or to a divergence (3) or a stop signal (kExitRequeue).
  int run();
  const std::string& phase() const { return phase_; }
  std::int64_t step() const { return pos_.step; }

 private:
  void build();
  void resume_or_announce();
  double train_step();
  Batch shard(Batch batch) const;
  double agree_on_step(double loss);
  int stop_requested() const { return parallel_ ? agreed_stop_ : stop_signal(); }
  void log_training(double lr, Clock::time_point now);
  void checkpoint(const std::string& which);
  void checkpoint_if_due();
  void keep_epoch_checkpoint();
  bool end_epoch();
  bool evaluate_now();
  int stop_for_signal(int sig);
  int diverged(double loss);
  void write_summary();

  const RunRequest& request_;
  RunSetup& setup_;
  RunFiles& files_;
  TaskHooks& hooks_;
  const LoopSettings& s_;
  DataParallel* parallel_;  // null in a one-process run
  int agreed_stop_ = 0;     // data-parallel: a stop signal some rank received during this step
  TrainPosition pos_;
  std::string phase_;      // what the run is doing, for failure messages
  JsonObject last_eval_;   // the latest evaluation line (the summary's "final")
  std::shared_ptr<torch::nn::Module> model_;
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
  std::unique_ptr<LrSchedule> schedule_;
  std::int64_t steps_per_epoch_ = 0, total_steps_ = 0, parameters_ = 0;
  std::unique_ptr<Progress> progress_;
  Timing timing_;
};

void TrainingLoop::build() {
  phase_ = "building the model";
  torch::manual_seed(static_cast<std::uint64_t>(derive_seed(setup_.seed, 0x1417)));  // model initialisation
  model_ = hooks_.build_model();
  if (!request_.init_from.empty()) {  // before the device: the file's tensors are on the CPU
    const std::string file = init_weights_file(request_.init_from);
    files_.say("initialised from " + file + ": " + init_from_state_dict(*model_, read_state_dict(file), file).text());
  }
  model_->to(setup_.device);
  if (parallel_) parallel_->broadcast(*model_);
  OptimizerArgs oargs;
  oargs.lr = s_.lr;
  const std::set<std::string> no_decay = no_weight_decay_names(*model_);  // what the blocks declare
  for (const auto& item : model_->named_parameters())
    (no_decay.count(item.key()) ? oargs.no_decay : oargs.decay).push_back(item.value());
  optimizer_ = optimizer_registry().create(s_.optimizer, oargs);
  steps_per_epoch_ = hooks_.batches_per_epoch();
  total_steps_ = s_.epochs * steps_per_epoch_;
  if (s_.max_steps > 0) total_steps_ = std::min(total_steps_, s_.max_steps);
  const ScheduleArgs sargs{s_.lr, s_.epochs * steps_per_epoch_, steps_per_epoch_, s_.warmup_epochs};
  schedule_ = schedule_registry().create(s_.scheduler, sargs);
  for (const auto& p : model_->parameters()) parameters_ += p.numel();
}

void TrainingLoop::resume_or_announce() {
  if (setup_.resuming) {
    phase_ = "resuming from " + files_.checkpoint("last");
    pos_ = load_checkpoint(files_.checkpoint("last"), *model_, *optimizer_);
    hooks_.restore_task_state(pos_.task_state);
    if (files_.writer) {
      files_.metrics.truncate(static_cast<std::uint64_t>(pos_.metrics_bytes));
      files_.log.truncate(static_cast<std::uint64_t>(pos_.log_bytes));
    }
    files_.say("resumed at step " + std::to_string(pos_.step) + " (epoch " + std::to_string(pos_.epoch + 1) + ")");
  } else {
    files_.say("run " + files_.dir + ": " + std::to_string(parameters_) + " parameters, " +
               std::to_string(total_steps_) + " steps, " + std::to_string(setup_.threads) + " threads, " +
               setup_.device.str() +
               (parallel_ ? ", " + std::to_string(parallel_->size()) + " data-parallel ranks" : ""));
  }
}

int TrainingLoop::run() {
  build();
  resume_or_announce();
  progress_ = std::make_unique<Progress>("step", total_steps_, request_.quiet || !files_.writer);
  install_stop_handlers();
  timing_ = Timing{};
  while (pos_.step < total_steps_ && pos_.epoch < s_.epochs) {
    model_->train();
    for (; pos_.batch < steps_per_epoch_ && pos_.step < total_steps_; ++pos_.batch) {
      const double loss = train_step();
      if (!std::isfinite(loss)) return diverged(loss);
      if (const int sig = stop_requested()) return stop_for_signal(sig);
      checkpoint_if_due();
    }
    if (!end_epoch()) break;
  }
  progress_->finish();
  write_summary();
  return 0;
}

// One optimizer step on the batch at pos_; returns its loss (when not finite, nothing changed).
double TrainingLoop::train_step() {
  phase_ = "training step " + std::to_string(pos_.step + 1);
  const auto t0 = Clock::now();
  Batch batch = shard(hooks_.train_batch(pos_.epoch, pos_.batch));
  batch.inputs = batch.inputs.to(setup_.device);
  batch.targets = batch.targets.to(setup_.device);
  if (batch.lengths.defined()) batch.lengths = batch.lengths.to(setup_.device);
  const auto t1 = Clock::now();
  // Dropout and stochastic depth draw from a generator seeded by (seed, step).
  // Data-parallel ranks draw their own masks for their own rows.
  const auto step_seed = derive_seed(setup_.seed, 0xd7, static_cast<std::uint64_t>(pos_.step));
  torch::manual_seed(parallel_ ? derive_seed(step_seed, static_cast<std::uint64_t>(parallel_->rank())) : step_seed);
  const double lr = schedule_->lr_at(pos_.step);
  set_learning_rate(*optimizer_, lr);
  optimizer_->zero_grad();
  torch::Tensor loss;
  {
    const AutocastScope autocast(setup_.device, s_.precision);  // the backward runs outside it
    loss = hooks_.loss(batch);
    // Blocks' auxiliary terms (e.g. attention distillation) join the task's loss.
    if (const auto auxiliary = take_auxiliary_losses(*model_); auxiliary.defined()) loss = loss + auxiliary;
  }
  const double loss_value = agree_on_step(loss.item<double>());
  if (!std::isfinite(loss_value)) return loss_value;
  phase_ = "the backward pass of training step " + std::to_string(pos_.step + 1);
  loss.backward();
  if (parallel_) parallel_->average_gradients(model_->parameters());
  if (s_.clip_grad > 0) torch::nn::utils::clip_grad_norm_(model_->parameters(), s_.clip_grad);
  optimizer_->step();
  const auto t2 = Clock::now();
  timing_.data_seconds += seconds_between(t0, t1);
  timing_.step_seconds += seconds_between(t0, t2);
  ++pos_.step;
  pos_.loss_sum += loss_value;
  ++pos_.loss_count;
  timing_.window_examples += batch.inputs.size(0) * hooks_.examples_per_row() * (parallel_ ? parallel_->size() : 1);
  if (pos_.step % s_.log_every == 0 || pos_.step == total_steps_) log_training(lr, t2);
  return loss_value;
}

// This rank's rows of the global batch (all of it in a one-process run).
Batch TrainingLoop::shard(Batch batch) const {
  if (!parallel_) return batch;
  const auto [begin, end] = shard_rows(batch.inputs.size(0), parallel_->rank(), parallel_->size());
  batch.inputs = batch.inputs.slice(0, begin, end);
  batch.targets = batch.targets.slice(0, begin, end);
  if (batch.lengths.defined()) batch.lengths = batch.lengths.slice(0, begin, end);
  return batch;
}

// Data-parallel ranks agree on the step's loss (the mean of the ranks' means: the global
// batch's mean) and on stopping, before anything changes: a loss that is not finite on any
// rank, or a stop signal any rank got, ends the step on every rank alike.
double TrainingLoop::agree_on_step(double loss) {
  if (!parallel_) return loss;
  const std::vector<double> total = parallel_->sum({loss, static_cast<double>(stop_signal() != 0)});
  agreed_stop_ = total[1] > 0 ? (stop_signal() ? stop_signal() : SIGTERM) : 0;
  return total[0] / parallel_->size();
}

// A metrics line (mean loss since the last one, lr, rate), the progress line and a log line.
void TrainingLoop::log_training(double lr, Clock::time_point now) {
  const double seconds = seconds_between(timing_.window_start, now);
  const double rate = seconds > 0 ? static_cast<double>(timing_.window_examples) / seconds : 0;
  const double mean_loss = pos_.loss_sum / static_cast<double>(std::max<std::int64_t>(1, pos_.loss_count));
  files_.metric(JsonObject()
                    .set("step", pos_.step)
                    .set("epoch", pos_.epoch + 1)
                    .set("loss", mean_loss)
                    .set("lr", lr)
                    .set(hooks_.examples_name() + "_per_s", rate));
  char status[128];
  std::snprintf(status, sizeof status, "epoch %lld/%lld loss %.4f lr %.2e", static_cast<long long>(pos_.epoch + 1),
                static_cast<long long>(s_.epochs), mean_loss, lr);
  progress_->update(pos_.step, status, rate);
  files_.log_line("step " + std::to_string(pos_.step) + "/" + std::to_string(total_steps_) + " " + status);
  pos_.loss_sum = 0;
  pos_.loss_count = 0;
  timing_.restart_window();
}

void TrainingLoop::checkpoint(const std::string& which) {
  if (!files_.writer) return;  // every rank holds the same state: rank 0 keeps it
  phase_ = "writing the " + which + " checkpoint";
  pos_.metrics_bytes = static_cast<std::int64_t>(files_.metrics.size());
  pos_.log_bytes = static_cast<std::int64_t>(files_.log.size());
  pos_.task_state = hooks_.task_state();
  save_checkpoint(files_.checkpoint(which), *model_, *optimizer_, pos_);
  if (which == "best") save_state_dict(files_.weights("best"), *model_);
}

// Every trainer.checkpoint_every steps inside an epoch (the epoch end checkpoints anyway).
void TrainingLoop::checkpoint_if_due() {
  if (s_.checkpoint_every <= 0 || pos_.step % s_.checkpoint_every != 0 || pos_.batch + 1 >= steps_per_epoch_) return;
  ++pos_.batch;  // the checkpoint resumes at the next batch
  checkpoint("last");
  --pos_.batch;
}

// End of an epoch, or trainer.max_steps reached inside one: evaluate (every val_every epochs
// and at the end), keep the best, checkpoint. A run stopped by max_steps is evaluated too, so
// its summary has results. Returns whether training goes on.
bool TrainingLoop::end_epoch() {
  progress_->finish();
  const bool epoch_done = pos_.batch >= steps_per_epoch_;
  const bool last = !epoch_done || pos_.epoch + 1 >= s_.epochs || pos_.step >= total_steps_;
  const bool improved = (last || (pos_.epoch + 1) % s_.val_every == 0) && evaluate_now();
  if (epoch_done) ++pos_.epoch, pos_.batch = 0;
  timing_.restart_window();  // the rate excludes evaluation time
  checkpoint("last");
  if (improved) checkpoint("best");
  if (epoch_done) keep_epoch_checkpoint();
  return epoch_done;
}

// trainer.keep_checkpoints K: the checkpoint of the epoch just ended as epoch_<E>.ckpt, and
// only the newest K of those.
void TrainingLoop::keep_epoch_checkpoint() {
  if (s_.keep_checkpoints <= 0 || !files_.writer) return;
  checkpoint("epoch_" + std::to_string(pos_.epoch));
  const std::int64_t stale = pos_.epoch - s_.keep_checkpoints;
  if (stale >= 1) std::filesystem::remove(files_.checkpoint("epoch_" + std::to_string(stale)));
}

// The task's evaluation as a metrics line and a log line; returns whether it is the best.
// Data-parallel: every rank would compute the same numbers, so rank 0 evaluates alone, with the
// threads of all the ranks on its machine, while the others wait at the next step.
bool TrainingLoop::evaluate_now() {
  if (!files_.writer) return false;
  const ThreadCount threads(parallel_ ? setup_.threads * parallel_->world().local_size : setup_.threads);
  const auto start = Clock::now();
  JsonObject line;
  line.set("epoch", pos_.epoch + 1).set("step", pos_.step);
  Evaluation result;
  {
    torch::NoGradGuard no_grad;
    const AutocastScope autocast(setup_.device, s_.precision);
    model_->eval();
    result = hooks_.evaluate(line, [this](const std::string& phase) { phase_ = phase; });
    model_->train();
  }
  line.set("eval_time_s", seconds_between(start, Clock::now()));
  files_.metric(line);
  last_eval_ = line;
  files_.say("epoch " + std::to_string(pos_.epoch + 1) + "/" + std::to_string(s_.epochs) + ": " + result.text);
  const Selection selection = hooks_.selection();
  const bool better = selection.higher_is_better ? result.selection > pos_.best_metric
                                                 : result.selection < pos_.best_metric;
  const bool improved = pos_.best_epoch < 0 || better;
  if (improved) pos_.best_metric = result.selection, pos_.best_epoch = pos_.epoch + 1;
  return improved;
}

int TrainingLoop::stop_for_signal(int sig) {
  ++pos_.batch;  // the checkpoint resumes at the next batch
  checkpoint("last");
  progress_->finish();
  files_.warn("stopped by " + std::string(strsignal(sig)) + " at step " + std::to_string(pos_.step) +
              " after a checkpoint; continue with --resume (" + files_.dir + ")");
  return kExitRequeue;
}

int TrainingLoop::diverged(double loss) {
  const std::string status = "diverged at step " + std::to_string(pos_.step + 1);
  files_.metric(JsonObject().set("step", pos_.step + 1).set("loss", loss).set("diverged", true));
  files_.finish(JsonObject().set("status", status).set("run_id", files_.id));
  files_.warn(status + " (loss " + format_double(loss) + "); " +
              (file_exists(files_.checkpoint("last")) ? "the last good checkpoint is kept in " + files_.dir
                                                      : "no checkpoint was written before it (" + files_.dir + ")"));
  return 3;
}

// The evaluation line of `epoch` in metrics.jsonl, or "" when there is none: the object with
// that "epoch" and an "eval_time_s" (evaluate_now; training lines have no eval_time_s). After a
// resume the file holds exactly what the run computed, so this also finds a best epoch from
// before the resume.
std::string evaluation_line(const std::string& metrics_path, std::int64_t epoch) {
  std::ifstream in(metrics_path);
  std::string found;
  Json line_value;
  for (std::string line; std::getline(in, line);) {
    if (!try_parse_json(line, line_value) || !line_value.is_object() || !line_value.contains("eval_time_s")) continue;
    const auto e = line_value.find("epoch");
    if (e != line_value.end() && e->is_number_integer() && e->get<std::int64_t>() == epoch) found = line;
  }
  return found;
}

void TrainingLoop::write_summary() {
  phase_ = "writing the summary";
  const double wall = seconds_between(timing_.run_start, Clock::now());
  const double step_seconds = timing_.step_seconds;
  JsonObject summary;
  summary.set("status", "finished")
      .set("experiment", request_.experiment)
      .set("run_id", files_.id)
      .set("steps", pos_.step)
      .set("epochs", pos_.epoch)
      .set("parameters", parameters_)
      .set("final", last_eval_)
      .set("best_epoch", pos_.best_epoch);
  // A best value exists only when something was evaluated: null, never a sentinel.
  const std::string best_key = "best/" + hooks_.selection().name;
  if (pos_.best_epoch >= 0)
    summary.set(best_key, pos_.best_metric);
  else
    summary.set_null(best_key);
  // Every number of the best epoch's evaluation (the test at the best val: "best/test/mse").
  const std::string best_line =
      pos_.best_epoch >= 0 ? evaluation_line(files_.dir + "/metrics.jsonl", pos_.best_epoch) : "";
  if (best_line.empty())
    summary.set_null("best");
  else
    summary.set_raw("best", best_line);
  const double examples =
      static_cast<double>(s_.batch_size * hooks_.examples_per_row()) * static_cast<double>(pos_.step);
  summary.set("wall_time_s", wall)
      .set("train_" + hooks_.examples_name() + "_per_s", step_seconds > 0 ? examples / step_seconds : 0.0)
      .set("data_time_fraction", step_seconds > 0 ? timing_.data_seconds / step_seconds : 0.0)
      .set("weights_fnv1a64", weights_fingerprint(*model_));
  if (parallel_) summary.set("world_size", parallel_->size());
  if (files_.writer) save_state_dict(files_.weights("final"), *model_);
  files_.finish(summary);
  files_.say("finished in " + Progress::format_duration(wall) + ": " + files_.dir);
}

// Data-parallel ranks other than 0 write nothing: rank 0 opens the run directory and tells
// them what it found (run, resume, or an exit status when the run is already done or cannot
// start). Returns the exit status when there is nothing to train.
std::optional<int> open_run(const RunRequest& request, const TaskHooks& hooks, RunSetup& setup,
                            DataParallel* parallel) {
  if (parallel && parallel->rank() > 0) {
    const std::string decision = parallel->share("run", "");
    if (decision.rfind("exit ", 0) == 0) return std::stoi(decision.substr(5));
    setup.resuming = decision[0] == 'r';
    setup.files.dir = decision.substr(2);
    return std::nullopt;
  }
  const auto tell = [&](const std::string& decision) {
    if (parallel) parallel->share("run", decision);
  };
  try {
    open_run_directory(request, hooks.data_fingerprint(), setup);
  } catch (const RunAlreadyDone& done) {
    if (!request.quiet || done.diverged()) std::cerr << done.message() << "\n";
    tell("exit " + std::to_string(done.exit_status()));
    return done.exit_status();
  } catch (...) {
    tell("exit 2");
    throw;
  }
  tell(std::string(setup.resuming ? "r " : "s ") + setup.files.dir);
  return std::nullopt;
}

// A task on the loop: runtime, world, hooks, run directory, then the loop.
class LoopTask : public Task {
 public:
  LoopTask(const RunRequest& request, const Schema& schema, HooksFactory make_hooks)
      : request_(request), schema_(schema), make_hooks_(std::move(make_hooks)) {}

  int run() override {
    const LoopSettings settings = read_loop_settings(request_.config, schema_);
    RunSetup setup = configure_runtime(request_);  // threads, device, determinism, seed, world
    std::unique_ptr<DataParallel> parallel;
    if (setup.world) parallel = std::make_unique<DataParallel>(*setup.world, setup.device);
    const std::unique_ptr<TaskHooks> hooks = make_hooks_(TaskContext{request_.config, settings, setup.seed, setup.device});
    if (parallel) check_data_parallel(*hooks, settings, *parallel);
    if (const auto done = open_run(request_, *hooks, setup, parallel.get())) return *done;
    TrainingLoop loop(request_, setup, *hooks, settings, parallel.get());
    try {
      return loop.run();
    } catch (const std::exception& e) {
      if (!setup.files.writer) throw;  // rank 0 records the failure
      return fail_run(setup.files, e, loop.phase(), loop.step());
    }
  }

 private:
  // What data-parallel training needs: equal shards of the global batch, and a task whose
  // training does not depend on each rank's own rows beyond its gradients.
  static void check_data_parallel(const TaskHooks& hooks, const LoopSettings& settings, const DataParallel& parallel) {
    check_batch_splits(settings.batch_size, Source{}, parallel.size(), "another --nproc (or srun task count)");
    if (const std::string problem = hooks.data_parallel_problem(); !problem.empty())
      throw ConfigError(problem, Source{}, "", {"run it in one process (without --nproc)"});
  }

  RunRequest request_;
  const Schema& schema_;
  HooksFactory make_hooks_;
};

}  // namespace

TaskRegistry::Factory loop_task_factory(const Schema& task_schema, HooksFactory make_hooks) {
  return [&task_schema, make_hooks](const ConfigNode&, const RunRequest& request) -> std::unique_ptr<Task> {
    return std::make_unique<LoopTask>(request, task_schema, make_hooks);
  };
}

}  // namespace blocklab
