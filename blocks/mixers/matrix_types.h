// The structured matrices of Hydra's matrix-mixer family, one interface for all (the wrapper is
// mixer/matrix, blocks/mixers/matrix.h).
//
// Paper: "Hydra: Bidirectional State Space Models Through Generalized Matrix Mixers", Hwang et al.,
// 2024, arXiv:2407.09941, Section 2 and Table 2 (matrix classes x sequence alignment); official code
// goombalab/hydra hydra/modules/matrix_mixers/*.py. Catalog: shared/blocks/catalog_000_001.md B 0-09.
//
// Each type maps the values v [B, N, E] (E = H heads x P) to y = M v per head, M [B or 1, H, N, N];
// data-dependent (DD) matrices come from the type's own projected channels (q, k, B, C, dt),
// data-independent (DI) ones from parameters sized for max_tokens L (a shorter sequence uses the
// leading N x N block). d = qk_dim; L_s = L for DI, N for DD (the official code's max_seq_len).
//   dense          DI only: M_h learned [L, L] (xavier normal), scaled by L^-1/2
//   toeplitz       M_ts = c[t - s] 0.5 / sqrt(L_s); DI: c learned [H, 2L - 1]; DD: c[d >= 0] = f_d and
//                  c[d < 0] = r_{-d} from per-token channels f, r [B, N, H]; applied by FFT
//                  (the official code pads left and takes a (2L - 1)-point circular FFT, which reads
//                  its kernel one offset later, circularly: for DI a relabelling of learned entries;
//                  here c[d] is indexed as the catalog states)
//   vandermonde    DI: cos(2 pi t l / L) / sqrt(L) (the DFT's real part; the official is_dft variant,
//                  the learned-frequency one is not offered); DD:
//                  sum_d cos(2 pi eps q_td l) - cos(2 pi eps k_ld t), eps = 1e-3, / sqrt(2 L_s d)
//   cauchy         sum_d 1 / (q_td + k_ld + 1e-8) / sqrt(L_s d); DD: q = exp(.) + b, k = exp(.) + b (b = 0.5
//                  learned); DI: q = exp(Q), k = exp(K), Q, K learned [L, H, d]
//   low_rank       Q K^T / sqrt(L_s d), applied as Q (K^T v) (linear in N)
//   attention      softmax(Q K^T / sqrt(d))
//   semiseparable  Mamba-2's SSD (causal): M_ij = C_i . B_j dt_j exp(A sum_{j<r<=i} dt_r) (j <= i) + D
//                  (N = H d states; DI: B, C learned [L, 2N], dt = softplus(b_dt)); applied by the scan
//   quasiseparable Hydra's core with the same B, C in both directions (blocks/ssm/hydra.h); DI as above
// Every type but semiseparable and quasiseparable adds the residual v (y = M v + v); those two carry
// their diagonal (D, x W_fcD + D) inside M.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

namespace blocklab {

struct MatrixTypeConfig {
  std::int64_t inner = 0;       // E = heads x headdim
  std::int64_t heads = 1;       // H
  std::int64_t qk_dim = 16;     // d: width of q, k per head (N = H d states for the SSD types)
  std::int64_t max_tokens = 0;  // L: the length of the data-independent parameters
  bool data_dependent = true;
  std::string form = "chunked";  // SSD form of semiseparable / quasiseparable: parallel | chunked
  std::int64_t chunk = 256;
};

// What the wrapper hands a type, per token.
struct MatrixInputs {
  torch::Tensor v;      // [B, N, E]: the values, after the conv and SiLU
  torch::Tensor extra;  // [B, N, conv_channels()]: the type's convolved channels (q, k, B, C, kernels)
  torch::Tensor raw;    // [B, N, raw_channels()]: the type's projected channels that skip the conv (dt)
};

class MatrixTypeImpl : public torch::nn::Module {
 public:
  explicit MatrixTypeImpl(MatrixTypeConfig config) : config_(std::move(config)) {}

  // The structured matrix M [B or 1, H, N, N], y = M v per head (the residual not included).
  virtual torch::Tensor matrix(const MatrixInputs& in) = 0;
  // y = M v [B, N, E] by the type's fast path (default: the materialised matrix).
  virtual torch::Tensor apply(const MatrixInputs& in);
  virtual std::int64_t conv_channels() const { return 0; }
  virtual std::int64_t raw_channels() const { return 0; }
  virtual bool activate_extra() const { return true; }  // SiLU on the convolved extra channels
  virtual bool residual() const { return true; }        // the mixer output is M v + v
  // The type has a data-independent (fixed-length) part: sequences longer than max_tokens fail.
  virtual bool fixed_length() const { return !config_.data_dependent; }

  const MatrixTypeConfig& config() const { return config_; }

 protected:
  // [B, N, H x w] -> [B, H, N, w] and back.
  torch::Tensor heads_of(const torch::Tensor& t) const;
  static torch::Tensor merge_heads(const torch::Tensor& t);
  // L_s: max_tokens for a data-independent matrix, else the sequence length n.
  double scale_length(std::int64_t n) const;

  MatrixTypeConfig config_;
};
using MatrixType = std::shared_ptr<MatrixTypeImpl>;

const std::vector<std::string>& matrix_type_names();
// Types without a data-dependent variant (dense) or without a data-independent one (none).
bool has_data_dependent_variant(const std::string& name);
// The type `name` (one of matrix_type_names()); throws std::invalid_argument otherwise.
MatrixType make_matrix_type(const std::string& name, const MatrixTypeConfig& config);

}  // namespace blocklab
