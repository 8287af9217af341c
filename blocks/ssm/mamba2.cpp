#include "blocks/ssm/mamba2.h"

#include <cmath>

#include "blocks/common/init.h"

#include "blocks/common/ssd.h"

namespace blocklab {

Mamba2Impl::Mamba2Impl(std::int64_t dim, const Mamba2Options& o)
    : inner_(o.expand() * dim),
      state_dim_(o.d_state()),
      headdim_(o.headdim()),
      heads_(inner_ / o.headdim()),
      chunk_(o.chunk()),
      form_(o.form()) {
  TORCH_CHECK(inner_ % headdim_ == 0, "ssm/mamba2: expand x dim must be a multiple of headdim");
  TORCH_CHECK(form_ == "chunked" || form_ == "parallel", "ssm/mamba2: form must be chunked or parallel");
  const auto conv_width = inner_ + 2 * state_dim_;
  in_proj = register_module("in_proj", make_linear(dim, inner_ + conv_width + heads_));  // [z, xBC, dt]
  conv = register_module("conv", ShortConv(conv_width, o.d_conv(), /*causal=*/true));
  norm = register_module("norm", GatedRMSNorm(inner_, o.norm_eps(), /*norm_before_gate=*/false));
  out_proj = register_module("out_proj", make_linear(inner_, dim));
  dt_bias = register_parameter("dt_bias", dt_bias_init(heads_, o.dt_min(), o.dt_max(), o.dt_init_floor()));
  A_log = register_parameter("A_log", torch::log(torch::empty({heads_}).uniform_(o.A_init_min(), o.A_init_max())));
  D = register_parameter("D", torch::ones({heads_}));
}

MixerCapabilities Mamba2Impl::capabilities() const {
  MixerCapabilities c;
  c.causal = true;  // causal only: no output reads a later token, whatever ctx.causal says
  c.recurrent = true;
  c.variable_lengths = true;                             // causal: right padding never reaches a valid token
  c.weights = MixerCapabilities::Weights::unnormalised;  // the probe gets the semiseparable matrix M
  return c;
}

Mamba2Impl::Inner Mamba2Impl::split(const torch::Tensor& z, const torch::Tensor& xbc, const torch::Tensor& dt) const {
  auto shape = xbc.sizes().vec();
  shape.back() = heads_;
  shape.push_back(headdim_);
  return {z, xbc.narrow(-1, 0, inner_).reshape(shape), torch::softplus(dt + dt_bias),
          xbc.narrow(-1, inner_, state_dim_), xbc.narrow(-1, inner_ + state_dim_, state_dim_)};
}

Mamba2Impl::Inner Mamba2Impl::inner(const torch::Tensor& x) {
  const auto p = in_proj->forward(x);
  const auto xbc = torch::silu(conv->forward(p.narrow(-1, inner_, inner_ + 2 * state_dim_)));
  return split(p.narrow(-1, 0, inner_), xbc, p.narrow(-1, 2 * inner_ + 2 * state_dim_, heads_));
}

torch::Tensor Mamba2Impl::core(const Inner& in) const {
  return ssd(in.x, in.dt, A(), in.B, in.C, form_, chunk_) + in.x * D.unsqueeze(-1);
}

torch::Tensor Mamba2Impl::matrix_of(const Inner& in) const {
  const auto diagonal = torch::eye(in.x.size(1), in.x.options()) * D.view({heads_, 1, 1});  // [H, L, L]
  return ssd_matrix(in.dt, A(), in.B, in.C) + diagonal;
}

torch::Tensor Mamba2Impl::mixing_matrix(const torch::Tensor& x) { return matrix_of(inner(x)); }

torch::Tensor Mamba2Impl::forward(const torch::Tensor& x, const MixerContext& ctx) {
  const Inner in = inner(x);
  if (capturing(ctx.probe)) ctx.probe->record(ctx.layer, kKey, matrix_of(in));  // Mamba-2's matrix view
  const auto y = core(in);
  return out_proj->forward(norm->forward(y.flatten(-2), in.z));
}

MixerState Mamba2Impl::init_state(std::int64_t batch, const torch::TensorOptions& options) {
  return MixerState{{conv->init_window(batch, options), torch::zeros({batch, heads_, state_dim_, headdim_}, options)},
                    0};
}

MixerStep Mamba2Impl::step(const torch::Tensor& x_t, const MixerState& state, const MixerContext&) {
  const auto p = in_proj->forward(x_t);
  auto [xbc, window] = conv->step(p.narrow(-1, inner_, inner_ + 2 * state_dim_), state.tensors.at(0));
  const Inner in = split(p.narrow(-1, 0, inner_), torch::silu(xbc), p.narrow(-1, 2 * inner_ + 2 * state_dim_, heads_));
  auto [y, h] = ssd_step(in.x, in.dt, A(), in.B, in.C, state.tensors.at(1));
  y = y + in.x * D.unsqueeze(-1);
  return MixerStep{out_proj->forward(norm->forward(y.flatten(-2), in.z)), MixerState{{window, h}, state.position + 1}};
}

const OptionsSchema<Mamba2Options>& mamba2_schema() {
  static const auto schema = [] {
    OptionsSchema<Mamba2Options> s;
    BLOCKLAB_OPTION(s, d_state, "SSM state size N, shared by the heads (default 128)").min = 1;
    BLOCKLAB_OPTION(s, expand, "inner width E / dim (default 2)").min = 1;
    BLOCKLAB_OPTION(s, headdim, "channels P per head; heads H = E / P (default 64)").min = 1;
    BLOCKLAB_OPTION(s, d_conv, "taps of the causal depthwise convolution before the scan (default 4)").min = 1;
    BLOCKLAB_OPTION(s, A_init_min, "A_h = -U[A_init_min, A_init_max] at initialisation (default 1)").min = 0.0;
    BLOCKLAB_OPTION(s, A_init_max, "upper end of the initial -A_h (default 16)").min = 0.0;
    BLOCKLAB_OPTION(s, dt_min, "smallest initial step size softplus(dt_bias) (default 0.001)").min = 0.0;
    BLOCKLAB_OPTION(s, dt_max, "largest initial step size softplus(dt_bias) (default 0.1)").min = 0.0;
    BLOCKLAB_OPTION(s, dt_init_floor, "floor of the initial step sizes (default 1e-4)").min = 0.0;
    BLOCKLAB_OPTION(s, norm_eps, "epsilon of the gated RMSNorm (default 1e-5)").min = 0.0;
    s.choice(
        "form", {"chunked", "parallel"},
        "how SSD runs: chunked (quadratic within chunks, the state across them; linear in N) or parallel (the "
        "explicit semiseparable L x L matrix, the oracle); the same function (default chunked)",
        [](Mamba2Options& o, const std::string& v) { o.form(v); }, [](const Mamba2Options& o) { return o.form(); });
    BLOCKLAB_OPTION(s, chunk, "chunk length of the chunked form (default 256)").min = 1;
    return s;
  }();
  return schema;
}

namespace {

TokenMixer make_mamba2(const ConfigNode& params, const MixerArgs& args) {
  const auto o = bind_options(mamba2_schema(), params);
  if ((o.expand() * args.dim) % o.headdim() != 0)
    config_fail(params, "headdim",
                "ssm/mamba2: the inner width expand x dim = " + std::to_string(o.expand() * args.dim) +
                    " must be a multiple of headdim " + std::to_string(o.headdim()),
                {"choose headdim dividing " + std::to_string(o.expand() * args.dim)});
  if (!(o.A_init_min() > 0.0 && o.A_init_min() <= o.A_init_max()))
    config_fail(params, "A_init_min", "ssm/mamba2: need 0 < A_init_min <= A_init_max", {"use the defaults 1 and 16"});
  if (!(o.dt_min() > 0.0 && o.dt_min() <= o.dt_max()))
    config_fail(params, "dt_min", "ssm/mamba2: need 0 < dt_min <= dt_max", {"use the defaults 0.001 and 0.1"});
  return std::make_shared<Mamba2Impl>(args.dim, o);
}

BLOCKLAB_REGISTER(mixer_registry(),
                  BLOCKLAB_ENTRY(Mamba2Impl::kKey)
                      .summary("Mamba-2's SSD mixer: scalar-times-identity A per head, semiseparable matrix, gated "
                               "RMSNorm")
                      .paper("Transformers are SSMs (Dao & Gu, 2024), arXiv:2405.21060")
                      .equation("h_t = exp(dt_t A_h) h_{t-1} + dt_t B_t x_t^T, y_t = C_t^T h_t + D_h x_t, "
                                "out = RMSNorm(y ⊙ SiLU(z)) W_out; [x, B, C] = SiLU(conv(u W_xBC))")
                      .schema(mamba2_schema().schema())
                      .example("{d_state: 8, headdim: 16, chunk: 16}"),
                  make_mamba2);

}  // namespace
}  // namespace blocklab
