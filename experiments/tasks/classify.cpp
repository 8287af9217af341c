// task `classify`: supervised image classification (train, validate, test), as hooks of the
// training loop (experiments/training/loop.h): images and labels in, cross-entropy with label
// smoothing, accuracy and loss on val (when the dataset has one) and test each epoch.
#include <cstdio>
#include <map>
#include <optional>

#include "experiments/tasks/supervised.h"
#include "experiments/training/loop.h"
#include "registry/yaml_io.h"

namespace blocklab {
namespace {

const SupervisedDefaults kDefaults{"images", "vit", "linear", "fashion-mnist"};

const Schema& task_schema() {
  static const Schema schema = supervised_schema(kDefaults, [](Schema& t) {
    auto& ls = t.add_float("label_smoothing", 0.0, "label smoothing of the cross-entropy");
    ls.min = 0.0, ls.max = 1.0;
  });
  return schema;
}

struct EvalResult {
  double accuracy = 0, loss = 0;
};

// The classify hooks: batches of images and labels, cross-entropy with label smoothing,
// accuracy and loss on val (when there is one) and test; the best is by accuracy.
class ClassifyHooks : public SupervisedHooks {
 public:
  explicit ClassifyHooks(const TaskContext& context)
      : SupervisedHooks(context, task_schema(), /*augment=*/true),
        has_val_(has_split("val")),
        label_smoothing_(trainer_.get_float("label_smoothing")) {}

  torch::Tensor loss(const Batch& batch) override {
    return torch::nn::functional::cross_entropy(
        predict(batch), batch.targets,
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
    double correct = 0, loss_sum = 0;
    for_each_batch(split, [&](const Batch& batch) {
      const torch::Tensor logits = predict(batch);
      loss_sum += torch::nn::functional::cross_entropy(
                      logits, batch.targets, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
                      .item<double>();
      correct += logits.argmax(1).eq(batch.targets).sum().item<double>();
    });
    const double n = static_cast<double>(split_size(split));
    return {correct / n, loss_sum / n};
  }

  bool has_val_;
  double label_smoothing_;
};

void check_classify(const ConfigNode& config, DiagnosticSink& sink) {
  check_supervised(config, task_schema(), kDefaults.examples, sink);
}

[[maybe_unused]] const bool check_registered = register_task_check("classify", check_classify);

BLOCKLAB_REGISTER(task_registry(),
                  BLOCKLAB_ENTRY("classify")
                      .summary("supervised classification: train, validate each epoch, test")
                      .equation("min_theta CE(head(pool(stack(stem(x)))), y) with AdamW/SGD, schedule, label smoothing")
                      .schema(task_schema())
                      .example("{}"),
                  loop_task_factory(task_schema(), [](const TaskContext& context) -> std::unique_ptr<TaskHooks> {
                    return std::make_unique<ClassifyHooks>(context);
                  }));

}  // namespace
}  // namespace blocklab
