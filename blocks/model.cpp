#include "blocks/model.h"

#include <stdexcept>

#include "blocks/common/init.h"
#include "blocks/common/options.h"

namespace blocklab {

StemRegistry& stem_registry() {
  static StemRegistry r("stem", "stems: inputs -> tokens [B,N,C] with their layout (patches, token ids, series)");
  return r;
}

StackRegistry& stack_registry() {
  static StackRegistry r("stack",
                         "stacks of blocks: tokens [B,N,C] -> [B,N',C'], per-layer overrides of a default block");
  return r;
}

ModelRegistry& model_registry() {
  static ModelRegistry r("model", "models: stem -> stack -> norm -> head, from inputs to outputs");
  return r;
}

ModelImpl::ModelImpl(Stem stem, Stack stack, bool norm, Pool pool)
    : stem_(register_module("stem", std::move(stem))), stack_(register_module("stack", std::move(stack))), pool_(pool) {
  if (norm)
    norm_ = register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({stack_->out_dim()}).eps(1e-6)));
  init_vit_weights(*this);
  stem_->init_weights();
}

void ModelImpl::set_head(Head head) { head_ = register_module("head", std::move(head)); }

Tokens ModelImpl::features(const torch::Tensor& input, AttentionProbe* probe, const torch::Tensor& lengths) {
  Tokens t = stem_->forward(input, lengths);
  if (lengths.defined()) t.layout.lengths = lengths;
  return stack_->forward(std::move(t), probe);
}

torch::Tensor ModelImpl::pooled(const Tokens& t) const {
  const std::int64_t prefix = t.layout.prefix_tokens;
  switch (pool_) {
    case Pool::none:
      return t.x;
    case Pool::cls:
      return t.x.select(1, 0);
    case Pool::mean:
      break;
  }
  const torch::Tensor body = prefix > 0 ? t.x.slice(1, prefix) : t.x;
  if (!t.layout.lengths.defined()) return body.mean(1);
  // Padded sequences: the mean over each sequence's valid body tokens.
  const auto n = body.size(1);
  const torch::Tensor valid = (t.layout.lengths - prefix).clamp_min(1).to(body.device());
  const torch::Tensor mask = torch::arange(n, valid.options()).unsqueeze(0).lt(valid.unsqueeze(1));
  return (body * mask.unsqueeze(-1).to(body.dtype())).sum(1) / valid.unsqueeze(1).to(body.dtype());
}

torch::Tensor ModelImpl::forward(const torch::Tensor& input, AttentionProbe* probe, const torch::Tensor& lengths) {
  TORCH_CHECK(head_, "model: no head (set_head was not called)");
  torch::Tensor x = pooled(features(input, probe, lengths));
  if (norm_) x = norm_->forward(x);
  return head_->forward(x);
}

// ---- the recurrent form -----------------------------------------------------------------------

torch::Tensor StemImpl::step(const torch::Tensor&, std::int64_t) {
  throw std::logic_error(name() + " has no recurrent form (it does not embed one token at a time)");
}

std::vector<MixerState> StackImpl::init_state(std::int64_t, const torch::TensorOptions&) {
  throw std::logic_error(name() + " has no recurrent form");
}

torch::Tensor StackImpl::step(const torch::Tensor&, std::vector<MixerState>&, MixerContext) {
  throw std::logic_error(name() + " has no recurrent form");
}

bool ModelImpl::recurrent() const { return pool_ == Pool::none && stem_->can_step() && stack_->recurrent(); }

ModelImpl::State ModelImpl::init_state(std::int64_t batch, const torch::TensorOptions& options) {
  TORCH_CHECK(recurrent(), "model: no recurrent form (pool none, a stem that steps and recurrent layers needed)");
  return State{stack_->init_state(batch, options), 0};
}

torch::Tensor ModelImpl::step(const torch::Tensor& ids_t, State& state) {
  TORCH_CHECK(head_, "model: no head (set_head was not called)");
  MixerContext ctx = stem_->layout();
  ctx.positions = torch::full({1}, state.position, torch::TensorOptions(torch::kLong).device(ids_t.device()));
  torch::Tensor x = stack_->step(stem_->step(ids_t, state.position), state.layers, ctx);
  ++state.position;
  if (norm_) x = norm_->forward(x);
  return head_->forward(x);
}

