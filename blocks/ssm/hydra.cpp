#include "blocks/ssm/hydra.h"

#include "blocks/common/ssd.h"

namespace blocklab {

namespace {

// Every output one step later along dim (the first becomes 0): y[t] <- y[t - 1].
torch::Tensor shift_later(const torch::Tensor& y, std::int64_t dim) {
  const auto length = y.size(dim);
  return torch::cat({torch::zeros_like(y.narrow(dim, 0, 1)), y.narrow(dim, 0, length - 1)}, dim);
}

// Every output one step earlier along dim (the last becomes 0): y[t] <- y[t + 1].
torch::Tensor shift_earlier(const torch::Tensor& y, std::int64_t dim) {
  const auto length = y.size(dim);
  return torch::cat({y.narrow(dim, 1, length - 1), torch::zeros_like(y.narrow(dim, 0, 1))}, dim);
}

torch::Tensor reversed(const torch::Tensor& t) { return t.flip(1); }

}  // namespace

torch::Tensor quasiseparable(const QuasiseparableInputs& in, const std::string& form, std::int64_t chunk) {
  // Both directions in one SSD call: the backward scan runs forward on the reversed sequence.
  const auto batch = in.x.size(0);
  const auto y = ssd(torch::cat({in.x, reversed(in.x)}), torch::cat({in.dt_f, reversed(in.dt_b)}), in.A,
                     torch::cat({in.B_f, reversed(in.B_b)}), torch::cat({in.C_f, reversed(in.C_b)}), form, chunk);
  const auto shifted = shift_later(y, 1);  // neither direction keeps its diagonal
  const auto y_f = shifted.narrow(0, 0, batch), y_b = reversed(shifted.narrow(0, batch, batch));
  return y_f + y_b + in.x * in.diagonal.unsqueeze(-1);
}

torch::Tensor quasiseparable_matrix(const QuasiseparableInputs& in) {
  const auto forward = ssd_matrix(in.dt_f, in.A, in.B_f, in.C_f);  // lower triangle, rows i
  const auto backward =
      ssd_matrix(reversed(in.dt_b), in.A, reversed(in.B_b), reversed(in.C_b)).flip({2, 3});  // upper triangle
  // Row i of the shifted forward scan is row i - 1 of its matrix; of the backward one, row i + 1.
  return shift_later(forward, 2) + shift_earlier(backward, 2) + torch::diag_embed(in.diagonal.transpose(1, 2));
}

QuasiseparableCoreImpl::QuasiseparableCoreImpl(std::int64_t inner, std::int64_t heads, double dt_min, double dt_max,
                                               double dt_floor) {
  dt_bias = register_parameter("dt_bias", dt_bias_init(heads, dt_min, dt_max, dt_floor));
  A_log = register_parameter("A_log", torch::zeros({heads}));  // A = -1
  D = register_parameter("D", torch::ones({heads}));
  fc_D = register_module("fc_D", torch::nn::Linear(torch::nn::LinearOptions(inner, heads).bias(false)));
}

QuasiseparableInputs QuasiseparableCoreImpl::inputs(const torch::Tensor& x, const torch::Tensor& dt,
                                                    const torch::Tensor& B_f, const torch::Tensor& C_f,
                                                    const torch::Tensor& B_b, const torch::Tensor& C_b) {
  const auto h = heads();
  const auto sizes = x.sizes();
  return {x.reshape({sizes[0], sizes[1], h, sizes[2] / h}),
          torch::softplus(dt.narrow(-1, 0, h) + dt_bias),  // one b_dt for both directions
          torch::softplus(dt.narrow(-1, h, h) + dt_bias),
          -torch::exp(A_log),
          B_f,
          C_f,
          B_b,
          C_b,
          fc_D->forward(x) + D};  // the data-dependent diagonal
}

HydraImpl::HydraImpl(std::int64_t dim, const HydraOptions& o)
    : inner_(o.expand() * dim),
      state_(o.d_state()),
      heads_(o.expand() * dim / o.headdim()),
      headdim_(o.headdim()),
      chunk_(o.chunk()),
      form_(o.form()) {
  TORCH_CHECK(inner_ % headdim_ == 0, "ssm/hydra: expand x dim must be divisible by headdim");
  TORCH_CHECK(form_ == "parallel" || form_ == "chunked", "ssm/hydra: form must be parallel or chunked");
  const auto no_bias = [](std::int64_t in, std::int64_t out) {
    return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(false));
  };
  in_proj = register_module("in_proj", no_bias(dim, 2 * inner_ + 4 * state_ + 2 * heads_));
  conv = register_module("conv", ShortConv(inner_ + 4 * state_, o.d_conv(), /*causal=*/false));
  core = register_module("core", QuasiseparableCore(inner_, heads_, o.dt_min(), o.dt_max(), o.dt_init_floor()));
  norm = register_module("norm", GatedRMSNorm(inner_, 1e-5, /*norm_before_gate=*/true));
  out_proj = register_module("out_proj", no_bias(inner_, dim));
}

