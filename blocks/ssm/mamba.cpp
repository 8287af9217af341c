#include "blocks/ssm/mamba.h"

#include <cmath>

#include "blocks/common/init.h"

namespace blocklab {

namespace {

std::int64_t dt_rank_of(std::int64_t dim, const MambaOptions& o) {
  return o.dt_rank() > 0 ? o.dt_rank() : (dim + 15) / 16;
}

}  // namespace

MambaImpl::MambaImpl(std::int64_t dim, const MambaOptions& o)
    : inner_(o.expand() * dim), state_dim_(o.d_state()), dt_rank_(dt_rank_of(dim, o)), fused_(o.scan() == "fused") {
  TORCH_CHECK(o.scan() == "fused" || o.scan() == "reference", "ssm/mamba: scan must be fused or reference");
  in_proj = register_module("in_proj", make_linear(dim, 2 * inner_, false));
  conv = register_module("conv", ShortConv(inner_, o.d_conv(), /*causal=*/true));
  x_proj = register_module("x_proj", make_linear(inner_, dt_rank_ + 2 * state_dim_, false));
  dt_proj = register_module("dt_proj", make_linear(dt_rank_, inner_, true));
  out_proj = register_module("out_proj", make_linear(inner_, dim, false));
  {
    torch::NoGradGuard no_grad;
    // Section 3.6 / mamba_simple.py: W_dt uniform in +-dt_scale / sqrt(R) (variance preserving),
    // b_dt such that softplus(b_dt) is log-uniform in [dt_min, dt_max].
    const double bound = o.dt_scale() / std::sqrt(static_cast<double>(dt_rank_));
    dt_proj->weight.uniform_(-bound, bound);
    dt_proj->bias.copy_(dt_bias_init(inner_, o.dt_min(), o.dt_max(), o.dt_init_floor()));
  }
  // S4D-real: A[d, n] = -(n + 1) for every channel d.
  A_log =
      register_parameter("A_log", torch::log(torch::arange(1, state_dim_ + 1, torch::kFloat32)).repeat({inner_, 1}));
  D = register_parameter("D", torch::ones({inner_}));
}

MixerCapabilities MambaImpl::capabilities() const {
  MixerCapabilities c;
  c.causal = true;  // causal only: no output reads a later token, whatever ctx.causal says
  c.recurrent = true;
  c.variable_lengths = true;  // causal: right padding never reaches a valid token
  return c;
}

MambaImpl::Selection MambaImpl::select(const torch::Tensor& u) {
  const auto dbc = x_proj->forward(u);
  return {torch::linear(dbc.narrow(-1, 0, dt_rank_), dt_proj->weight), dbc.narrow(-1, dt_rank_, state_dim_),
          dbc.narrow(-1, dt_rank_ + state_dim_, state_dim_)};
}

torch::Tensor MambaImpl::output(const torch::Tensor& y, const torch::Tensor& u, const torch::Tensor& z) {
  return out_proj->forward((y + D * u) * torch::silu(z));
}

torch::Tensor MambaImpl::forward(const torch::Tensor& x, const MixerContext&) {
  const auto uz = in_proj->forward(x);
  const auto u = torch::silu(conv->forward(uz.narrow(-1, 0, inner_)));
  const auto s = select(u);
  const auto scan = fused_ ? selective_scan : selective_scan_reference;
  // y = (C . h + D u) silu(z) with delta = softplus(x W_dt + b_dt): the skip, the gate and the
  // step's bias and softplus inside the scan, as mamba_ssm's kernel does
  const auto z = uz.narrow(-1, inner_, inner_);
  return out_proj->forward(
      scan(u, s.delta_input, A(), s.B.contiguous(), s.C.contiguous(), {}, D, z, dt_proj->bias, true).y);
}

MixerState MambaImpl::init_state(std::int64_t batch, const torch::TensorOptions& options) {
  return MixerState{{conv->init_window(batch, options), torch::zeros({batch, inner_, state_dim_}, options)}, 0};
}

MixerStep MambaImpl::step(const torch::Tensor& x_t, const MixerState& state, const MixerContext&) {
  const auto uz = in_proj->forward(x_t);
  auto [c, window] = conv->step(uz.narrow(-1, 0, inner_), state.tensors.at(0));
  const auto u = torch::silu(c);
  const auto s = select(u);
  const auto delta = torch::softplus(s.delta_input + dt_proj->bias);
  const auto r = selective_step(u, delta, A(), s.B, s.C, state.tensors.at(1));
  return MixerStep{output(r.y, u, uz.narrow(-1, inner_, inner_)), MixerState{{window, r.last}, state.position + 1}};
}

const OptionsSchema<MambaOptions>& mamba_schema() {
  static const auto schema = [] {
    OptionsSchema<MambaOptions> s;
    BLOCKLAB_OPTION(s, d_state, "SSM state size N per channel (default 16)").min = 1;
    BLOCKLAB_OPTION(s, expand, "inner width E / dim (default 2)").min = 1;
    BLOCKLAB_OPTION(s, d_conv, "taps of the causal depthwise convolution before the scan (default 4)").min = 1;
    BLOCKLAB_OPTION(s, dt_rank, "rank R of the Delta projection (default 0: ceil(dim / 16))").min = 0;
    BLOCKLAB_OPTION(s, dt_min, "smallest initial step size softplus(b_dt) (default 0.001)").min = 0.0;
    BLOCKLAB_OPTION(s, dt_max, "largest initial step size softplus(b_dt) (default 0.1)").min = 0.0;
    BLOCKLAB_OPTION(s, dt_init_floor, "floor of the initial step sizes (default 1e-4)").min = 0.0;
    BLOCKLAB_OPTION(s, dt_scale, "W_dt is initialised uniform in +-dt_scale / sqrt(R) (default 1)").min = 0.0;
    s.choice(
        "scan", {"fused", "reference"},
        "the selective scan: fused (the CPU loop that keeps no [B, L, E, N] tensors) or reference (discretised "
        "terms materialised, then the step loop: the oracle); the same function (default fused)",
        [](MambaOptions& o, const std::string& v) { o.scan(v); }, [](const MambaOptions& o) { return o.scan(); });
    return s;
  }();
  return schema;
}

namespace {

TokenMixer make_mamba(const ConfigNode& params, const MixerArgs& args) {
  const auto o = bind_options(mamba_schema(), params);
  if (!(o.dt_min() > 0.0 && o.dt_min() <= o.dt_max()))
    config_fail(params, "dt_min",
                "ssm/mamba: need 0 < dt_min <= dt_max, got dt_min " + std::to_string(o.dt_min()) + " and dt_max " +
                    std::to_string(o.dt_max()),
                {"use the defaults dt_min 0.001, dt_max 0.1"});
  return std::make_shared<MambaImpl>(args.dim, o);
}

BLOCKLAB_REGISTER(mixer_registry(),
                  BLOCKLAB_ENTRY(MambaImpl::kKey)
                      .summary("Mamba's selective SSM (S6): input-dependent Delta, B, C; short causal conv; SiLU gate")
                      .paper("Mamba: Linear-Time Sequence Modeling with Selective State Spaces (Gu & Dao, 2023), "
                             "arXiv:2312.00752")
                      .equation("h_t = exp(Delta_t A) h_{t-1} + Delta_t B_t u_t, y_t = C_t h_t + D u_t, "
                                "out = (y ⊙ SiLU(z)) W_out; u = SiLU(conv(x W_u)), Delta = softplus(u W_x W_dt + b)")
                      .schema(mamba_schema().schema())
                      .example("{d_state: 8}"),
                  make_mamba);

}  // namespace
}  // namespace blocklab
