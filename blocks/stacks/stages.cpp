#include "blocks/stacks/stages.h"

#include "blocks/common/init.h"
#include "blocks/common/layer_error.h"
#include "blocks/common/options.h"
#include "blocks/stacks/plain.h"

namespace blocklab {

namespace {

const Schema& stages_schema() {
  static const Schema schema = [] {
    Schema s;
    ConfigNode depths = ConfigNode::sequence();
    for (int d : {2, 2}) depths.push_back(ConfigNode::integer(d));
    s.add(ParamSpec{
        "depths", ParamType::IntList, depths, false, false, 1.0, {}, {}, {}, {}, "blocks per stage (default [2, 2])"});
    s.add(ParamSpec{"dims",
                    ParamType::IntList,
                    ConfigNode::sequence(),
                    false,
                    false,
                    1.0,
                    {},
                    {},
                    {},
                    {},
                    "width per stage; [] = the stem's width, doubling each stage (default [])"});
    s.add_choice("downsample", "merge", {"merge", "conv", "residual"},
                 "between stages: Swin patch merging (merge, default), a strided 2x2 convolution (conv), or "
                 "ViT-ResNAS's residual spatial reduction (residual: any grid, halved rounding up)");
    rate(s.add_float("drop_path", 0.1, "stochastic depth of the last block, linear from 0 (default 0.1)"));
    s.add(layers_param());
    return s;
  }();
  return schema;
}

// The stage grids must fit: no prefix tokens, a grid that halves S-1 times, widths that match.
void check_stages(const StackArgs& args, const StagesOptions& o, const ConfigNode& params) {
  const auto stages = static_cast<std::int64_t>(o.depths().size());
  if (stages == 0) config_fail(params, "depths", "stack/stages needs at least one stage", {"e.g. depths: [2, 2]"});
  if (!o.dims().empty() && static_cast<std::int64_t>(o.dims().size()) != stages)
    config_fail(params, "dims", std::to_string(o.dims().size()) + " widths for " + std::to_string(stages) + " stages",
                {"give one width per stage, or dims: [] to double the stem's width each stage"});
  if (!o.dims().empty() && o.dims().front() != args.dim)
    config_fail(params, "dims",
                "the first stage's width " + std::to_string(o.dims().front()) + " is not the stem's width " +
                    std::to_string(args.dim),
                {"set dims[0] to the model's dim (" + std::to_string(args.dim) + ")"});
  if (o.downsample() == "residual")
    for (std::size_t s = 1; s < o.dims().size(); ++s)
      if (o.dims()[s] < o.dims()[s - 1])
        config_fail(params, "dims",
                    "residual spatial reduction pads the width, it cannot narrow it (stage " + std::to_string(s) +
                        ": " + std::to_string(o.dims()[s - 1]) + " -> " + std::to_string(o.dims()[s]) + ")",
                    {"widths that do not decrease, or downsample: conv"});
  if (!args.layout.has_grid() || args.layout.prefix_tokens != 0)
    config_fail(params, "depths", "stack/stages needs tokens on a grid without class tokens",
                {"use stem/patch with class_token: false (and pool: mean)"});
  const std::int64_t scale = std::int64_t{1} << (stages - 1);
  if (o.downsample() != "residual" && (args.layout.grid_height % scale != 0 || args.layout.grid_width % scale != 0))
    config_fail(params, "depths",
                std::to_string(stages) + " stages halve the token grid " + std::to_string(stages - 1) +
                    " times, but the stem's grid " + std::to_string(args.layout.grid_height) + "x" +
                    std::to_string(args.layout.grid_width) + " is not divisible by " + std::to_string(scale),
                {"fewer stages, or a smaller patch so the grid is divisible by " + std::to_string(scale)});
}

StagesOptions bind_stages(const ConfigNode& params) {
  check_params(params, stages_schema());
  const ParamReader r(params, stages_schema(), "");
  return StagesOptions()
      .depths(r.get_int_list("depths"))
      .dims(r.get_int_list("dims"))
      .downsample(r.get_string("downsample"))
      .drop_path(r.get_float("drop_path"))
      .layers(r.get_node("layers"));
}

}  // namespace

torch::Tensor residual_spatial_reduction(const torch::Tensor& x, std::int64_t h, std::int64_t w,
                                         const torch::Tensor& norm_weight, const torch::Tensor& norm_bias,
                                         const torch::Tensor& conv_weight, const torch::Tensor& conv_bias,
                                         const torch::Tensor& pos_embed) {
  namespace F = torch::nn::functional;
  const auto b = x.size(0), c = x.size(2), out_dim = conv_weight.size(0);
  const auto normed = torch::layer_norm(x, {c}, norm_weight, norm_bias, 1e-6);
  const auto as_grid = [&](const torch::Tensor& t) { return t.reshape({b, h, w, c}).permute({0, 3, 1, 2}); };
  const auto reduced =
      F::conv2d(as_grid(normed), conv_weight, F::Conv2dFuncOptions().bias(conv_bias).stride(2).padding(1));
  const auto pooled = F::avg_pool2d(as_grid(x), F::AvgPool2dFuncOptions(2).stride(2).ceil_mode(true));
  const auto tokens = [](const torch::Tensor& t) { return t.flatten(2).transpose(1, 2); };
  return tokens(reduced) + pos_embed + F::pad(tokens(pooled), F::PadFuncOptions({0, out_dim - c}));
}

DownsampleImpl::DownsampleImpl(const std::string& kind, std::int64_t in_dim, std::int64_t out_dim,
                               std::int64_t tokens_out)
    : kind_(kind) {
  if (kind == "merge") {
    norm = register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({4 * in_dim})));
    reduction =
        register_module("reduction", torch::nn::Linear(torch::nn::LinearOptions(4 * in_dim, out_dim).bias(false)));
  } else if (kind == "conv") {
    conv = register_module("conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(in_dim, out_dim, 2).stride(2)));
  } else {  // residual
    if (out_dim < in_dim)
      throw std::invalid_argument("residual spatial reduction cannot narrow the width (" + std::to_string(in_dim) +
                                  " -> " + std::to_string(out_dim) + ")");
    norm = register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({in_dim}).eps(1e-6)));
    conv =
        register_module("conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(in_dim, out_dim, 3).stride(2).padding(1)));
    pos_embed = register_parameter("pos_embed", torch::zeros({1, tokens_out, out_dim}));
    torch::NoGradGuard no_grad;
    trunc_normal_(pos_embed, 0.02);
  }
}

