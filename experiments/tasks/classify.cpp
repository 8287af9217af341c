// task `classify`: supervised image classification (train, validate, test).
//
// Builds dataset, backbone + head, optimizer and schedule from the config; trains with
// label smoothing and gradient clipping, no weight decay on rank <= 1 parameters and those the
// blocks declare (blocks/common/weight_decay.h); evaluates each epoch; records everything in
// a run directory and resumes exactly.
#include <chrono>
#include <cstring>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <map>
#include <optional>
#include <set>

#include "blocks/common/layer_error.h"
#include "blocks/common/weight_decay.h"
#include "blocks/interfaces.h"
#include "datasets/dataset.h"
#include "experiments/checkpoint.h"
#include "experiments/classifier.h"
#include "experiments/failure.h"
#include "experiments/optim/optimizer.h"
#include "experiments/progress.h"
#include "experiments/run_files.h"
#include "experiments/run_setup.h"
#include "experiments/task.h"
#include "registry/yaml_io.h"

namespace fs = std::filesystem;

namespace blocklab {
namespace {

Schema classify_schema() {
  Schema trainer;
  trainer.add_int("epochs", 10, "passes over the training split").min = 1;
  auto& bs = trainer.add_int("batch_size", 128, "images per optimizer step");
  bs.min = 1, bs.max = 65536;
  auto& lr = trainer.add_float("lr", 1e-3, "peak learning rate");
  lr.min = 0.0;
  trainer.add_float("warmup", 0.0, "linear warm-up length in epochs").min = 0.0;
  auto& ls = trainer.add_float("label_smoothing", 0.0, "label smoothing of the cross-entropy");
  ls.min = 0.0, ls.max = 1.0;
  trainer.add_float("clip_grad", 0.0, "max global gradient norm (0: no clipping)").min = 0.0;
  trainer.add_int("log_every", 50, "optimizer steps between metrics lines").min = 1;
  trainer.add_int("checkpoint_every", 0, "optimizer steps between checkpoints (0: at each epoch end only)").min = 0;
  trainer.add_int("eval_batch_size", 1000, "images per evaluation batch").min = 1;
  trainer.add_int("max_steps", 0, "stop after this many steps (0: run all epochs)").min = 0;

  Schema s;
  s.add_component("model", "model", "vit", "the network: stem -> stack -> norm -> pool (blocks/model.h)");
  s.add_component("head", "head", "linear", "features to class logits");
  s.add_component("dataset", "dataset", "fashion-mnist", "data, splits and augmentation");
  s.add_component("optimizer", "optimizer", "adamw", "optimizer");
  s.add_component("scheduler", "scheduler", "cosine", "learning-rate schedule (with trainer.warmup)");
  s.add_section("trainer", trainer, "training loop");
  return s;
}

struct EvalResult {
  double accuracy = 0, loss = 0;
};

// Where training stands between steps, for the loop and its helpers.
struct LoopState {
  TrainPosition pos;
  JsonObject last_eval;  // the latest evaluation line (the summary's "final")
  std::string phase;     // what the run is doing, for failure messages
};

class ClassifyTask : public Task {
 public:
  explicit ClassifyTask(const RunRequest& request) : request_(request) {}

  int run() override {
    static const Schema schema = classify_schema();
    const ParamReader root(request_.config, schema, "");
    RunSetup setup = configure_runtime(request_);  // threads, device, determinism, seed
    auto dataset = dataset_registry().create(root.get_node("dataset"), DatasetArgs{setup.seed});
    try {
      open_run_directory(request_, dataset->fingerprint(), setup);
    } catch (const RunAlreadyDone& done) {
      if (!request_.quiet || done.diverged()) std::cerr << done.message() << "\n";
      return done.exit_status();
    }
    LoopState state;
    try {
      return train(root, setup, *dataset, state);
    } catch (const std::exception& e) {
      return fail_run(setup.files, e, state.phase, state.pos.step);
    }
  }

