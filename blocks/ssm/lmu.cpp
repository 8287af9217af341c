#include "blocks/ssm/lmu.h"

#include <cmath>

#include "blocks/common/long_conv.h"

namespace blocklab {

std::pair<torch::Tensor, torch::Tensor> legendre_state_space(std::int64_t order, double theta) {
  const auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
  const auto q = torch::arange(order, f64);
  const auto r = (2 * q + 1) / theta;  // (2i+1)/theta
  const auto i = q.unsqueeze(1), j = q.unsqueeze(0);
  const auto sign = torch::where(i < j, -torch::ones({}, f64), torch::pow(-1.0, i - j + 1));
  const auto A = r.unsqueeze(1) * sign;  // row i scaled by (2i+1)/theta
  const auto B = r * torch::pow(-1.0, q);
  return {A, B};
}

std::pair<torch::Tensor, torch::Tensor> zero_order_hold(const torch::Tensor& A, const torch::Tensor& B, double dt) {
  // exp([[A, B], [0, 0]] dt) = [[A_bar, B_bar], [0, 1]] (Van Loan 1978): no inverse of A needed.
  const auto d = A.size(0);
  auto block = torch::zeros({d + 1, d + 1}, A.options());
  block.narrow(0, 0, d).narrow(1, 0, d).copy_(A * dt);
  block.narrow(0, 0, d).select(1, d).copy_(B * dt);
  const auto e = torch::linalg_matrix_exp(block);
  return {e.narrow(0, 0, d).narrow(1, 0, d).clone(), e.narrow(0, 0, d).select(1, d).clone()};
}

torch::Tensor impulse_response(const torch::Tensor& A_bar, const torch::Tensor& B_bar, std::int64_t n) {
  auto H = B_bar.unsqueeze(0);  // [1, d]: H_0 = B_bar
  auto power = A_bar;           // A_bar^L for the current length L
  while (H.size(0) < n) {
    H = torch::cat({H, torch::matmul(H, power.t())}, 0);  // H_{L+j} = A_bar^L H_j
    power = torch::matmul(power, power);
  }
  return H.narrow(0, 0, n);
}

torch::Tensor legendre_decoder(std::int64_t order, double delay, double theta) {
  // Bonnet's recursion: (i+1) P_{i+1}(r) = (2i+1) r P_i(r) - i P_{i-1}(r).
  const double r = 2.0 * delay / theta - 1.0;
  std::vector<double> p(order);
  double prev = 1.0, cur = r;
  for (std::int64_t i = 0; i < order; ++i) {
    p[i] = i == 0 ? 1.0 : cur;
    if (i >= 1) {
      const double next = ((2.0 * i + 1.0) * r * cur - i * prev) / (i + 1.0);
      prev = cur;
      cur = next;
    }
  }
  return torch::tensor(p, torch::kFloat64);
}

LmuMixerImpl::LmuMixerImpl(std::int64_t dim, const LmuOptions& o) : form_(o.form()) {
  const auto d = o.memory() > 0 ? o.memory() : dim;
  input = register_module("input", torch::nn::Linear(dim, 1));
  hidden = register_module("hidden", torch::nn::Linear(d + dim, dim));
  proj = register_module("proj", torch::nn::Linear(dim, dim));
  const auto [A, B] = legendre_state_space(d, o.theta());
  const auto [a_bar, b_bar] = zero_order_hold(A, B, 1.0);
  A_bar = register_buffer("A_bar", a_bar);
  B_bar = register_buffer("B_bar", b_bar);
}

MixerCapabilities LmuMixerImpl::capabilities() const {
  MixerCapabilities c;
  c.causal = true;
  c.recurrent = true;
  c.variable_lengths = true;  // causal: padding after a token never reaches it
  return c;
}

torch::Tensor LmuMixerImpl::inputs(const torch::Tensor& x) { return torch::relu(input->forward(x)).squeeze(-1); }

torch::Tensor LmuMixerImpl::outputs(const torch::Tensor& m, const torch::Tensor& x) {
  return proj->forward(torch::relu(hidden->forward(torch::cat({m.to(x.scalar_type()), x}, -1))));
}

torch::Tensor LmuMixerImpl::memory(const torch::Tensor& u, const std::string& form) const {
  const auto a = A_bar.to(u.options()), b = B_bar.to(u.options());
  if (form == "parallel") {                            // m_t = sum_{s<=t} H_{t-s} u_s by FFT
    const auto H = impulse_response(a, b, u.size(1));  // [N, d]
    return causal_fft_conv(u.unsqueeze(-1), H, 1);     // [B, N, 1] * [N, d] -> [B, N, d]
  }
  auto m = torch::zeros({u.size(0), a.size(0)}, u.options());
  std::vector<torch::Tensor> ms;
  for (std::int64_t t = 0; t < u.size(1); ++t) {
    m = torch::matmul(m, a.t()) + u.select(1, t).unsqueeze(-1) * b;
    ms.push_back(m);
  }
  return torch::stack(ms, 1);
}

torch::Tensor LmuMixerImpl::forward(const torch::Tensor& x, const MixerContext&) {
  return outputs(memory(inputs(x), form_), x);
}

MixerState LmuMixerImpl::init_state(std::int64_t batch, const torch::TensorOptions& options) {
  return MixerState{{torch::zeros({batch, order()}, options)}, 0};
}

MixerStep LmuMixerImpl::step(const torch::Tensor& x_t, const MixerState& state, const MixerContext&) {
  const auto u = inputs(x_t);  // [B]
  const auto m =
      torch::matmul(state.tensors.at(0), A_bar.to(x_t.options()).t()) + u.unsqueeze(-1) * B_bar.to(x_t.options());
  return MixerStep{outputs(m, x_t), MixerState{{m}, state.position + 1}};
}

const OptionsSchema<LmuOptions>& lmu_schema() {
  static const auto schema = [] {
    OptionsSchema<LmuOptions> s;
    BLOCKLAB_OPTION(s, memory, "order d of the Legendre memory (default 0 = dim, as LMUFormer)").min = 0;
    BLOCKLAB_OPTION(s, theta, "window theta of the memory, in tokens (default 128, LMUFormer's)").min = 1e-3;
    s.choice(
        "form", {"parallel", "recurrent"},
        "how the memory is computed: parallel (a causal convolution with the impulse response A_bar^t B_bar by "
        "FFT) or recurrent (m_t = A_bar m_{t-1} + B_bar u_t token by token, the oracle); the same function "
        "(default parallel)",
        [](LmuOptions& o, const std::string& v) { o.form(v); }, [](const LmuOptions& o) { return o.form(); });
    return s;
  }();
  return schema;
}

namespace {

BLOCKLAB_REGISTER(mixer_registry(),
                  BLOCKLAB_ENTRY(LmuMixerImpl::kKey)
                      .summary("LMUFormer's Legendre Memory Unit mixer: a fixed order-d Legendre memory of a "
                               "1-d projection, read with the input (FFT parallel form, recurrent inference)")
                      .paper("LMUFormer (Liu et al., 2024), arXiv:2402.04882; Legendre Memory Units (Voelker et "
                             "al., 2019)")
                      .equation("u_t = ReLU(W_u x_t), m_t = A_bar m_{t-1} + B_bar u_t (ZOH of the Legendre A, B), "
                                "y_t = W_o ReLU(W_h [m_t; x_t])")
                      .schema(lmu_schema().schema())
                      .example("{memory: 16, theta: 16}"),
                  [](const ConfigNode& params, const MixerArgs& args) -> TokenMixer {
                    return std::make_shared<LmuMixerImpl>(args.dim, bind_options(lmu_schema(), params));
                  });

}  // namespace
}  // namespace blocklab
