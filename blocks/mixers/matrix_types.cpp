#include "blocks/mixers/matrix_types.h"

#include <cmath>
#include <stdexcept>

#include "blocks/common/long_conv.h"
#include "blocks/common/ssd.h"
#include "blocks/ssm/hydra.h"

namespace blocklab {

torch::Tensor MatrixTypeImpl::heads_of(const torch::Tensor& t) const {
  return t.view({t.size(0), t.size(1), config_.heads, t.size(2) / config_.heads}).transpose(1, 2);
}

torch::Tensor MatrixTypeImpl::merge_heads(const torch::Tensor& t) { return t.transpose(1, 2).flatten(2); }

double MatrixTypeImpl::scale_length(std::int64_t n) const {
  return static_cast<double>(config_.data_dependent ? n : config_.max_tokens);
}

torch::Tensor MatrixTypeImpl::apply(const MatrixInputs& in) { return merge_heads(matrix(in).matmul(heads_of(in.v))); }

namespace {

constexpr double kPi = 3.14159265358979323846;

// A learned [L, H, d] table (xavier normal, as the official q_matrix / k_matrix), read as [1, H, n, d].
torch::Tensor leading_rows(const torch::Tensor& table, std::int64_t n) {
  return table.narrow(0, 0, n).permute({1, 0, 2}).unsqueeze(0);
}

torch::Tensor xavier_normal(std::vector<std::int64_t> sizes) {
  auto t = torch::empty(sizes);
  torch::nn::init::xavier_normal_(t);
  return t;
}

// Types with q, k per head: DD from the convolved channels [q | k], DI from learned [L, H, d] tables.
class QueryKeyType : public MatrixTypeImpl {
 public:
  // learned_tables: the DI variant reads learned q, k tables (all but vandermonde's fixed DFT).
  explicit QueryKeyType(const MatrixTypeConfig& c, bool learned_tables = true) : MatrixTypeImpl(c) {
    if (!c.data_dependent && learned_tables) {
      q_table = register_parameter("q", xavier_normal({c.max_tokens, c.heads, c.qk_dim}));
      k_table = register_parameter("k", xavier_normal({c.max_tokens, c.heads, c.qk_dim}));
    }
  }
  std::int64_t conv_channels() const override { return config_.data_dependent ? 2 * qk_width() : 0; }

 protected:
  std::int64_t qk_width() const { return config_.heads * config_.qk_dim; }
  // q, k [B or 1, H, N, d].
  std::pair<torch::Tensor, torch::Tensor> queries_keys(const MatrixInputs& in) const {
    if (!config_.data_dependent) {
      const auto n = in.v.size(1);
      return {leading_rows(q_table, n), leading_rows(k_table, n)};
    }
    return {heads_of(in.extra.narrow(-1, 0, qk_width())), heads_of(in.extra.narrow(-1, qk_width(), qk_width()))};
  }

  torch::Tensor q_table, k_table;
};

// dense: a learned matrix per head (DI only).
class DenseType : public MatrixTypeImpl {
 public:
  explicit DenseType(const MatrixTypeConfig& c) : MatrixTypeImpl(c) {
    M = register_parameter("M", xavier_normal({c.heads, c.max_tokens, c.max_tokens}));
  }
  torch::Tensor matrix(const MatrixInputs& in) override {
    const auto n = in.v.size(1);
    return M.narrow(1, 0, n).narrow(2, 0, n).unsqueeze(0) / std::sqrt(scale_length(n));
  }
  torch::Tensor M;  // [H, L, L]
};

// toeplitz: M_ts = c[t - s]; the kernel c [B or 1, H, 2N - 1] holds the offsets -(N - 1) .. N - 1.
class ToeplitzType : public MatrixTypeImpl {
 public:
  explicit ToeplitzType(const MatrixTypeConfig& c) : MatrixTypeImpl(c) {
    if (!c.data_dependent) {
      kernel_table = torch::empty({c.heads, 2 * c.max_tokens - 1});
      torch::nn::init::xavier_uniform_(kernel_table);
      kernel_table = register_parameter("kernel", kernel_table);
    }
  }
  std::int64_t conv_channels() const override { return config_.data_dependent ? 2 * config_.heads : 0; }

