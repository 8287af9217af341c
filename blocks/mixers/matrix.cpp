#include "blocks/mixers/matrix.h"

#include <sstream>

namespace blocklab {

namespace {

torch::nn::Linear no_bias(std::int64_t in, std::int64_t out) {
  return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(false));
}

MatrixTypeConfig type_config(std::int64_t dim, std::int64_t max_tokens, const MatrixMixerOptions& o) {
  MatrixTypeConfig c;
  c.inner = o.expand() * dim;
  c.heads = c.inner / o.headdim();
  c.qk_dim = o.qk_dim();
  c.max_tokens = max_tokens;
  c.data_dependent = o.data_dependent();
  c.form = o.form();
  c.chunk = o.chunk();
  return c;
}

}  // namespace

MatrixMixerImpl::MatrixMixerImpl(std::int64_t dim, std::int64_t max_tokens, const MatrixMixerOptions& o)
    : name_(o.matrix()), inner_(o.expand() * dim) {
  TORCH_CHECK(inner_ % o.headdim() == 0, "mixer/matrix: expand x dim must be divisible by headdim");
  TORCH_CHECK(o.data_dependent() || max_tokens > 0, "mixer/matrix: a data-independent matrix needs max_tokens > 0");
  mixer = register_module("mixer", make_matrix_type(o.matrix(), type_config(dim, max_tokens, o)));
  const auto convolved = inner_ + mixer->conv_channels();
  in_proj = register_module("in_proj", no_bias(dim, inner_ + convolved + mixer->raw_channels()));
  conv = register_module("conv", ShortConv(convolved, o.d_conv(), /*causal=*/false));
  norm = register_module("norm", GatedRMSNorm(inner_, 1e-5, /*norm_before_gate=*/true));
  out_proj = register_module("out_proj", no_bias(inner_, dim));
}

void MatrixMixerImpl::check_length(std::int64_t n) const {
  const auto longest = mixer->config().max_tokens;
  if (!mixer->fixed_length() || n <= longest) return;
  std::ostringstream message;
  message << "mixer/matrix: matrix " << name_ << " with data_dependent: false is sized for max_tokens = " << longest
          << " tokens, got a sequence of " << n << "; raise the model's max_tokens or use data_dependent: true";
  throw std::invalid_argument(message.str());
}

std::pair<MatrixInputs, torch::Tensor> MatrixMixerImpl::inputs(const torch::Tensor& u) {
  check_length(u.size(1));
  const auto proj = in_proj->forward(u);
  const auto convolved = conv->forward(proj.narrow(-1, inner_, inner_ + mixer->conv_channels()));
  auto extra = convolved.narrow(-1, inner_, mixer->conv_channels());
  if (mixer->activate_extra()) extra = torch::silu(extra);
  const auto raw = proj.narrow(-1, 2 * inner_ + mixer->conv_channels(), mixer->raw_channels());
  return {MatrixInputs{torch::silu(convolved.narrow(-1, 0, inner_)), extra, raw}, proj.narrow(-1, 0, inner_)};
}

torch::Tensor MatrixMixerImpl::forward(const torch::Tensor& u, const MixerContext& ctx) {
  const auto [in, z] = inputs(u);
  if (capturing(ctx.probe)) ctx.probe->record(ctx.layer, kKey, matrix_of(in, u.size(0), u.size(1)));
  auto y = mixer->apply(in);
  if (mixer->residual()) y = y + in.v;
  return out_proj->forward(norm->forward(y, z));
}

torch::Tensor MatrixMixerImpl::matrix_of(const MatrixInputs& in, std::int64_t batch, std::int64_t n) {
  auto m = mixer->matrix(in).expand({batch, mixer->config().heads, n, n});
  if (mixer->residual()) m = m + torch::eye(n, m.options());
  return m;
}

torch::Tensor MatrixMixerImpl::mixing_matrix(const torch::Tensor& u) {
  return matrix_of(inputs(u).first, u.size(0), u.size(1));
}

