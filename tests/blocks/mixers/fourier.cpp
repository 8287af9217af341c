// FlexiBERT's linear-transform operations (catalog 003/004 C20), tag [mixers]: FNet's mixer has no
// weights and equals Re(F_N x F_C) with the DFT matrices written out as cosines and sines (not
// torch.fft), ortho dividing by sqrt(N C); the DCT mixer equals the DCT-II sum written out, its
// ortho matrix is orthogonal (so the mixer keeps the Frobenius norm) and none is scipy's scaling.
#include <catch2/catch.hpp>

#include <cmath>

#include "blocks/mixers/dct.h"
#include "blocks/mixers/fnet.h"
#include "registry/yaml_io.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;

namespace {

TokenMixer fourier_mixer(const std::string& yaml) {
  return mixer_registry().create(parse_yaml(yaml, "mixer"), MixerArgs{6, 5});
}

// Re(F_N x F_C) = C_N x C_C - S_N x S_C with (C_n)_jk = cos(2 pi jk / n), (S_n)_jk = sin(2 pi jk / n).
torch::Tensor fnet_by_hand(const torch::Tensor& x) {
  const auto trig = [](std::int64_t n, bool sine) {
    auto m = torch::empty({n, n}, torch::kFloat64);
    for (std::int64_t j = 0; j < n; ++j)
      for (std::int64_t k = 0; k < n; ++k) {
        const double a = 2.0 * M_PI * static_cast<double>(j * k) / static_cast<double>(n);
        m[j][k] = sine ? std::sin(a) : std::cos(a);
      }
    return m;
  };
  const auto n = x.size(1), c = x.size(2);
  return trig(n, false).matmul(x).matmul(trig(c, false)) - trig(n, true).matmul(x).matmul(trig(c, true));
}

// y_{kl} = sum_{j, m} 2 cos(pi k (2j + 1) / 2N) 2 cos(pi l (2m + 1) / 2C) x_{jm}, one sample.
double dct_sum(const torch::Tensor& x, std::int64_t k, std::int64_t l) {
  const auto n = x.size(0), c = x.size(1);
  double y = 0;
  for (std::int64_t j = 0; j < n; ++j)
    for (std::int64_t m = 0; m < c; ++m)
      y += 2 * std::cos(M_PI * static_cast<double>(k * (2 * j + 1)) / static_cast<double>(2 * n)) * 2 *
           std::cos(M_PI * static_cast<double>(l * (2 * m + 1)) / static_cast<double>(2 * c)) * x[j][m].item<double>();
  return y;
}

}  // namespace

TEST_CASE("mixer/fnet: no weights, the real part of the 2-D DFT written out", "[mixers]") {
  const auto x = torch::randn({2, 5, 6}, torch::kFloat64);
  const TokenMixer plain = fourier_mixer("{type: mixer/fnet}");
  CHECK(plain->parameters().empty());
  const auto expected = fnet_by_hand(x);
  CHECK(torch::allclose(plain->forward(x, {}), expected, 1e-10, 1e-12));
  const TokenMixer ortho = fourier_mixer("{type: mixer/fnet, norm: ortho}");
  CHECK(torch::allclose(ortho->forward(x, {}), expected / std::sqrt(30.0), 1e-10, 1e-12));
}

TEST_CASE("mixer/dct: the DCT-II sum written out; ortho is orthogonal", "[mixers]") {
  const auto x = torch::randn({2, 5, 6}, torch::kFloat64);
  const TokenMixer plain = fourier_mixer("{type: mixer/dct}");
  CHECK(plain->parameters().empty());
  const auto y = plain->forward(x, {});
  for (std::int64_t k = 0; k < 5; ++k)
    for (std::int64_t l = 0; l < 6; ++l) CHECK(y[1][k][l].item<double>() == Approx(dct_sum(x[1], k, l)).epsilon(1e-10));
  const auto d = dct_matrix(7, /*ortho=*/true, torch::kFloat64);
  CHECK(torch::allclose(d.matmul(d.t()), torch::eye(7, torch::kFloat64), 1e-12, 1e-12));
  const auto z = fourier_mixer("{type: mixer/dct, norm: ortho}")->forward(x, {});
  CHECK(z.pow(2).sum().item<double>() == Approx(x.pow(2).sum().item<double>()).epsilon(1e-12));
}

}  // namespace BLOCKLAB_TEST_FILE
