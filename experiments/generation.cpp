#include "experiments/generation.h"

#include <algorithm>
#include <limits>

namespace blocklab {

namespace {

// The next token from the logits [V] of the last position.
std::int64_t sample(const torch::Tensor& logits, const SamplingOptions& o, at::Generator& generator) {
  torch::Tensor l = logits.to(torch::kFloat64);
  if (o.temperature <= 0.0) return l.argmax().item<std::int64_t>();
  l = l / o.temperature;
  if (o.top_k > 0 && o.top_k < l.size(0)) {
    const torch::Tensor kth = std::get<0>(l.topk(o.top_k)).min();
    l = l.masked_fill(l.lt(kth), -std::numeric_limits<double>::infinity());
  }
  return torch::multinomial(torch::softmax(l, 0), 1, /*replacement=*/false, generator).item<std::int64_t>();
}

torch::Tensor ids_tensor(const std::vector<std::int64_t>& ids, std::size_t from) {
  return torch::tensor(std::vector<std::int64_t>(ids.begin() + static_cast<std::ptrdiff_t>(from), ids.end()),
                       torch::kLong)
      .unsqueeze(0);
}

}  // namespace

bool steps_for(ModelImpl& model, std::int64_t total) {
  if (!model.recurrent()) return false;
  const std::int64_t limit = model.stem().step_limit();
  return limit == 0 || total <= limit;
}

Generated generate_tokens(ModelImpl& model, const std::vector<std::int64_t>& prompt, std::int64_t context,
                          const SamplingOptions& o, GenerationPath path) {
  TORCH_CHECK(!prompt.empty(), "generate: the prompt is empty");
  TORCH_CHECK(context >= 1, "generate: context must be >= 1");
  torch::NoGradGuard no_grad;
  model.eval();
  auto generator = at::make_generator<at::CPUGeneratorImpl>(o.seed);
  Generated out;
  out.stepped = path == GenerationPath::step || (path == GenerationPath::automatic &&
                                                 steps_for(model, static_cast<std::int64_t>(prompt.size()) + o.tokens));
  std::vector<std::int64_t> ids = prompt;
  if (out.stepped) {
    const torch::Tensor any = model.parameters().front();
    ModelImpl::State state = model.init_state(1, any.options());
    torch::Tensor logits;
    for (std::int64_t id : prompt) logits = model.step(torch::full({1}, id, torch::kLong), state);
    for (std::int64_t i = 0; i < o.tokens; ++i) {
      ids.push_back(sample(logits[0], o, generator));
      if (i + 1 < o.tokens) logits = model.step(torch::full({1}, ids.back(), torch::kLong), state);
    }
  } else {
    for (std::int64_t i = 0; i < o.tokens; ++i) {
      const std::size_t from = ids.size() > static_cast<std::size_t>(context) ? ids.size() - context : 0;
      const torch::Tensor logits = model.forward(ids_tensor(ids, from));
      ids.push_back(sample(logits[0][-1], o, generator));
    }
  }
  out.ids.assign(ids.begin() + static_cast<std::ptrdiff_t>(prompt.size()), ids.end());
  return out;
}

}  // namespace blocklab