torch::Tensor DownsampleImpl::forward(const torch::Tensor& x, std::int64_t h, std::int64_t w) {
  const auto b = x.size(0), c = x.size(2);
  const torch::Tensor grid = x.reshape({b, h, w, c});
  if (kind_ == "conv") return conv->forward(grid.permute({0, 3, 1, 2})).flatten(2).transpose(1, 2);
  if (kind_ == "residual")
    return residual_spatial_reduction(x, h, w, norm->weight, norm->bias, conv->weight, conv->bias, pos_embed);
  using torch::indexing::None;
  using torch::indexing::Slice;
  // Swin's order: (0,0), (1,0), (0,1), (1,1) of each 2x2 group.
  const torch::Tensor merged = torch::cat({grid.index({Slice(), Slice(0, None, 2), Slice(0, None, 2)}),
                                           grid.index({Slice(), Slice(1, None, 2), Slice(0, None, 2)}),
                                           grid.index({Slice(), Slice(0, None, 2), Slice(1, None, 2)}),
                                           grid.index({Slice(), Slice(1, None, 2), Slice(1, None, 2)})},
                                          -1);
  return reduction->forward(norm->forward(merged.reshape({b, (h / 2) * (w / 2), 4 * c})));
}

StagesStackImpl::StagesStackImpl(const StackArgs& args, const StagesOptions& o) {
  check_stages(args, o, {});
  const auto stages = static_cast<std::int64_t>(o.depths().size());
  dims_ = o.dims();
  if (dims_.empty())
    for (std::int64_t s = 0; s < stages; ++s) dims_.push_back(args.dim << s);
  for (std::int64_t s = 0; s < stages; ++s)
    for (std::int64_t i = 0; i < o.depths()[static_cast<std::size_t>(s)]; ++i) stage_of_.push_back(s);
  const auto depth = static_cast<std::int64_t>(stage_of_.size());
  const std::vector<LayerSpec> plan = plan_layers(depth, args.defaults, o.layers(), args.path + ".layers", stage_of_);
  block_list = register_module("blocks", torch::nn::ModuleList());
  downsample_list = register_module("downsample", torch::nn::ModuleList());
  std::int64_t grid_h = args.layout.grid_height, grid_w = args.layout.grid_width;
  for (std::int64_t i = 0; i < depth; ++i) {
    const std::int64_t s = stage_of_[static_cast<std::size_t>(i)];
    if (i > 0 && s != stage_of_[static_cast<std::size_t>(i - 1)]) {
      const bool ceil = o.downsample() == "residual";  // the others need (and get) even grids
      grid_h = ceil ? (grid_h + 1) / 2 : grid_h / 2, grid_w = ceil ? (grid_w + 1) / 2 : grid_w / 2;
      downsamples.push_back(Downsample(o.downsample(), dims_[static_cast<std::size_t>(s - 1)],
                                       dims_[static_cast<std::size_t>(s)], grid_h * grid_w));
      downsample_list->push_back(downsamples.back());
    }
    const std::int64_t tokens = grid_h * grid_w;
    const BlockArgs block_args{dims_[static_cast<std::size_t>(s)],
                               tokens,
                               {},
                               {},
                               drop_path_rate(o.drop_path(), i, depth),
                               i,
                               depth,
                               grid_h,
                               grid_w};
    blocks.push_back(build_layer(plan[static_cast<std::size_t>(i)], i, block_args));
    block_list->push_back(blocks.back());
    mixer_keys_.push_back(layer_mixer_key(plan[static_cast<std::size_t>(i)]));
  }
  out_tokens_ = grid_h * grid_w;
}

