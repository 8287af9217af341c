// Test-only task `test/regress`: regression on synthetic data, y = tanh(x . w) + noise, with a
// small MLP and mean squared error. It proves the training loop generic: real-valued targets,
// its own model and data, a "best" that is the lowest test error. Linked into blocklab_tests
// and into blocklab_test_tasks (blocklab plus the test tasks), which the loop contract runs.
#include <chrono>
#include <cstdio>
#include <thread>

#include <ATen/CPUGeneratorImpl.h>

#include "datasets/dataset.h"
#include "experiments/training/loop.h"

namespace blocklab::testing {
namespace {

Schema regress_schema() {
  Schema data;
  data.add_int("train", 512, "training examples").min = 1;
  data.add_int("test", 128, "test examples").min = 1;
  data.add_int("features", 8, "inputs per example").min = 1;
  data.add_float("noise", 0.1, "standard deviation of the target noise").min = 0.0;
  data.add_int("delay_ms", 0, "wait per training batch (tests: time to signal a run mid-way)").min = 0;
  Schema model;
  model.add_int("hidden", 32, "hidden units").min = 1;
  auto& p = model.add_float("dropout", 0.1, "dropout after the hidden layer");
  p.min = 0.0, p.max = 0.9;
  Schema s;
  s.add_section("data", data, "synthetic data, generated from the run seed");
  s.add_section("model", model, "a one-hidden-layer MLP");
  add_loop_sections(s, loop_trainer_schema("examples"));
  return s;
}

const Schema& task_schema() {
  static const Schema schema = regress_schema();
  return schema;
}

struct MlpImpl : torch::nn::Module {
  MlpImpl(std::int64_t in, std::int64_t hidden, double dropout)
      : hidden_layer(register_module("hidden", torch::nn::Linear(in, hidden))),
        out(register_module("out", torch::nn::Linear(hidden, 1))),
        drop(register_module("drop", torch::nn::Dropout(dropout))) {}
  torch::Tensor forward(const torch::Tensor& x) { return out(drop(torch::tanh(hidden_layer(x)))).squeeze(1); }
  torch::nn::Linear hidden_layer, out;
  torch::nn::Dropout drop;
};
TORCH_MODULE(Mlp);

// x ~ N(0, 1) [n, features], y = tanh(x . w) + noise * N(0, 1), all from one seeded generator.
struct SyntheticData {
  torch::Tensor train_x, train_y, test_x, test_y;
  SyntheticData(const ParamReader& data, std::uint64_t seed) {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(derive_seed(seed, 0x7e57));
    const std::int64_t features = data.get_int("features");
    const torch::Tensor w = torch::randn({features}, gen);
    auto draw = [&](std::int64_t n, torch::Tensor& x, torch::Tensor& y) {
      x = torch::randn({n, features}, gen);
      y = torch::tanh(x.matmul(w)) + data.get_float("noise") * torch::randn({n}, gen);
    };
    draw(data.get_int("train"), train_x, train_y);
    draw(data.get_int("test"), test_x, test_y);
  }
  std::string fingerprint() const {
    std::uint64_t h = 0xcbf29ce484222325ULL;
    for (const torch::Tensor& t : {train_x, train_y, test_x, test_y})
      h = fnv1a64(t.data_ptr(), static_cast<std::size_t>(t.numel() * t.element_size()), h);
    return hex64(h);
  }
};

class RegressHooks : public TaskHooks {
 public:
  explicit RegressHooks(const TaskContext& context)
      : root_(context.config, task_schema(), ""),
        data_params_(root_.get_node("data"), *task_schema().find("data")->section, "data"),
        context_seed_(context.seed),
        settings_(context.settings),
        device_(context.device),
        data_(data_params_, context.seed) {}

  std::string data_fingerprint() const override { return data_.fingerprint(); }

  std::shared_ptr<torch::nn::Module> build_model() override {
    const ParamReader m(root_.get_node("model"), *task_schema().find("model")->section, "model");
    model_ = Mlp(data_params_.get_int("features"), m.get_int("hidden"), m.get_float("dropout"));
    return model_.ptr();
  }

  std::int64_t batches_per_epoch() const override { return data_.train_x.size(0) / settings_.batch_size; }

  Batch train_batch(std::int64_t epoch, std::int64_t index) override {
    if (const auto delay = data_params_.get_int("delay_ms")) std::this_thread::sleep_for(std::chrono::milliseconds(delay));
    auto gen = at::make_generator<at::CPUGeneratorImpl>(derive_seed(context_seed_, 0x0dde, static_cast<std::uint64_t>(epoch)));
    const torch::Tensor order = torch::randperm(data_.train_x.size(0), gen);
    const torch::Tensor rows = order.narrow(0, index * settings_.batch_size, settings_.batch_size);
    return {data_.train_x.index_select(0, rows), data_.train_y.index_select(0, rows), {}};
  }

  torch::Tensor loss(const Batch& batch) override {
    return torch::nn::functional::mse_loss(model_->forward(batch.inputs), batch.targets);
  }

  Evaluation evaluate(JsonObject& line, const PhaseNote& note_phase) override {
    note_phase("evaluation on test");
    const double mse =
        torch::nn::functional::mse_loss(model_->forward(data_.test_x.to(device_)), data_.test_y.to(device_))
            .item<double>();
    line.set("test/mse", mse);
    char text[64];
    std::snprintf(text, sizeof text, "test mse %.6f", mse);
    return {mse, text};
  }

  Selection selection() const override { return {"test_mse", /*higher_is_better=*/false}; }
  std::string examples_name() const override { return "examples"; }

 private:
  const ParamReader root_, data_params_;
  std::uint64_t context_seed_;
  const LoopSettings& settings_;
  torch::Device device_;
  SyntheticData data_;
  Mlp model_{nullptr};
};

BLOCKLAB_REGISTER(task_registry(),
                  EntryInfo{"test/regress", "test-only regression on synthetic data (the loop contract)", "",
                            "min_theta MSE(mlp(x), y)", regress_schema(), "{}", __FILE__},
                  loop_task_factory(task_schema(), [](const TaskContext& context) -> std::unique_ptr<TaskHooks> {
                    return std::make_unique<RegressHooks>(context);
                  }));

}  // namespace
}  // namespace blocklab::testing
