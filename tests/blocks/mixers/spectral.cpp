// SpectFormer's spectral gating (GFNet's global filter), tag [mixers]: it equals the explicit
// DFT product (DFT matrices by hand, both an odd and an even grid width); W = 1 is the identity;
// a filter made from a real kernel is that kernel's circular convolution; circular shifts of the
// grid commute with it; its parameter count; its filter is sized by the layer's grid, which the
// stacks pass down (14 x 14 then 7 x 7 in the staged MetaFormer); prefix tokens are not mixed;
// bad options fail at build time. (It learns in a ViT: tests/blocks/trains.cpp.)
#include <catch2/catch.hpp>

#include <cmath>

#include "blocks/mixers/spectral.h"
#include "experiments/model_builder.h"
#include "registry/config_error.h"
#include "registry/yaml_io.h"
#include "tests/blocks/attention/helpers.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;
using attention_tests::close;

namespace {

std::shared_ptr<SpectralGatingImpl> make_spectral(const std::string& yaml, std::int64_t dim, std::int64_t grid_h = 0,
                                                  std::int64_t grid_w = 0) {
  MixerArgs args{dim, 1024};
  args.grid_height = grid_h, args.grid_width = grid_w;
  auto m = std::dynamic_pointer_cast<SpectralGatingImpl>(mixer_registry().create(parse_yaml(yaml, "t.yaml"), args));
  REQUIRE(m);
  m->to(torch::kFloat64);
  return m;
}

MixerContext grid(std::int64_t h, std::int64_t w, std::int64_t prefix = 0) {
  MixerContext ctx;
  ctx.grid_height = h, ctx.grid_width = w, ctx.prefix_tokens = prefix;
  return ctx;
}

torch::Tensor body_image(const torch::Tensor& tokens, std::int64_t prefix, std::int64_t h, std::int64_t w) {
  return tokens.narrow(1, prefix, h * w).transpose(1, 2).reshape({tokens.size(0), tokens.size(2), h, w});
}

// exp(sign 2 pi i k n / size) for k < rows, n < size: [rows, size] complex128.
torch::Tensor dft_matrix(std::int64_t rows, std::int64_t size, double sign) {
  const auto k = torch::arange(rows, torch::kFloat64).unsqueeze(1), n = torch::arange(size, torch::kFloat64);
  const auto angle = k * n * (sign * 2.0 * M_PI / static_cast<double>(size));
  return torch::complex(torch::cos(angle), torch::sin(angle));
}

// rfft2 (ortho), the product with W [C, a, b/2 + 1], and the real inverse by hand:
// y[m, n] = sum_v c_v Re(Z[m, v] e^{2 pi i v n / b}) / sqrt(ab), Z = sum_u Y[u, v] e^{2 pi i u m / a},
// c_v = 1 for the constant (and, b even, the Nyquist) column and 2 for the others.
torch::Tensor spectral_by_hand(const torch::Tensor& image, const torch::Tensor& w) {
  const auto a = image.size(2), b = image.size(3), half = b / 2 + 1;
  const auto fa = dft_matrix(a, a, -1.0), fb = dft_matrix(half, b, -1.0);
  const auto norm = std::sqrt(static_cast<double>(a * b));
  const auto x = torch::complex(image, torch::zeros_like(image));
  const auto spectrum = torch::matmul(torch::matmul(fa, x), fb.transpose(0, 1)) / norm;  // [B, C, a, half]
  const auto z = torch::matmul(dft_matrix(a, a, 1.0).transpose(0, 1), spectrum * w);     // [B, C, a(m), half]
  auto weights = torch::full({half}, 2.0, torch::kFloat64);
  weights[0] = 1.0;
  if (b % 2 == 0) weights[half - 1] = 1.0;
  const auto inverse = dft_matrix(half, b, 1.0) * weights.unsqueeze(1);  // [half, b]
  return torch::real(torch::matmul(z, inverse)) / norm;
}

}  // namespace

TEST_CASE("mixer/spectral: equals the explicit DFT product, odd and even grid widths", "[mixers]") {
  for (const auto& [h, w] : std::vector<std::pair<std::int64_t, std::int64_t>>{{4, 5}, {3, 6}}) {
    DYNAMIC_SECTION(h << "x" << w) {
      torch::manual_seed(2);
      const auto m = make_spectral("{type: mixer/spectral}", 3, h, w);
      torch::NoGradGuard no_grad;
      m->weight.normal_();
      const auto x = torch::randn({2, 1 + h * w, 3}, torch::kFloat64);
      const auto y = m->forward(x, grid(h, w, 1));
      const auto filter = torch::complex(m->weight.select(3, 0), m->weight.select(3, 1)).permute({2, 0, 1});
      const auto expected = spectral_by_hand(body_image(x, 1, h, w), filter);
      CHECK(close(body_image(y, 1, h, w), expected, 1e-12, 1e-10));
      CHECK(torch::equal(y.narrow(1, 0, 1), torch::zeros({2, 1, 3}, torch::kFloat64)));
    }
  }
}

