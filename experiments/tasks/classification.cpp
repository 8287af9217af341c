#include "experiments/tasks/classification.h"

#include <cstdio>

#include "registry/yaml_io.h"

namespace blocklab {

Schema classification_schema(const SupervisedDefaults& defaults, const std::function<void(Schema&)>& trainer_keys) {
  return supervised_schema(defaults, [trainer_keys](Schema& t) {
    auto& ls = t.add_float("label_smoothing", 0.0, "label smoothing of the cross-entropy");
    ls.min = 0.0, ls.max = 1.0;
    if (trainer_keys) trainer_keys(t);
  });
}

ClassificationHooks::ClassificationHooks(const TaskContext& context, const Schema& schema,
                                         const ClassificationTask& task)
    : SupervisedHooks(context, schema, task.augment),
      examples_(task.defaults.examples),
      has_val_(has_split("val")),
      label_smoothing_(trainer_.get_float("label_smoothing")) {}

torch::Tensor ClassificationHooks::loss(const Batch& batch) {
  return torch::nn::functional::cross_entropy(
      predict(batch), batch.targets,
      torch::nn::functional::CrossEntropyFuncOptions().label_smoothing(label_smoothing_));
}

Evaluation ClassificationHooks::evaluate(JsonObject& line, const PhaseNote& note_phase) {
  Evaluation result;
  std::string val_text;
  if (has_val_) {
    note_phase("evaluation on val");
    const SplitResult v = evaluate_split("val");
    line.set("val/acc", v.accuracy).set("val/loss", v.loss);
    result.selection = v.accuracy;
    val_text = "val acc " + format_double(v.accuracy) + ", ";
  }
  note_phase("evaluation on test");
  const SplitResult t = evaluate_split("test");
  line.set("test/acc", t.accuracy).set("test/loss", t.loss);
  if (!has_val_) result.selection = t.accuracy;
  char text[160];
  std::snprintf(text, sizeof text, "%stest acc %.4f loss %.4f", val_text.c_str(), t.accuracy, t.loss);
  result.text = text;
  return result;
}

ClassificationHooks::SplitResult ClassificationHooks::evaluate_split(const std::string& split) const {
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

TaskRegistry::Factory classification_factory(const Schema& schema, const ClassificationTask& task) {
  return loop_task_factory(schema, [&schema, task](const TaskContext& context) -> std::unique_ptr<TaskHooks> {
    return std::make_unique<ClassificationHooks>(context, schema, task);
  });
}

TaskCheck classification_check(const Schema& schema, const ClassificationTask& task) {
  return [&schema, examples = task.defaults.examples](const ConfigNode& config, DiagnosticSink& sink) {
    check_supervised(config, schema, examples, sink);
  };
}

}  // namespace blocklab