const OptionsSchema<MatrixMixerOptions>& matrix_mixer_schema() {
  static const auto schema = [] {
    OptionsSchema<MatrixMixerOptions> s;
    s.choice(
        "matrix", matrix_type_names(),
        "the structured matrix class M (default quasiseparable, i.e. Hydra with B, C shared by both directions)",
        [](MatrixMixerOptions& o, const std::string& v) { o.matrix(v); },
        [](const MatrixMixerOptions& o) { return o.matrix(); });
    BLOCKLAB_OPTION(s, data_dependent,
                    "M from the tokens (true) or from parameters sized for max_tokens (false; dense has only this) "
                    "(default true)");
    BLOCKLAB_OPTION(s, expand, "inner width E / dim (default 2)").min = 1;
    BLOCKLAB_OPTION(s, headdim, "head width; heads H = E / headdim each mix with their own M (default 128)").min = 1;
    BLOCKLAB_OPTION(s, qk_dim, "width d of q, k per head; the SSD types keep H d states (default 16)").min = 1;
    BLOCKLAB_OPTION(s, d_conv, "taps of the centred depthwise conv, odd (default 7)").min = 1;
    s.choice(
        "form", {"parallel", "chunked"},
        "SSD form of semiseparable and quasiseparable: parallel (explicit matrix) or chunked (default chunked)",
        [](MatrixMixerOptions& o, const std::string& v) { o.form(v); },
        [](const MatrixMixerOptions& o) { return o.form(); });
    BLOCKLAB_OPTION(s, chunk, "chunk length of the chunked SSD (default 256)").min = 1;
    return s;
  }();
  return schema;
}

namespace {

TokenMixer make_matrix_mixer(const ConfigNode& params, const MixerArgs& args) {
  const auto o = bind_options(matrix_mixer_schema(), params);
  const auto inner = o.expand() * args.dim;
  if (inner % o.headdim() != 0)
    config_fail(params, "headdim",
                "mixer/matrix: the inner width expand x dim = " + std::to_string(inner) +
                    " must be divisible by headdim " + std::to_string(o.headdim()),
                {"choose headdim dividing " + std::to_string(inner)});
  if (o.d_conv() % 2 == 0)
    config_fail(params, "d_conv",
                "mixer/matrix: the centred conv needs an odd number of taps, got " + std::to_string(o.d_conv()),
                {"use d_conv 7 (the paper's) or another odd number"});
  if (o.data_dependent() && !has_data_dependent_variant(o.matrix()))
    config_fail(params, "data_dependent", "mixer/matrix: matrix " + o.matrix() + " has no data-dependent variant",
                {"set data_dependent: false"});
  if (!o.data_dependent() && args.max_tokens <= 0)
    config_fail(params, "data_dependent",
                "mixer/matrix: matrix " + o.matrix() +
                    " with data_dependent: false needs the model's max_tokens (its parameters are sized for it)",
                {"give the model a max_tokens", "set data_dependent: true"});
  return std::make_shared<MatrixMixerImpl>(args.dim, args.max_tokens, o);
}

BLOCKLAB_REGISTER(mixer_registry(),
                  BLOCKLAB_ENTRY(MatrixMixerImpl::kKey)
                      .summary("Hydra's matrix mixers: conv, SiLU, a structured matrix per head (dense, Toeplitz, "
                               "Vandermonde, Cauchy, low-rank, attention, semi-/quasiseparable), gated RMSNorm")
                      .paper("Hydra: Bidirectional State Space Models Through Generalized Matrix Mixers (Hwang et "
                             "al., 2024), arXiv:2407.09941")
                      .equation("y = M(x) v (+ v), v = SiLU(conv7(u W_v)); out = (RMSNorm(y) ⊙ SiLU(z)) W_out")
                      .schema(matrix_mixer_schema().schema())
                      .example("{matrix: toeplitz, data_dependent: false, headdim: 16}"),
                  make_matrix_mixer);

}  // namespace
}  // namespace blocklab
