#include "blocks/backbones/gtrxl_block.h"

#include <algorithm>

#include "blocks/common/init.h"
#include "blocks/common/options.h"

namespace blocklab {

namespace {

const std::vector<std::string>& gtrxl_gate_kinds() {
  static const std::vector<std::string> kinds{"gru", "input", "output", "highway", "sigmoid_tanh"};
  return kinds;
}

}  // namespace

GtrxlGateImpl::GtrxlGateImpl(std::int64_t dim, const std::string& kind, double bias) : kind_(kind) {
  TORCH_CHECK(std::find(gtrxl_gate_kinds().begin(), gtrxl_gate_kinds().end(), kind) != gtrxl_gate_kinds().end(),
              "gtrxl: unknown gate '", kind, "'");
  const auto linear = [&](const std::string& name) {
    return register_module(name, torch::nn::Linear(torch::nn::LinearOptions(dim, dim).bias(false)));
  };
  if (kind == "gru") {
    w_r = linear("w_r");
    u_r = linear("u_r");
    w_z = linear("w_z");
    u_z = linear("u_z");
  }
  w_g = linear("w_g");
  if (kind == "gru" || kind == "sigmoid_tanh") u_g = linear("u_g");
  if (kind != "input") b_g = register_parameter("b_g", torch::full({dim}, bias));
}

torch::Tensor GtrxlGateImpl::forward(const torch::Tensor& x, const torch::Tensor& y) {
  if (kind_ == "gru") {  // §3.2, the GRU-type gate
    const auto r = torch::sigmoid(w_r->forward(y) + u_r->forward(x));
    const auto z = torch::sigmoid(w_z->forward(y) + u_z->forward(x) - b_g);
    const auto h = torch::tanh(w_g->forward(y) + u_g->forward(r * x));
    return (1.0 - z) * x + z * h;
  }
  if (kind_ == "input") return torch::sigmoid(w_g->forward(x)) * x + y;
  if (kind_ == "output") return x + torch::sigmoid(w_g->forward(x) - b_g) * y;
  if (kind_ == "highway") {
    const auto carry = torch::sigmoid(w_g->forward(x) + b_g);
    return carry * x + (1.0 - carry) * y;
  }
  return x + torch::sigmoid(w_g->forward(y) - b_g) * torch::tanh(u_g->forward(y));  // sigmoid_tanh
}

GtrxlBlockImpl::GtrxlBlockImpl(const BlockArgs& args, const GtrxlBlockOptions& o) : drop_path_(args.drop_path) {
  const auto ln = torch::nn::LayerNormOptions({args.dim}).eps(1e-6);
  norm1 = register_module("norm1", torch::nn::LayerNorm(ln));
  mixer = register_module("mixer", mixer_registry().create(args.mixer, mixer_args(args)));
  gate1 = register_module("gate1", GtrxlGate(args.dim, o.gate(), o.gate_bias()));
  norm2 = register_module("norm2", torch::nn::LayerNorm(ln));
  channel = register_module("channel", channel_registry().create(args.channel, args.dim));
  gate2 = register_module("gate2", GtrxlGate(args.dim, o.gate(), o.gate_bias()));
}

torch::Tensor GtrxlBlockImpl::gated(GtrxlGate& gate, const torch::Tensor& x, const torch::Tensor& branch) {
  const auto g = gate->forward(x, torch::relu(branch));
  if (!is_training() || drop_path_ <= 0.0) return g;
  return x + blocklab::drop_path(g - x, drop_path_, true);
}

torch::Tensor GtrxlBlockImpl::channel_half(const torch::Tensor& y) {
  return gated(gate2, y, channel->forward(norm2->forward(y)));
}

torch::Tensor GtrxlBlockImpl::forward(const torch::Tensor& x, const MixerContext& ctx) {
  const torch::Tensor mixer_input = norm1->forward(x);
  if (ctx.probe && ctx.probe->keeps_mixer_calls())
    ctx.probe->record_mixer_call(MixerCall{mixer, mixer_input.detach(), ctx.without_probe()});
  return channel_half(gated(gate1, x, mixer->forward(mixer_input, ctx)));
}

MixerState GtrxlBlockImpl::init_state(std::int64_t batch, const torch::TensorOptions& options) {
  return mixer->init_state(batch, options);
}

MixerStep GtrxlBlockImpl::step(const torch::Tensor& x_t, const MixerState& state, const MixerContext& ctx) {
  MixerStep s = mixer->step(norm1->forward(x_t), state, ctx);
  s.output = channel_half(gated(gate1, x_t, s.output));
  return s;
}

const OptionsSchema<GtrxlBlockOptions>& gtrxl_block_schema() {
  static const auto schema = [] {
    using O = GtrxlBlockOptions;
    OptionsSchema<O> s;
    s.choice(
        "gate", gtrxl_gate_kinds(),
        "the gating layer g(x, y) replacing each residual: gru (the paper's best; default), input, output, highway "
        "or sigmoid_tanh",
        [](O& o, const std::string& v) { o.gate(v); }, [](const O& o) { return o.gate(); });
    BLOCKLAB_OPTION(s, gate_bias,
                    "b_g's initial value; larger is closer to the identity (the paper's 2; default 2; not used by "
                    "gate input)");
    return s;
  }();
  return schema;
}

namespace {

BLOCKLAB_REGISTER(
    block_registry(),
    BLOCKLAB_ENTRY(GtrxlBlockImpl::kKey)
        .summary("GTrXL: pre-norm block whose residuals are GRU-type gates on ReLU'd sub-layer outputs, near the "
                 "identity at init (b_g = 2)")
        .paper("Stabilizing Transformers for Reinforcement Learning (Parisotto et al., 2019), arXiv:1910.06764")
        .equation("Y = g(E, ReLU(mixer(LN E))); E' = g(Y, ReLU(channel(LN Y))); g(x, y) = (1 - z) x + z tanh(W_g y + "
                  "U_g(r x)), z = s(W_z y + U_z x - b_g)")
        .schema(gtrxl_block_schema().schema())
        .example("{gate: gru}"),
    [](const ConfigNode& params, const BlockArgs& args) -> Block {
      return std::make_shared<GtrxlBlockImpl>(args, bind_options(gtrxl_block_schema(), params));
    });

}  // namespace
}  // namespace blocklab
