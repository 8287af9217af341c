#include "experiments/tasks/supervised.h"

#include <map>
#include <optional>

#include "blocks/common/layer_error.h"
#include "experiments/failure.h"
#include "experiments/model_builder.h"
#include "experiments/training/loop.h"
#include "registry/yaml_io.h"

namespace blocklab {

Schema supervised_schema(const SupervisedDefaults& defaults, const std::function<void(Schema&)>& trainer_keys) {
  Schema s;
  s.add_component("model", "model", defaults.model,
                  "the network: stem -> stack -> norm -> pool -> head (blocks/model.h), or a whole-network model");
  s.add_component("head", "head", defaults.head, "features to outputs");
  s.add_component("dataset", "dataset", defaults.dataset, "data, splits and augmentation");
  add_loop_sections(s, loop_trainer_schema(defaults.examples, trainer_keys));
  return s;
}

SupervisedHooks::SupervisedHooks(const TaskContext& context, const Schema& schema, bool augment)
    : root_(context.config, schema, ""),
      trainer_(root_.get_node("trainer"), *schema.find("trainer")->section, "trainer"),
      settings_(context.settings),
      device_(context.device),
      dataset_(dataset_registry().create(root_.get_node("dataset"), DatasetArgs{context.seed})),
      info_(dataset_->info()),
      train_(*dataset_, "train", settings_.batch_size, /*shuffle=*/true, context.seed, /*drop_last=*/true),
      augment_(augment) {}

std::shared_ptr<torch::nn::Module> SupervisedHooks::build_model() {
  model_ = blocklab::build_model(root_.get_node("model"), root_.get_node("head"), info_);
  return model_;
}

Batch SupervisedHooks::train_batch(std::int64_t epoch, std::int64_t index) {
  auto [inputs, targets] = train_.batch(epoch, index, augment_);
  return {inputs, targets, train_.lengths(epoch, index)};
}

torch::Tensor SupervisedHooks::predict(const Batch& batch) const {
  return model_->forward(batch.inputs, nullptr, batch.lengths);
}

void SupervisedHooks::for_each_batch(const std::string& split, const std::function<void(const Batch&)>& visit) const {
  BatchLoader loader(*dataset_, split, settings_.eval_batch_size, /*shuffle=*/false, 0);
  for (std::int64_t i = 0; i < loader.batches_per_epoch(); ++i) {
    auto [inputs, targets] = loader.batch(0, i, /*augment=*/false);
    torch::Tensor lengths = loader.lengths(0, i);
    visit(Batch{inputs.to(device_), targets.to(device_), lengths.defined() ? lengths.to(device_) : lengths});
  }
}

// ---- Checks before anything runs ------------------------------------------------------------

namespace {

// A diagnostic at a config value, with its origin when the config sets it.
Diagnostic at_value(const ConfigNode& config, const std::string& section, const std::string& key,
                    std::string message, std::vector<std::string> hints) {
  const ConfigNode* s = config.find(section);
  const ConfigNode* v = s && s->is_map() && !key.empty() ? s->find(key) : nullptr;
  return Diagnostic{v ? v->source() : (s ? s->source() : Source{}), key.empty() ? section : section + "." + key,
                    std::move(message), std::move(hints)};
}

// A run must take optimizer steps and have something to test on.
void check_splits(const ConfigNode& config, const Schema& schema, const std::string& examples, const DatasetPlan& plan,
                  DiagnosticSink& sink) {
  const std::int64_t train = plan.split_sizes.at("train"), test = plan.split_sizes.at("test");
  const std::int64_t batch = read_loop_settings(config, schema).batch_size;
  if (train == 0)
    sink.add(at_value(config, "dataset", plan.train_size_option, "the training split is empty: nothing to train on",
                      {plan.more_data_hint}));
  else if (batch > train)
    sink.add(at_value(config, "trainer", "batch_size",
                      "batch_size " + std::to_string(batch) + " is larger than the training split (" +
                          std::to_string(train) + " " + examples + "): no optimizer step would run (the last partial batch of an epoch is dropped)",
                      {"use trainer.batch_size <= " + std::to_string(train) + ", or " + plan.more_data_hint}));
  if (test == 0) sink.add(at_value(config, "dataset", "limit_test", "the test split is empty: nothing to evaluate", {}));
}

// The data shape a model is sized from, as a cache key.
std::string shape_key(const DatasetInfo& i) {
  return std::to_string(i.channels) + "x" + std::to_string(i.height) + "x" + std::to_string(i.width) + "/L" +
         std::to_string(i.length) + "/V" + std::to_string(i.vocabulary) + "/H" + std::to_string(i.horizon) + "/" +
         std::to_string(i.outputs());
}

// The model must build: every rule between values a factory checks (heads divide the width,
// the patch divides the image). Built once per distinct model, head and data shape (a sweep
// over seeds and learning rates builds one model), without touching the global RNG.
void check_model_builds(const ConfigNode& config, const ParamReader& root, const DatasetInfo& info,
                        DiagnosticSink& sink) {
  static std::map<std::string, std::vector<Diagnostic>> verdicts;
  const ConfigNode model = root.get_node("model"), head = root.get_node("head");
  const std::string key = dump_yaml(model) + "\n---\n" + dump_yaml(head) + "\n---\n" + shape_key(info);
  auto found = verdicts.find(key);
  if (found == verdicts.end()) {
    std::vector<Diagnostic> problems;
    auto generator = at::detail::getDefaultCPUGenerator();
    const torch::Tensor rng_state = generator.get_state();
    try {
      torch::NoGradGuard no_grad;
      build_model(model, head, info);
    } catch (const ConfigError& e) {
      problems = e.diagnostics();
    } catch (const std::exception& e) {
      const ConfigNode* m = config.find("model");
      problems.push_back(Diagnostic{m ? m->source() : Source{}, "model",
                                    (is_out_of_memory(e) ? "the model does not fit in memory: "
                                                         : "the model cannot be built: ") +
                                        describe_failure(e, ""),
                                    {}});
    }
    generator.set_state(rng_state);
    found = verdicts.emplace(key, std::move(problems)).first;
  }
  for (const Diagnostic& d : found->second) sink.add(d);
}

}  // namespace

void check_supervised(const ConfigNode& config, const Schema& schema, const std::string& examples,
                      DiagnosticSink& sink) {
  const ParamReader root(config, schema, "");
  std::optional<DatasetPlan> plan;
  try {
    plan = plan_dataset(root.get_node("dataset"));
  } catch (const ConfigError& e) {
    sink.add(e);
    return;
  }
  if (!plan) return;  // a dataset that cannot be planned is checked when it loads
  check_splits(config, schema, examples, *plan, sink);
  check_model_builds(config, root, plan->info, sink);
}

}  // namespace blocklab