  torch::Tensor kernel(const MatrixInputs& in) const {
    const auto n = in.v.size(1);
    const double scale = 0.5 / std::sqrt(scale_length(n));
    if (!config_.data_dependent) return kernel_table.narrow(1, config_.max_tokens - n, 2 * n - 1).unsqueeze(0) * scale;
    // Per-token kernels: f_d for the offsets d >= 0 (forward), r_d for d < 0 (reverse; r_0 unused).
    const auto forward = in.extra.narrow(-1, 0, config_.heads).transpose(1, 2);
    const auto reverse = in.extra.narrow(-1, config_.heads, config_.heads).transpose(1, 2);
    return torch::cat({reverse.narrow(-1, 1, n - 1).flip(-1), forward}, -1) * scale;
  }
  torch::Tensor matrix(const MatrixInputs& in) override {
    const auto n = in.v.size(1);
    const auto t = torch::arange(n, in.v.options().dtype(torch::kLong));
    const auto offsets = (t.unsqueeze(1) - t.unsqueeze(0) + (n - 1)).flatten();  // t - s, shifted to >= 0
    const auto k = kernel(in);
    auto sizes = k.sizes().vec();
    sizes.back() = n;
    sizes.push_back(n);
    return k.index_select(-1, offsets).view(sizes);
  }
  // y_t = sum_s c[t - s] v_s: a linear convolution by FFT, read at t + N - 1.
  torch::Tensor apply(const MatrixInputs& in) override {
    const auto n = in.v.size(1);
    const auto u = heads_of(in.v).transpose(-1, -2);  // [B, H, P, N]
    const auto y = fft_conv(u, kernel(in).unsqueeze(2), -1, n - 1, n);
    return merge_heads(y.transpose(-1, -2));
  }
  torch::Tensor kernel_table;  // DI: [H, 2L - 1], entry i = offset i - (L - 1)
};

// vandermonde: DI the DFT's real part, DD the symmetrised cosine Vandermonde of q and k.
class VandermondeType : public QueryKeyType {
 public:
  static constexpr double kEps = 1e-3;  // the official code's stabiliser
  explicit VandermondeType(const MatrixTypeConfig& c) : QueryKeyType(c, /*learned_tables=*/false) {}
  bool activate_extra() const override { return false; }

  torch::Tensor matrix(const MatrixInputs& in) override {
    const auto n = in.v.size(1);
    const auto pos = torch::arange(n, in.v.options());
    if (!config_.data_dependent) {
      const double l = static_cast<double>(config_.max_tokens);
      const auto dft = torch::cos(2 * kPi * pos.unsqueeze(1) * pos.unsqueeze(0) / l) / std::sqrt(l);
      return dft.expand({1, config_.heads, n, n});
    }
    const auto [q, k] = queries_keys(in);                   // [B, H, N, d]
    const auto vandermonde = [&](const torch::Tensor& a) {  // [B, H, row, col] = sum_d cos(2 pi eps a_row,d col)
      return torch::cos(2 * kPi * kEps * a.unsqueeze(-1) * pos).sum(3);
    };
    const double scale = 1.0 / std::sqrt(2.0 * scale_length(n) * static_cast<double>(config_.qk_dim));
    return (vandermonde(q) - vandermonde(k).transpose(-1, -2)) * scale;
  }
};

class CauchyType : public QueryKeyType {
 public:
  explicit CauchyType(const MatrixTypeConfig& c) : QueryKeyType(c) {
    if (c.data_dependent) bias = register_parameter("bias", torch::full({1}, 0.5));
  }
  bool activate_extra() const override { return false; }
  torch::Tensor matrix(const MatrixInputs& in) override {
    auto [q, k] = queries_keys(in);
    q = torch::exp(q);
    k = torch::exp(k);
    if (config_.data_dependent) {
      q = q + bias;
      k = k + bias;
    }
    const double scale = 1.0 / std::sqrt(scale_length(in.v.size(1)) * static_cast<double>(config_.qk_dim));
    return (1.0 / (q.unsqueeze(3) + k.unsqueeze(2) + 1e-8)).sum(-1) * scale;
  }
  torch::Tensor bias;  // DD: b, shared by q and k
};

class LowRankType : public QueryKeyType {
 public:
  explicit LowRankType(const MatrixTypeConfig& c) : QueryKeyType(c) {}
  double scale(std::int64_t n) const { return 1.0 / std::sqrt(scale_length(n) * static_cast<double>(config_.qk_dim)); }
  torch::Tensor matrix(const MatrixInputs& in) override {
    const auto [q, k] = queries_keys(in);
    return q.matmul(k.transpose(-1, -2)) * scale(in.v.size(1));
  }
  // Q (K^T v): linear in N.
  torch::Tensor apply(const MatrixInputs& in) override {
    const auto [q, k] = queries_keys(in);
    return merge_heads(q.matmul(k.transpose(-1, -2).matmul(heads_of(in.v))) * scale(in.v.size(1)));
  }
};

class AttentionType : public QueryKeyType {
 public:
  explicit AttentionType(const MatrixTypeConfig& c) : QueryKeyType(c) {}
  bool activate_extra() const override { return false; }
  torch::Tensor matrix(const MatrixInputs& in) override {
    const auto [q, k] = queries_keys(in);
    return torch::softmax(q.matmul(k.transpose(-1, -2)) / std::sqrt(static_cast<double>(config_.qk_dim)), -1);
  }
};

// The SSD types: B, C [B, N, n_state] from the convolved channels (DD) or a learned [L, 2 n_state] table
// (DI), n_state = H d; dt from the raw channels (DD) or b_dt alone (DI).
class StateSpaceType : public MatrixTypeImpl {
 public:
  StateSpaceType(const MatrixTypeConfig& c, std::int64_t dt_channels) : MatrixTypeImpl(c), dt_channels_(dt_channels) {
    if (!c.data_dependent) BC = register_parameter("BC", xavier_normal({c.max_tokens, 2 * states()}));
  }
  std::int64_t conv_channels() const override { return config_.data_dependent ? 2 * states() : 0; }
  std::int64_t raw_channels() const override { return config_.data_dependent ? dt_channels_ : 0; }
  bool residual() const override { return false; }