Tokens StagesStackImpl::forward(Tokens tokens, AttentionProbe* probe) {
  MixerContext ctx = tokens.layout;
  ctx.probe = probe;
  std::size_t next_downsample = 0;
  for (std::size_t i = 0; i < blocks.size(); ++i) {
    if (i > 0 && stage_of_[i] != stage_of_[i - 1]) {
      Downsample& down = downsamples[next_downsample++];
      tokens.x = down->forward(tokens.x, ctx.grid_height, ctx.grid_width);
      ctx.grid_height = down->half_grid(ctx.grid_height), ctx.grid_width = down->half_grid(ctx.grid_width);
    }
    ctx.layer = static_cast<int>(i);
    tokens.x = within_layer([&] { return layer_name(static_cast<std::int64_t>(i)); },
                            [&] { return blocks[i]->forward(tokens.x, ctx); });
  }
  tokens.layout.grid_height = ctx.grid_height;
  tokens.layout.grid_width = ctx.grid_width;
  return tokens;
}

std::string StagesStackImpl::layer_name(std::int64_t i) const {
  const std::string& key = mixer_keys_.at(static_cast<std::size_t>(i));
  return "model.blocks." + std::to_string(i) + " (stage " + std::to_string(stage_of_.at(static_cast<std::size_t>(i))) +
         (key.empty() ? "" : ", " + key) + ")";
}

namespace {

BLOCKLAB_REGISTER(stack_registry(),
                  BLOCKLAB_ENTRY("stack/stages")
                      .summary("hierarchical stages: per-stage depth and width, the grid halved between stages by "
                               "patch merging, a strided convolution or ViT-ResNAS's residual spatial reduction")
                      .paper("Swin Transformer: Hierarchical Vision Transformer using Shifted Windows (Liu et al., "
                             "2021), arXiv:2103.14030")
                      .equation("stage s: depths[s] blocks at width dims[s] on grid H/2^s x W/2^s; "
                                "x' = W LN([x_{2i,2j}; x_{2i+1,2j}; x_{2i,2j+1}; x_{2i+1,2j+1}])")
                      .schema(stages_schema())
                      .example("{depths: [1, 1], layers: {deep: {stage: 1, mixer: {heads: 2}}}}"),
                  [](const ConfigNode& params, const StackArgs& args) -> Stack {
                    const StagesOptions options = bind_stages(params);
                    check_stages(args, options, params);
                    return std::make_shared<StagesStackImpl>(args, options);
                  });

}  // namespace
}  // namespace blocklab
