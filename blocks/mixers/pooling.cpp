#include "blocks/mixers/pooling.h"

#include "blocks/common/grid_mixer.h"
#include "blocks/common/options.h"

namespace blocklab {

PoolingMixerImpl::PoolingMixerImpl(const PoolingMixerOptions& o) : pool_size_(o.pool_size()) {}

MixerCapabilities PoolingMixerImpl::capabilities() const {
  MixerCapabilities c;
  c.needs_grid = true;
  return c;
}

torch::Tensor PoolingMixerImpl::forward(const torch::Tensor& x, const MixerContext& ctx) {
  const auto image = grid_body_image(x, ctx, kKey);
  const auto pooled = torch::avg_pool2d(image, pool_size_, 1, pool_size_ / 2, /*ceil_mode=*/false,
                                        /*count_include_pad=*/false);
  return grid_mixer_output(pooled - image, ctx.prefix_tokens);
}

namespace {

const OptionsSchema<PoolingMixerOptions>& pooling_mixer_schema() {
  static const auto schema = [] {
    OptionsSchema<PoolingMixerOptions> s;
    BLOCKLAB_OPTION(s, pool_size, "pooling window K, odd (PoolFormer: 3; default 3)").min = 1;
    return s;
  }();
  return schema;
}

BLOCKLAB_REGISTER(mixer_registry(),
                  BLOCKLAB_ENTRY(PoolingMixerImpl::kKey)
                      .summary("PoolFormer's token mixer: K x K average pooling (padding not counted) minus the "
                               "input; no weights")
                      .paper("MetaFormer Is Actually What You Need for Vision (Yu et al., 2022), arXiv:2111.11418")
                      .equation("T' = AvgPool_K(T) - T (stride 1, padding K/2, count_include_pad false)")
                      .schema(pooling_mixer_schema().schema())
                      .example("{pool_size: 3}"),
                  [](const ConfigNode& params, const MixerArgs&) -> TokenMixer {
                    const auto o = bind_options(pooling_mixer_schema(), params);
                    if (o.pool_size() % 2 == 0)
                      config_fail(params, "pool_size",
                                  "mixer/pooling: pool_size must be odd (the grid keeps its size), got " +
                                      std::to_string(o.pool_size()));
                    return std::make_shared<PoolingMixerImpl>(o);
                  });

}  // namespace
}  // namespace blocklab