Pool pool_from(const std::string& name) { return name == "cls" ? Pool::cls : name == "mean" ? Pool::mean : Pool::none; }

Model assemble_model(Stem stem, Stack stack, bool norm, Pool pool, const ModelArgs& args, const ConfigNode& params) {
  if (pool == Pool::cls && stem->layout().prefix_tokens == 0)
    config_fail(params, "pool", "pool: cls reads the class token, but the stem makes none",
                {"give the stem a class token (stem/patch: class_token: true), or use pool: mean"});
  auto model = std::make_shared<ModelImpl>(std::move(stem), std::move(stack), norm, pool);
  const std::int64_t per_token = pool == Pool::none ? model->stack().out_tokens() : 0;
  Head head = head_registry().create(args.head,
                                     HeadArgs{model->stack().out_dim(), args.outputs, per_token, args.inputs.horizon});
  if (auto* ties = dynamic_cast<TiesEmbedding*>(head.get()); ties && ties->wants_tie()) {
    const torch::Tensor embedding = model->stem().embedding();
    if (!embedding.defined())
      throw ConfigError("the head ties its weight to the stem's token embedding, but the stem has none",
                        args.head.source(), "head.tie", {"use stem/tokens, or tie: false"});
    ties->tie(embedding);
  }
  model->set_head(std::move(head));
  return model;
}

// ---- model/composed: stem, stack, norm, pool and the default block, each configured --------------

namespace {

const Schema& composed_schema() {
  static const Schema schema = [] {
    Schema s;
    s.add_int("dim", 64, "token width C (default 64)").min = 1;
    s.add_component("stem", "stem", "stem/patch", "inputs to tokens (default stem/patch)").required = false;
    s.add_component("stack", "stack", "stack/plain", "the blocks (default stack/plain)").required = false;
    s.add_bool("norm", true, "LayerNorm of what the head reads (default true)");
    s.add_choice("pool", "cls", {"cls", "mean", "none"},
                 "what the head reads: the class token (cls, default), the mean of the tokens, or every token (none)");
    s.add_component("block", "block", "prenorm", "every layer's block unless overridden (default prenorm)").required =
        false;
    s.add_component("mixer", "mixer", "attention/softmax", "every layer's token mixer unless overridden").required =
        false;
    s.add_component("channel", "channel", "mlp", "every layer's channel mixer unless overridden (default mlp)")
        .required = false;
    return s;
  }();
  return schema;
}

Model make_composed(const ConfigNode& params, const ModelArgs& args) {
  check_params(params, composed_schema());
  const ParamReader r(params, composed_schema(), "");
  const std::int64_t dim = r.get_int("dim");
  Stem stem = stem_registry().create(r.get_node("stem"), StemArgs{dim, args.inputs});
  const LayerDefaults defaults{r.get_node("block"), r.get_node("mixer"), r.get_node("channel"), args.path};
  Stack stack = stack_registry().create(r.get_node("stack"),
                                        StackArgs{dim, stem->tokens(), stem->layout(), defaults, args.path + ".stack"});
  return assemble_model(std::move(stem), std::move(stack), r.get_bool("norm"), pool_from(r.get_string("pool")), args,
                        params);
}

BLOCKLAB_REGISTER(model_registry(),
                  BLOCKLAB_ENTRY("model/composed")
                      .summary("a model from registered parts: stem -> stack -> norm -> pool -> head")
                      .paper("An Image is Worth 16x16 Words (Dosovitskiy et al., 2020), arXiv:2010.11929 (the "
                             "layout); timm's VisionTransformer (the readout)")
                      .equation("y = head(norm(pool(stack(stem(x)))))")
                      .schema(composed_schema())
                      .example("{dim: 32, stem: {type: stem/patch, patch: 7}, stack: {type: stack/plain, depth: 2}}"),
                  make_composed);

}  // namespace
}  // namespace blocklab
