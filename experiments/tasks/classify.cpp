// task `classify`: supervised image classification (train, validate, test), as hooks of the
// training loop (experiments/training/loop.h): images and labels in, cross-entropy with label
// smoothing, accuracy and loss on val (when the dataset has one) and test each epoch.
#include <cstdio>
#include <map>
#include <optional>

#include "blocks/common/layer_error.h"
#include "blocks/interfaces.h"
#include "datasets/dataset.h"
#include "experiments/classifier.h"
#include "experiments/failure.h"
#include "experiments/task.h"
#include "experiments/training/loop.h"
#include "registry/yaml_io.h"

namespace blocklab {
namespace {

Schema classify_schema() {
  Schema trainer = loop_trainer_schema("images", [](Schema& t) {
    auto& ls = t.add_float("label_smoothing", 0.0, "label smoothing of the cross-entropy");
    ls.min = 0.0, ls.max = 1.0;
  });
  Schema s;
  s.add_component("model", "model", "vit", "the network: stem -> stack -> norm -> pool (blocks/model.h)");
  s.add_component("head", "head", "linear", "features to class logits");
  s.add_component("dataset", "dataset", "fashion-mnist", "data, splits and augmentation");
  add_loop_sections(s, std::move(trainer));
  return s;
}

const Schema& task_schema() {
  static const Schema schema = classify_schema();
  return schema;
}

struct EvalResult {
  double accuracy = 0, loss = 0;
};

// The classify hooks: batches of images and labels, cross-entropy with label smoothing,
// accuracy and loss on val (when there is one) and test; the best is by accuracy.
class ClassifyHooks : public TaskHooks {
 public:
  explicit ClassifyHooks(const TaskContext& context)
      : root_(context.config, task_schema(), ""),
        settings_(context.settings),
        device_(context.device),
        dataset_(dataset_registry().create(root_.get_node("dataset"), DatasetArgs{context.seed})),
        train_(*dataset_, "train", settings_.batch_size, /*shuffle=*/true, context.seed, /*drop_last=*/true),
        has_val_(dataset_->split("val").size() > 0) {
    const ParamReader trainer(root_.get_node("trainer"), *task_schema().find("trainer")->section, "trainer");
    label_smoothing_ = trainer.get_float("label_smoothing");
  }

  std::string data_fingerprint() const override { return dataset_->fingerprint(); }

  std::shared_ptr<torch::nn::Module> build_model() override {
    model_ = build_classifier(root_.get_node("model"), root_.get_node("head"), dataset_->info());
    return model_;
  }

  std::int64_t batches_per_epoch() const override { return train_.batches_per_epoch(); }

  Batch train_batch(std::int64_t epoch, std::int64_t index) override {
    auto [images, labels] = train_.batch(epoch, index, /*augment=*/true);
    return {images, labels};
  }

  torch::Tensor loss(const Batch& batch) override {
    return torch::nn::functional::cross_entropy(
        model_->forward(batch.inputs), batch.targets,
        torch::nn::functional::CrossEntropyFuncOptions().label_smoothing(label_smoothing_));
  }

  Evaluation evaluate(JsonObject& line, const PhaseNote& note_phase) override {
    Evaluation result;
    std::string val_text;
    if (has_val_) {
      note_phase("evaluation on val");
      const EvalResult v = evaluate_split("val");
      line.set("val/acc", v.accuracy).set("val/loss", v.loss);
      result.selection = v.accuracy;
      val_text = "val acc " + format_double(v.accuracy) + ", ";
    }
    note_phase("evaluation on test");
    const EvalResult t = evaluate_split("test");
    line.set("test/acc", t.accuracy).set("test/loss", t.loss);
    if (!has_val_) result.selection = t.accuracy;
    char text[160];
    std::snprintf(text, sizeof text, "%stest acc %.4f loss %.4f", val_text.c_str(), t.accuracy, t.loss);
    result.text = text;
    return result;
  }

  Selection selection() const override { return {has_val_ ? "val_acc" : "test_acc", /*higher_is_better=*/true}; }
  std::string examples_name() const override { return "images"; }

 private:
  EvalResult evaluate_split(const std::string& split) const {
    BatchLoader loader(*dataset_, split, settings_.eval_batch_size, /*shuffle=*/false, 0);
    double correct = 0, loss_sum = 0;
    for (std::int64_t i = 0; i < loader.batches_per_epoch(); ++i) {
      auto [images, labels] = loader.batch(0, i, /*augment=*/false);
      images = images.to(device_);
      labels = labels.to(device_);
      const torch::Tensor logits = model_->forward(images);
      loss_sum += torch::nn::functional::cross_entropy(
                      logits, labels, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
                      .item<double>();
      correct += logits.argmax(1).eq(labels).sum().item<double>();
    }
    const double n = static_cast<double>(loader.size());
    return {correct / n, loss_sum / n};
  }

  const ParamReader root_;
  const LoopSettings& settings_;
  torch::Device device_;
  std::shared_ptr<Dataset> dataset_;
  BatchLoader train_;
  bool has_val_;
  double label_smoothing_ = 0;
  std::shared_ptr<ClassifierImpl> model_;
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
  const std::int64_t train = plan.split_sizes.at("train"), test = plan.split_sizes.at("test");
  const std::int64_t batch = read_loop_settings(config, task_schema()).batch_size;
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
  const ParamReader root(config, task_schema(), "");
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
                  BLOCKLAB_ENTRY("classify")
                      .summary("supervised classification: train, validate each epoch, test")
                      .equation("min_theta CE(head(pool(stack(stem(x)))), y) with AdamW/SGD, schedule, label smoothing")
                      .schema(classify_schema())
                      .example("{}"),
                  loop_task_factory(task_schema(), [](const TaskContext& context) -> std::unique_ptr<TaskHooks> {
                    return std::make_unique<ClassifyHooks>(context);
                  }));

}  // namespace
}  // namespace blocklab
