// task `recall`: synthetic recall tasks (synthetic/mqar, synthetic/induction,
// synthetic/selective-copy) on the training loop: a per-token model (pool: none, a linear head
// on every token) trained with cross-entropy at the scored positions only, as zoology trains
// MQAR (Arora et al. 2023, arXiv:2312.04927: labels -100 elsewhere); accuracy over the scored
// positions on val, test and every extra test split (MQAR's grid "test/L64-kv4"), plus the
// mean accuracy over those splits; the best is by val accuracy.
#include <cstdio>

#include "experiments/tasks/supervised.h"
#include "experiments/tasks/token_score.h"
#include "experiments/training/loop.h"
#include "registry/yaml_io.h"

namespace blocklab {

namespace {

const SupervisedDefaults kRecallDefaults{"sequences", "model/composed", "linear", "synthetic/mqar"};

const Schema& recall_schema() {
  static const Schema schema = supervised_schema(kRecallDefaults);
  return schema;
}

// The recall hooks: padded token batches cut to their longest row, cross-entropy and accuracy
// at the scored positions.
class RecallHooks : public SupervisedHooks {
 public:
  explicit RecallHooks(const TaskContext& context)
      : SupervisedHooks(context, recall_schema(), /*augment=*/false), has_val_(has_split("val")) {}

  Batch train_batch(std::int64_t epoch, std::int64_t index) override {
    return trim_padding(SupervisedHooks::train_batch(epoch, index));
  }

  torch::Tensor loss(const Batch& batch) override { return scored_cross_entropy(predict(batch), batch.targets); }

  Evaluation evaluate(JsonObject& line, const PhaseNote& note_phase) override {
    Evaluation result;
    std::string text;
    if (has_val_) {
      const TokenScore v = evaluate_split("val", line, note_phase);
      result.selection = v.accuracy();
      text = "val acc " + format_double(v.accuracy()) + ", ";
    }
    const TokenScore t = evaluate_split("test", line, note_phase);
    if (!has_val_) result.selection = t.accuracy();
    char buf[160];
    std::snprintf(buf, sizeof buf, "%stest acc %.4f loss %.4f", text.c_str(), t.accuracy(), t.loss());
    result.text = buf;
    if (!info_.extra_test_splits.empty()) {
      double sum = 0;
      for (const std::string& split : info_.extra_test_splits)
        sum += evaluate_split(split, line, note_phase).accuracy();
      const double mean = sum / static_cast<double>(info_.extra_test_splits.size());
      line.set("test/grid_mean_acc", mean);
      std::snprintf(buf, sizeof buf, ", mean over %zu test splits %.4f", info_.extra_test_splits.size(), mean);
      result.text += buf;
    }
    return result;
  }

  Selection selection() const override { return {has_val_ ? "val_acc" : "test_acc", /*higher_is_better=*/true}; }
  std::string examples_name() const override { return "sequences"; }

 private:
  // Accuracy and loss over the scored positions of a split, into `line` as <split>/acc, /loss.
  TokenScore evaluate_split(const std::string& split, JsonObject& line, const PhaseNote& note_phase) const {
    note_phase("evaluation on " + split);
    TokenScore total;
    for_each_batch(split, [&](const Batch& batch) {
      const Batch b = trim_padding(batch);
      total += score_tokens(predict(b), b.targets);
    });
    line.set(split + "/acc", total.accuracy()).set(split + "/loss", total.loss());
    return total;
  }

  bool has_val_;
};

// The model must predict a token at every position: pool none.
void check_recall(const ConfigNode& config, DiagnosticSink& sink) {
  check_supervised(config, recall_schema(), kRecallDefaults.examples, sink);
  const ConfigNode* pool = config.find_path("model.pool");
  if (pool && pool->is_scalar() && pool->text() != "none")
    sink.add(Diagnostic{pool->source(),
                        "model.pool",
                        "recall predicts a token at every position, but model.pool is '" + pool->text() + "'",
                        {"use model.pool=none (model/decoder_small)"}});
}

[[maybe_unused]] const bool BLOCKLAB_UNIQUE(check_registered_) = register_task_check("recall", check_recall);

BLOCKLAB_REGISTER(task_registry(),
                  BLOCKLAB_ENTRY("recall")
                      .summary("synthetic recall (MQAR, induction heads, selective copying): per-token prediction "
                               "scored at the query/answer positions only")
                      .paper("Zoology: Measuring and Improving Recall in Efficient Language Models (Arora et al. "
                             "2023), arXiv:2312.04927")
                      .equation("min_theta sum_{t: y_t != -100} CE(head(stack(stem(x)))_t, y_t) / #{t: y_t != -100}")
                      .schema(recall_schema())
                      .example("{}"),
                  loop_task_factory(recall_schema(), [](const TaskContext& context) -> std::unique_ptr<TaskHooks> {
                    return std::make_unique<RecallHooks>(context);
                  }));

}  // namespace
}  // namespace blocklab
