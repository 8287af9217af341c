// task `lm`: next-token language modelling on the shared training loop (experiments/tasks/lm.h):
// windows of token ids in, the next token at every position out; the cross-entropy over every
// scored position; bits per token, loss and perplexity on val (when the dataset has one) and
// test; the best checkpoint by val bits per token (lower is better).
#include "experiments/tasks/lm.h"

#include <cmath>
#include <cstdio>

#include "experiments/tasks/supervised.h"
#include "experiments/tasks/token_score.h"
#include "experiments/training/loop.h"

namespace blocklab {

TokenLoss& TokenLoss::operator+=(const TokenLoss& o) {
  nats += o.nats;
  tokens += o.tokens;
  return *this;
}

double TokenLoss::loss() const { return tokens > 0 ? nats / static_cast<double>(tokens) : 0.0; }
double TokenLoss::bits() const { return loss() / std::log(2.0); }
double TokenLoss::perplexity() const { return std::exp(loss()); }

TokenLoss token_loss(const torch::Tensor& logits, const torch::Tensor& targets) {
  TORCH_CHECK(logits.dim() == targets.dim() + 1 && logits.sizes().slice(0, targets.dim()) == targets.sizes(),
              "lm: logits ", logits.sizes(), " do not match targets ", targets.sizes());
  const double nats = summed_cross_entropy(logits.to(torch::kFloat64), targets).item<double>();
  return {nats, targets.ne(kIgnoreTarget).sum().item<std::int64_t>()};
}

namespace {

const SupervisedDefaults kLmDefaults{"windows", "model/composed", "linear", "text/kjv"};

const Schema& lm_schema() {
  static const Schema schema = supervised_schema(kLmDefaults);
  return schema;
}

// The lm hooks: windows of ids and their next tokens, mean cross-entropy over the scored
// positions; bits per token, loss and perplexity on val and test.
class LmHooks : public SupervisedHooks {
 public:
  explicit LmHooks(const TaskContext& context)
      : SupervisedHooks(context, lm_schema(), /*augment=*/false), has_val_(has_split("val")) {}

  torch::Tensor loss(const Batch& batch) override { return scored_cross_entropy(predict(batch), batch.targets); }

  Evaluation evaluate(JsonObject& line, const PhaseNote& note_phase) override {
    Evaluation result;
    std::string val_text;
    if (has_val_) {
      note_phase("evaluation on val");
      const TokenLoss v = evaluate_split("val");
      line.set("val/bpc", v.bits()).set("val/loss", v.loss());
      result.selection = v.bits();
      val_text = "val bpc " + format_double(v.bits()) + ", ";
    }
    note_phase("evaluation on test");
    const TokenLoss t = evaluate_split("test");
    line.set("test/bpc", t.bits()).set("test/ppl", t.perplexity()).set("test/loss", t.loss());
    if (!has_val_) result.selection = t.bits();
    char text[160];
    std::snprintf(text, sizeof text, "%stest bpc %.4f ppl %.3f", val_text.c_str(), t.bits(), t.perplexity());
    result.text = text;
    return result;
  }

  Selection selection() const override { return {has_val_ ? "val_bpc" : "test_bpc", /*higher_is_better=*/false}; }
  std::string examples_name() const override { return "tokens"; }
  std::int64_t examples_per_row() const override { return info_.length; }

 private:
  TokenLoss evaluate_split(const std::string& split) const {
    TokenLoss total;
    for_each_batch(split, [&](const Batch& batch) { total += token_loss(predict(batch), batch.targets); });
    return total;
  }

  bool has_val_;
};

void check_lm(const ConfigNode& config, DiagnosticSink& sink) {
  check_supervised(config, lm_schema(), kLmDefaults.examples, sink);
}

[[maybe_unused]] const bool BLOCKLAB_UNIQUE(check_registered_) = register_task_check("lm", check_lm);

BLOCKLAB_REGISTER(task_registry(),
                  BLOCKLAB_ENTRY("lm")
                      .summary("next-token language modelling (causal): bits per token on val and test")
                      .paper("Generating Sequences With Recurrent Neural Networks (Graves, 2013), arXiv:1308.0850 "
                             "(bits per character)")
                      .equation("min_theta mean_t -ln p(x_{t+1} | x_<=t); bpc = loss / ln 2, ppl = exp(loss)")
                      .schema(lm_schema())
                      .example("{}"),
                  loop_task_factory(lm_schema(), [](const TaskContext& context) -> std::unique_ptr<TaskHooks> {
                    return std::make_unique<LmHooks>(context);
                  }));

}  // namespace
}  // namespace blocklab