 protected:
  std::int64_t states() const { return config_.heads * config_.qk_dim; }
  std::pair<torch::Tensor, torch::Tensor> input_B_C(const MatrixInputs& in) const {
    const auto b = in.v.size(0), n = in.v.size(1);
    const auto bc = config_.data_dependent ? in.extra : BC.narrow(0, 0, n).unsqueeze(0).expand({b, n, 2 * states()});
    return {bc.narrow(-1, 0, states()), bc.narrow(-1, states(), states())};
  }
  // The raw dt channels [B, N, dt_channels] (zeros for DI: dt = softplus(b_dt)).
  torch::Tensor raw_dt(const MatrixInputs& in) const {
    return config_.data_dependent ? in.raw : torch::zeros({in.v.size(0), in.v.size(1), dt_channels_}, in.v.options());
  }

  torch::Tensor BC;  // DI: [L, 2 n_state]

 private:
  std::int64_t dt_channels_;
};

// semiseparable: Mamba-2's causal SSD plus the D skip.
class SemiseparableType : public StateSpaceType {
 public:
  explicit SemiseparableType(const MatrixTypeConfig& c) : StateSpaceType(c, c.heads) {
    dt_bias = register_parameter("dt_bias", dt_bias_init(c.heads));
    A_log = register_parameter("A_log", torch::zeros({c.heads}));
    D = register_parameter("D", torch::ones({c.heads}));
  }
  torch::Tensor matrix(const MatrixInputs& in) override {
    const auto [B, C] = input_B_C(in);
    const auto ssd_part = ssd_matrix(dt(in), -torch::exp(A_log), B, C);
    return ssd_part + torch::diag_embed(D.unsqueeze(-1).expand({config_.heads, in.v.size(1)}));
  }
  torch::Tensor apply(const MatrixInputs& in) override {
    const auto [B, C] = input_B_C(in);
    const auto x = heads_of(in.v).transpose(1, 2);  // [B, N, H, P]
    const auto y = ssd(x, dt(in), -torch::exp(A_log), B, C, config_.form, config_.chunk) + x * D.unsqueeze(-1);
    return y.flatten(2);
  }
  torch::Tensor dt_bias, A_log, D;  // [H]

 private:
  torch::Tensor dt(const MatrixInputs& in) const { return torch::softplus(raw_dt(in) + dt_bias); }
};

// quasiseparable: Hydra's core with B_f = B_b and C_f = C_b.
class QuasiseparableType : public StateSpaceType {
 public:
  explicit QuasiseparableType(const MatrixTypeConfig& c) : StateSpaceType(c, 2 * c.heads) {
    core = register_module("core", QuasiseparableCore(c.inner, c.heads));
  }
  QuasiseparableInputs core_inputs(const MatrixInputs& in) {
    const auto [B, C] = input_B_C(in);
    return core->inputs(in.v, raw_dt(in), B, C, B, C);
  }
  torch::Tensor matrix(const MatrixInputs& in) override { return quasiseparable_matrix(core_inputs(in)); }
  torch::Tensor apply(const MatrixInputs& in) override {
    return quasiseparable(core_inputs(in), config_.form, config_.chunk).flatten(2);
  }
  QuasiseparableCore core{nullptr};
};

}  // namespace

const std::vector<std::string>& matrix_type_names() {
  static const std::vector<std::string> names{"dense",    "toeplitz",  "vandermonde",   "cauchy",
                                              "low_rank", "attention", "semiseparable", "quasiseparable"};
  return names;
}

bool has_data_dependent_variant(const std::string& name) { return name != "dense"; }

MatrixType make_matrix_type(const std::string& name, const MatrixTypeConfig& c) {
  if (name == "dense") return std::make_shared<DenseType>(c);
  if (name == "toeplitz") return std::make_shared<ToeplitzType>(c);
  if (name == "vandermonde") return std::make_shared<VandermondeType>(c);
  if (name == "cauchy") return std::make_shared<CauchyType>(c);
  if (name == "low_rank") return std::make_shared<LowRankType>(c);
  if (name == "attention") return std::make_shared<AttentionType>(c);
  if (name == "semiseparable") return std::make_shared<SemiseparableType>(c);
  if (name == "quasiseparable") return std::make_shared<QuasiseparableType>(c);
  throw std::invalid_argument("unknown matrix type '" + name + "'");
}

}  // namespace blocklab