TEST_CASE("mixer/spectral: W = 1 is the identity; a filter from a real kernel is its circular convolution",
          "[mixers]") {
  torch::manual_seed(3);
  const std::int64_t h = 4, w = 6, c = 2;
  const auto m = make_spectral("{type: mixer/spectral, filter_height: 4, filter_width: 6}", c);
  const auto x = torch::randn({2, h * w, c}, torch::kFloat64);
  torch::NoGradGuard no_grad;
  m->weight.zero_();
  m->weight.select(3, 0).fill_(1.0);
  CHECK(close(m->forward(x, grid(h, w)), x, 1e-13, 1e-12));

  // W = rfft2(k) (unnormalised) for a real kernel k: y[i, j] = sum_{p,q} k[p, q] x[(i - p) mod h, (j - q) mod w].
  const auto kernel = torch::randn({c, h, w}, torch::kFloat64);
  const auto spectrum = torch::fft::rfft2(kernel);  // [c, h, w/2 + 1]
  m->weight.copy_(torch::stack({torch::real(spectrum), torch::imag(spectrum)}, -1).permute({1, 2, 0, 3}));
  const auto image = body_image(x, 0, h, w);
  auto expected = torch::zeros_like(image);
  for (std::int64_t p = 0; p < h; ++p)
    for (std::int64_t q = 0; q < w; ++q)
      expected += kernel.select(1, p).select(1, q).view({1, c, 1, 1}) * torch::roll(image, {p, q}, {2, 3});
  CHECK(close(body_image(m->forward(x, grid(h, w)), 0, h, w), expected, 1e-12, 1e-10));
}

TEST_CASE("mixer/spectral: circular shifts of the grid commute with the filter", "[mixers]") {
  torch::manual_seed(4);
  const std::int64_t h = 5, w = 4;
  const auto m = make_spectral("{type: mixer/spectral}", 3, h, w);
  torch::NoGradGuard no_grad;
  m->weight.normal_();
  const auto image = torch::randn({2, 3, h, w}, torch::kFloat64);
  const auto tokens = [](const torch::Tensor& im) { return im.flatten(2).transpose(1, 2); };
  const auto shifted = torch::roll(image, {2, 1}, {2, 3});
  const auto y = body_image(m->forward(tokens(image), grid(h, w)), 0, h, w);
  const auto y_shifted = body_image(m->forward(tokens(shifted), grid(h, w)), 0, h, w);
  CHECK(close(y_shifted, torch::roll(y, {2, 1}, {2, 3}), 1e-12, 1e-10));
}

TEST_CASE("mixer/spectral: 2 a (b/2 + 1) C weights sized by the layer's grid; other grids resample the filter",
          "[mixers]") {
  const auto m = make_spectral("{type: mixer/spectral}", 8, 14, 14);
  CHECK(m->weight.sizes() == torch::IntArrayRef({14, 8, 8, 2}));
  CHECK(attention_tests::parameter_count(*m) == 2 * 14 * (14 / 2 + 1) * 8);
  // Explicit sizes win over the layer's grid.
  CHECK(make_spectral("{type: mixer/spectral, filter_height: 3, filter_width: 5}", 8, 14, 14)->weight.sizes() ==
        torch::IntArrayRef({3, 3, 8, 2}));
  // A constant filter stays constant on another grid: W = 2 doubles the input there too.
  torch::NoGradGuard no_grad;
  m->weight.zero_();
  m->weight.select(3, 0).fill_(2.0);
  const auto x = torch::randn({1, 6 * 5, 8}, torch::kFloat64);
  CHECK(close(m->forward(x, grid(6, 5)), 2.0 * x, 1e-13, 1e-12));
  // At its own grid the filter is the weight itself.
  m->weight.normal_();
  const auto own = m->filter_for(14, 14);
  CHECK(torch::equal(torch::real(own), m->weight.select(3, 0).permute({2, 0, 1})));
  CHECK(torch::equal(torch::imag(own), m->weight.select(3, 1).permute({2, 0, 1})));
}

TEST_CASE("mixer/spectral: the staged MetaFormer sizes each stage's filter by that stage's grid", "[mixers]") {
  DatasetInfo info;
  info.channels = 1, info.height = 28, info.width = 28, info.num_classes = 10;
  const auto model = parse_yaml(R"({type: model/composed, dim: 8, pool: mean,
    stem: {type: stem/patch, patch: 2, pos: learned, class_token: false},
    stack: {type: stack/stages, depths: [1, 1], downsample: conv},
    mixer: {type: mixer/spectral}, channel: {type: mlp, ratio: 2}})",
                                "model.yaml");
  const auto network = build_model(model, parse_yaml("linear", "head.yaml"), info);
  std::vector<std::vector<std::int64_t>> filters;
  for (const auto& p : network->named_parameters())
    if (p.key().find("mixer.weight") != std::string::npos) filters.push_back(p.value().sizes().vec());
  CHECK(filters == std::vector<std::vector<std::int64_t>>{{14, 8, 8, 2}, {7, 4, 16, 2}});
}

TEST_CASE("mixer/spectral: without a grid or with bad sizes it fails at build time", "[mixers]") {
  CHECK_THROWS_AS(make_spectral("{type: mixer/spectral}", 8), ConfigError);
  CHECK_THROWS_AS(make_spectral("{type: mixer/spectral, filter_height: -1}", 8, 4, 4), ConfigError);
  CHECK_THROWS_AS(make_spectral("{type: mixer/spectral, filter_size: 4}", 8, 4, 4), ConfigError);
  const auto m = make_spectral("{type: mixer/spectral}", 8, 4, 4);
  MixerContext causal = grid(4, 4);
  causal.causal = true;
  CHECK_THROWS(m->forward(torch::randn({1, 16, 8}, torch::kFloat64), causal));
}

}  // namespace BLOCKLAB_TEST_FILE