std::pair<QuasiseparableInputs, torch::Tensor> HydraImpl::core_inputs(const torch::Tensor& u) {
  const auto zxbcdt = in_proj->forward(u);
  const auto z = zxbcdt.narrow(-1, 0, inner_);
  const auto xbc = torch::silu(conv->forward(zxbcdt.narrow(-1, inner_, inner_ + 4 * state_)));
  const auto dt = zxbcdt.narrow(-1, 2 * inner_ + 4 * state_, 2 * heads_);
  const auto part = [&](std::int64_t i) { return xbc.narrow(-1, inner_ + i * state_, state_); };
  return {core->inputs(xbc.narrow(-1, 0, inner_), dt, part(0), part(1), part(2), part(3)), z};
}

torch::Tensor HydraImpl::forward(const torch::Tensor& u, const MixerContext& ctx) {
  const auto [in, z] = core_inputs(u);
  if (capturing(ctx.probe)) ctx.probe->record(ctx.layer, kKey, quasiseparable_matrix(in));
  const auto y = quasiseparable(in, form_, chunk_).flatten(2);
  return out_proj->forward(norm->forward(y, z));
}

torch::Tensor HydraImpl::mixing_matrix(const torch::Tensor& u) { return quasiseparable_matrix(core_inputs(u).first); }

const OptionsSchema<HydraOptions>& hydra_schema() {
  static const auto schema = [] {
    OptionsSchema<HydraOptions> s;
    BLOCKLAB_OPTION(s, d_state, "state size N of each direction's SSD (default 64)").min = 1;
    BLOCKLAB_OPTION(s, expand, "inner width E / dim (default 2)").min = 1;
    BLOCKLAB_OPTION(s, headdim, "head width P; heads H = E / P share a scalar A (default 64)").min = 1;
    BLOCKLAB_OPTION(s, d_conv, "taps of the centred depthwise conv, odd (default 7)").min = 1;
    s.choice(
        "form", {"parallel", "chunked"},
        "the SSD form: parallel (the explicit semiseparable matrices, O(L^2)) or chunked (linear in L) "
        "(default chunked)",
        [](HydraOptions& o, const std::string& v) { o.form(v); }, [](const HydraOptions& o) { return o.form(); });
    BLOCKLAB_OPTION(s, chunk, "chunk length of the chunked SSD (default 256)").min = 1;
    BLOCKLAB_OPTION(s, dt_min, "lower end of the initial step size softplus(b_dt) (default 1e-3)").min = 0.0;
    BLOCKLAB_OPTION(s, dt_max, "upper end of the initial step size softplus(b_dt) (default 0.1)").min = 0.0;
    BLOCKLAB_OPTION(s, dt_init_floor, "floor of the initial step size (default 1e-4)").min = 0.0;
    return s;
  }();
  return schema;
}

namespace {

TokenMixer make_hydra(const ConfigNode& params, const MixerArgs& args) {
  const auto o = bind_options(hydra_schema(), params);
  const auto inner = o.expand() * args.dim;
  if (inner % o.headdim() != 0)
    config_fail(params, "headdim",
                "ssm/hydra: the inner width expand x dim = " + std::to_string(inner) +
                    " must be divisible by headdim " + std::to_string(o.headdim()),
                {"choose headdim dividing " + std::to_string(inner)});
  if (o.d_conv() % 2 == 0)
    config_fail(params, "d_conv",
                "ssm/hydra: the centred conv needs an odd number of taps, got " + std::to_string(o.d_conv()),
                {"use d_conv 7 (the paper's) or another odd number"});
  if (!(o.dt_min() > 0.0 && o.dt_min() <= o.dt_max()))
    config_fail(params, "dt_min", "ssm/hydra: need 0 < dt_min <= dt_max", {"keep the defaults 1e-3 and 0.1"});
  return std::make_shared<HydraImpl>(args.dim, o);
}

BLOCKLAB_REGISTER(mixer_registry(),
                  BLOCKLAB_ENTRY(HydraImpl::kKey)
                      .summary("Hydra: bidirectional SSM, two shifted SSD scans plus a data-dependent diagonal "
                               "(a quasiseparable matrix mixer)")
                      .paper("Hydra: Bidirectional State Space Models Through Generalized Matrix Mixers (Hwang et "
                             "al., 2024), arXiv:2407.09941")
                      .equation("y = shift(SSD_f(x)) + flip(shift(SSD_b(flip x))) + x ⊙ (x W_fcD + D); "
                                "out = (RMSNorm(y) ⊙ SiLU(z)) W_out, x = SiLU(conv7(u W_x))")
                      .schema(hydra_schema().schema())
                      .example("{d_state: 8, headdim: 16, chunk: 16}"),
                  make_hydra);

}  // namespace
}  // namespace blocklab