 private:
  int train(const ParamReader& root, RunSetup& setup, const Dataset& dataset, LoopState& state) {
    static const Schema& trainer_schema = *classify_schema().find("trainer")->section;
    const ParamReader trainer(root.get_node("trainer"), trainer_schema, "trainer");
    const auto seed = setup.seed;
    state.phase = "building the model";
    torch::manual_seed(static_cast<std::uint64_t>(derive_seed(seed, 0x1417)));  // model initialisation
    auto model = build_classifier(root.get_node("model"), root.get_node("head"), dataset.info());
    model->to(setup.device);

    OptimizerArgs oargs;
    oargs.lr = trainer.get_float("lr");
    const std::set<std::string> no_decay = no_weight_decay_names(*model);  // what the blocks declare
    for (const auto& item : model->named_parameters())
      (no_decay.count(item.key()) ? oargs.no_decay : oargs.decay).push_back(item.value());
    auto optimizer = optimizer_registry().create(root.get_node("optimizer"), oargs);

    const std::int64_t batch_size = trainer.get_int("batch_size");
    const bool has_val = dataset.split("val").size() > 0;
    BatchLoader train(dataset, "train", batch_size, /*shuffle=*/true, seed, /*drop_last=*/true);
    const std::int64_t epochs = trainer.get_int("epochs");
    const std::int64_t steps_per_epoch = train.batches_per_epoch();
    std::int64_t total_steps = epochs * steps_per_epoch;
    if (trainer.get_int("max_steps") > 0) total_steps = std::min(total_steps, trainer.get_int("max_steps"));
    ScheduleArgs sargs{oargs.lr, epochs * steps_per_epoch, steps_per_epoch, trainer.get_float("warmup")};
    auto schedule = schedule_registry().create(root.get_node("scheduler"), sargs);

    std::int64_t params = 0;
    for (const auto& p : model->parameters()) params += p.numel();

    RunFiles& files = setup.files;
    TrainPosition& pos = state.pos;
    if (setup.resuming) {
      state.phase = "resuming from " + files.checkpoint("last");
      pos = load_checkpoint(files.checkpoint("last"), *model, *optimizer);
      files.metrics.truncate(static_cast<std::uint64_t>(pos.metrics_bytes));
      files.log.truncate(static_cast<std::uint64_t>(pos.log_bytes));
      files.say("resumed at step " + std::to_string(pos.step) + " (epoch " + std::to_string(pos.epoch + 1) + ")");
    } else {
      files.say("run " + files.dir + ": " + std::to_string(params) + " parameters, " + std::to_string(total_steps) +
                " steps, " + std::to_string(setup.threads) + " threads, " + setup.device.str());
    }

    auto checkpoint = [&](const std::string& which) {
      state.phase = "writing the " + which + " checkpoint";
      pos.metrics_bytes = static_cast<std::int64_t>(files.metrics.size());
      pos.log_bytes = static_cast<std::int64_t>(files.log.size());
      save_checkpoint(files.checkpoint(which), *model, *optimizer, pos);
    };
    // Validate (when there is a val split) and test; keep the best; log a line.
    auto evaluate_now = [&] {
      const std::int64_t eval_batch = trainer.get_int("eval_batch_size");
      const auto e0 = std::chrono::steady_clock::now();
      JsonObject line;
      line.set("epoch", pos.epoch + 1).set("step", pos.step);
      double selection = 0;
      if (has_val) {
        state.phase = "evaluation on val";
        const EvalResult v = evaluate(*model, dataset, "val", eval_batch, setup.device);
        line.set("val/acc", v.accuracy).set("val/loss", v.loss);
        selection = v.accuracy;
      }
      state.phase = "evaluation on test";
      const EvalResult t = evaluate(*model, dataset, "test", eval_batch, setup.device);
      line.set("test/acc", t.accuracy).set("test/loss", t.loss);
      if (!has_val) selection = t.accuracy;
      line.set("eval_time_s", std::chrono::duration<double>(std::chrono::steady_clock::now() - e0).count());
      files.metrics.append_line(line.str());
      state.last_eval = line;
      char text[160];
      std::snprintf(text, sizeof text, "epoch %lld/%lld: %stest acc %.4f loss %.4f",
                    static_cast<long long>(pos.epoch + 1), static_cast<long long>(epochs),
                    has_val ? ("val acc " + format_double(selection) + ", ").c_str() : "", t.accuracy, t.loss);
      files.say(text);
      const bool improved = pos.best_epoch < 0 || selection > pos.best_metric;
      if (improved) pos.best_metric = selection, pos.best_epoch = pos.epoch + 1;
      return improved;
    };

    const double label_smoothing = trainer.get_float("label_smoothing");
    const double clip = trainer.get_float("clip_grad");
    const std::int64_t log_every = trainer.get_int("log_every");
    const std::int64_t checkpoint_every = trainer.get_int("checkpoint_every");
    Progress progress("step", total_steps, request_.quiet);
    install_stop_handlers();
    const auto run_start = std::chrono::steady_clock::now();
    auto window_start = run_start;
    std::int64_t window_images = 0;
    double data_seconds = 0, step_seconds = 0;

    while (pos.step < total_steps && pos.epoch < epochs) {
      model->train();
      for (; pos.batch < steps_per_epoch && pos.step < total_steps; ++pos.batch) {
        state.phase = "training step " + std::to_string(pos.step + 1);
        const auto t0 = std::chrono::steady_clock::now();
        auto [images, labels] = train.batch(pos.epoch, pos.batch, /*augment=*/true);
        images = images.to(setup.device);
        labels = labels.to(setup.device);
        const auto t1 = std::chrono::steady_clock::now();
        // Dropout and stochastic depth draw from a generator seeded by (seed, step).
        torch::manual_seed(derive_seed(seed, 0xd7, static_cast<std::uint64_t>(pos.step)));
        const double lr = schedule->lr_at(pos.step);
        set_learning_rate(*optimizer, lr);
        optimizer->zero_grad();
        const torch::Tensor logits = model->forward(images);
        const torch::Tensor loss = torch::nn::functional::cross_entropy(
            logits, labels, torch::nn::functional::CrossEntropyFuncOptions().label_smoothing(label_smoothing));
        const double loss_value = loss.item<double>();
        if (!std::isfinite(loss_value)) return diverged(files, pos.step, loss_value);
        state.phase = "the backward pass of training step " + std::to_string(pos.step + 1);
        loss.backward();
        if (clip > 0) torch::nn::utils::clip_grad_norm_(model->parameters(), clip);
        optimizer->step();
        const auto t2 = std::chrono::steady_clock::now();
        data_seconds += std::chrono::duration<double>(t1 - t0).count();
        step_seconds += std::chrono::duration<double>(t2 - t0).count();
        ++pos.step;
        pos.loss_sum += loss_value;
        ++pos.loss_count;
        window_images += images.size(0);

        if (pos.step % log_every == 0 || pos.step == total_steps) {
          const double seconds = std::chrono::duration<double>(t2 - window_start).count();
          const double rate = seconds > 0 ? static_cast<double>(window_images) / seconds : 0;
          const double mean_loss = pos.loss_sum / static_cast<double>(std::max<std::int64_t>(1, pos.loss_count));
          files.metrics.append_line(JsonObject()
                                        .set("step", pos.step)
                                        .set("epoch", pos.epoch + 1)
                                        .set("loss", mean_loss)
                                        .set("lr", lr)
                                        .set("images_per_s", rate)
                                        .str());
          char status[128];
          std::snprintf(status, sizeof status, "epoch %lld/%lld loss %.4f lr %.2e",
                        static_cast<long long>(pos.epoch + 1), static_cast<long long>(epochs), mean_loss, lr);
          progress.update(pos.step, status, rate);
          files.log_line(std::string("step ") + std::to_string(pos.step) + "/" + std::to_string(total_steps) + " " +
                         status);
          pos.loss_sum = 0;
          pos.loss_count = 0;
          window_images = 0;
          window_start = std::chrono::steady_clock::now();
        }
        if (const int sig = stop_signal()) {
          ++pos.batch;  // the checkpoint resumes at the next batch
          checkpoint("last");
          progress.finish();
          files.warn("stopped by " + std::string(strsignal(sig)) + " at step " + std::to_string(pos.step) +
                     " after a checkpoint; continue with --resume (" + files.dir + ")");
          return kExitRequeue;
        }
        if (checkpoint_every > 0 && pos.step % checkpoint_every == 0 && pos.batch + 1 < steps_per_epoch) {
          ++pos.batch;  // the checkpoint resumes at the next batch
          checkpoint("last");
          --pos.batch;
        }
      }
      // End of an epoch, or trainer.max_steps reached inside one: evaluate, keep the best,
      // checkpoint. A run stopped by max_steps is evaluated too, so its summary has results.
      progress.finish();
      const bool epoch_done = pos.batch >= steps_per_epoch;
      const bool improved = evaluate_now();
      if (epoch_done) ++pos.epoch, pos.batch = 0;
      window_start = std::chrono::steady_clock::now();  // the rate excludes evaluation time
      window_images = 0;
      checkpoint("last");
      if (improved) checkpoint("best");
      if (!epoch_done) break;
    }
    progress.finish();

    state.phase = "writing the summary";
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - run_start).count();
    JsonObject summary;
    summary.set("status", "finished")
        .set("experiment", request_.experiment)
        .set("run_id", files.id)
        .set("steps", pos.step)
        .set("epochs", pos.epoch)
        .set("parameters", params)
        .set_raw("final", state.last_eval.str())
        .set("best_epoch", pos.best_epoch);
    // A best value exists only when something was evaluated: null, never a sentinel.
    const std::string best_key = has_val ? "best/val_acc" : "best/test_acc";
    if (pos.best_epoch >= 0)
      summary.set(best_key, pos.best_metric);
    else
      summary.set_raw(best_key, "null");
    summary
        .set("wall_time_s", wall)
        .set("train_images_per_s", step_seconds > 0 ? static_cast<double>(batch_size) *
                                                          static_cast<double>(pos.step) / step_seconds
                                                    : 0.0)
        .set("data_time_fraction", step_seconds > 0 ? data_seconds / step_seconds : 0.0)
        .set("weights_fnv1a64", weights_fingerprint(*model));
    files.finish(summary);
    files.say("finished in " + Progress::format_duration(wall) + ": " + files.dir);
    return 0;
  }

  static EvalResult evaluate(ClassifierImpl& model, const Dataset& data, const std::string& split,
                             std::int64_t batch_size, const torch::Device& device) {
    torch::NoGradGuard no_grad;
    model.eval();
    BatchLoader loader(data, split, batch_size, /*shuffle=*/false, 0);
    double correct = 0, loss_sum = 0;
    for (std::int64_t i = 0; i < loader.batches_per_epoch(); ++i) {
      auto [images, labels] = loader.batch(0, i, /*augment=*/false);
      images = images.to(device);
      labels = labels.to(device);
      const torch::Tensor logits = model.forward(images);
      loss_sum += torch::nn::functional::cross_entropy(
                      logits, labels, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
                      .item<double>();
      correct += logits.argmax(1).eq(labels).sum().item<double>();
    }
    model.train();
    const double n = static_cast<double>(loader.size());
    return {correct / n, loss_sum / n};
  }

  // A checksum over every parameter and buffer, in name order: equal iff bit-identical.
  static std::string weights_fingerprint(const torch::nn::Module& model) {
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

  static int diverged(RunFiles& files, std::int64_t step, double loss) {
    const std::string status = "diverged at step " + std::to_string(step + 1);
    files.metrics.append_line(JsonObject().set("step", step + 1).set("loss", loss).set("diverged", true).str());
    files.finish(JsonObject().set("status", status).set("run_id", files.id));
    files.warn(status + " (loss " + format_double(loss) + "); " +
               (file_exists(files.checkpoint("last")) ? "the last good checkpoint is kept in " + files.dir
                                : "no checkpoint was written before it (" + files.dir + ")"));
    return 3;
  }

  RunRequest request_;
};

// ---- Checks before anything runs (validate_experiment: show, run, every sweep point) ---------

// A diagnostic at a config value, with its origin when the config sets it.
Diagnostic at_value(const ConfigNode& config, const std::string& section, const std::string& key,
                    std::string message, std::vector<std::string> hints) {
  const ConfigNode* s = config.find(section);
  const ConfigNode* v = s && s->is_map() ? s->find(key) : nullptr;
  return Diagnostic{v ? v->source() : (s ? s->source() : Source{}), section + "." + key, std::move(message),
                    std::move(hints)};
}

// A run must take optimizer steps and have something to test on.
void check_splits(const ConfigNode& config, const ParamReader& root, const DatasetPlan& plan, DiagnosticSink& sink) {
  static const Schema& trainer_schema = *classify_schema().find("trainer")->section;
  const ParamReader trainer(root.get_node("trainer"), trainer_schema, "trainer");
  const std::int64_t train = plan.split_sizes.at("train"), test = plan.split_sizes.at("test");
  const std::int64_t batch = trainer.get_int("batch_size");
  const std::string hint_data = "more training data: dataset.limit_train (0 = all), a smaller dataset.val_size";
  if (train == 0)
    sink.add(at_value(config, "dataset", "limit_train", "the training split is empty: nothing to train on", {hint_data}));
  else if (batch > train)
    sink.add(at_value(config, "trainer", "batch_size",
                      "batch_size " + std::to_string(batch) + " is larger than the training split (" +
                          std::to_string(train) + " images): no optimizer step would run (the last partial "
                                                   "batch of an epoch is dropped)",
                      {"use trainer.batch_size <= " + std::to_string(train) + ", or " + hint_data}));
  if (test == 0) sink.add(at_value(config, "dataset", "limit_test", "the test split is empty: nothing to evaluate", {}));
}

// The model must build: every rule between values a factory checks (heads divide the width,
// the patch divides the image). Built once per distinct model, head and data shape (a sweep
// over seeds and learning rates builds one model), without touching the global RNG.
void check_model_builds(const ConfigNode& config, const ParamReader& root, const DatasetInfo& info,
                        DiagnosticSink& sink) {
  static std::map<std::string, std::vector<Diagnostic>> verdicts;
  const ConfigNode model = root.get_node("model"), head = root.get_node("head");
  const std::string key = dump_yaml(model) + "\n---\n" + dump_yaml(head) + "\n---\n" +
                          std::to_string(info.channels) + "x" + std::to_string(info.height) + "x" +
                          std::to_string(info.width) + "/" + std::to_string(info.num_classes);
  auto found = verdicts.find(key);
  if (found == verdicts.end()) {
    std::vector<Diagnostic> problems;
    auto generator = at::detail::getDefaultCPUGenerator();
    const torch::Tensor rng_state = generator.get_state();
    try {
      torch::NoGradGuard no_grad;
      build_classifier(model, head, info);
    } catch (const ConfigError& e) {
      problems = e.diagnostics();
    } catch (const std::exception& e) {
      const ConfigNode* m = config.find("model");
      problems.push_back(Diagnostic{m ? m->source() : Source{}, "model",
                                    (is_out_of_memory(e) ? "the model does not fit in memory: " : "the model cannot be built: ") +
                                        describe_failure(e, ""),
                                    {}});
    }
    generator.set_state(rng_state);
    found = verdicts.emplace(key, std::move(problems)).first;
  }
  for (const Diagnostic& d : found->second) sink.add(d);
}

void check_classify(const ConfigNode& config, DiagnosticSink& sink) {
  static const Schema schema = classify_schema();
  const ParamReader root(config, schema, "");
  std::optional<DatasetPlan> plan;
  try {
    plan = plan_dataset(root.get_node("dataset"));
  } catch (const ConfigError& e) {
    sink.add(e);
    return;
  }
  if (!plan) return;  // a dataset that cannot be planned is checked when it loads
  check_splits(config, root, *plan, sink);
  check_model_builds(config, root, plan->info, sink);
}

[[maybe_unused]] const bool check_registered = register_task_check("classify", check_classify);

BLOCKLAB_REGISTER(task_registry(),
                  EntryInfo{"classify", "supervised classification: train, validate each epoch, test", "",
                            "min_theta CE(head(backbone(x)), y) with AdamW/SGD, schedule, label smoothing",
                            classify_schema(), "{}", __FILE__},
                  [](const ConfigNode&, const RunRequest& request) -> std::unique_ptr<Task> {
                    return std::make_unique<ClassifyTask>(request);
                  });

}  // namespace
}  // namespace blocklab
