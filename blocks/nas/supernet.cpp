#include "blocks/nas/supernet.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "blocks/common/ffn.h"
#include "blocks/common/init.h"
#include "blocks/common/options.h"
#include "blocks/common/weight_decay.h"
#include "registry/yaml_io.h"

namespace blocklab {

namespace {

// ---- the attention-type mixers' kernels: q, k, v [B, h, N, d] -> [B, h, N, d] -------------------

using AttentionKernel = torch::Tensor (*)(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v);

// softmax(q k^T / sqrt(d)) v: Vaswani et al. 2017, arXiv:1706.03762, eq. (1).
torch::Tensor softmax_kernel(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  return torch::softmax(q.matmul(k.transpose(-2, -1)) * scale, -1).matmul(v);
}

// phi(q_i)^T sum_j phi(k_j) v_j^T / (phi(q_i)^T sum_j phi(k_j) + eps), phi = elu + 1:
// Katharopoulos et al. 2020, arXiv:2006.16236, eqs. (4)-(7), with linear/elu's eps (1e-6).
torch::Tensor elu_kernel(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
  const auto fq = torch::elu(q) + 1, fk = torch::elu(k) + 1;
  const auto kv = fk.transpose(-2, -1).matmul(v);                        // [B, h, d, d]
  const auto normaliser = (fq * fk.sum(-2, true)).sum(-1, true) + 1e-6;  // [B, h, N, 1]
  return fq.matmul(kv) / normaliser;
}

// An attention type: its kernel and the multiply-adds of that kernel per head, for N tokens of
// head width d (softmax: Q K^T and A V; elu: phi(K)^T V and phi(Q) (KV)).
struct AttentionType {
  AttentionKernel kernel;
  double (*macs_per_head)(double n, double d);
};

const std::map<std::string, AttentionType>& attention_kernels() {
  static const std::map<std::string, AttentionType> kernels{
      {"attention/softmax", {softmax_kernel, [](double n, double d) { return 2 * n * n * d; }}},
      {"linear/elu", {elu_kernel, [](double n, double d) { return 2 * n * d * d; }}}};
  return kernels;
}

std::string attention_kernel_names() {
  std::string names;
  for (const auto& [key, type] : attention_kernels()) names += (names.empty() ? "" : ", ") + key;
  return names;
}

torch::Tensor layer_norm_slice(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias) {
  return torch::layer_norm(x, {x.size(-1)}, weight, bias, 1e-6);
}

}  // namespace

bool is_attention_type_mixer(const std::string& key) { return attention_kernels().count(key) > 0; }

// ---- one layer ---------------------------------------------------------------------------------

SupernetLayerImpl::SupernetLayerImpl(const SearchSpace& space, std::int64_t tokens, const MixerContext& layout)
    : max_heads_(space.max_heads()), head_dim_(space.head_dim) {
  const auto c = space.max_width(), inner = max_heads_ * head_dim_;
  const auto hidden = hidden_width(space.max_mlp_ratio(), c);
  const auto ln = torch::nn::LayerNormOptions({c}).eps(1e-6);
  norm1 = register_module("norm1", torch::nn::LayerNorm(ln));
  qkv = register_module("qkv", torch::nn::Linear(c, 3 * inner));
  proj = register_module("proj", torch::nn::Linear(inner, c));
  norm2 = register_module("norm2", torch::nn::LayerNorm(ln));
  fc1 = register_module("fc1", torch::nn::Linear(c, hidden));
  fc2 = register_module("fc2", torch::nn::Linear(hidden, c));
  for (const auto& key : space.mixers) {
    if (is_attention_type_mixer(key)) continue;
    MixerArgs args{c, tokens, 0, space.max_depth(), layout.grid_height, layout.grid_width};
    TokenMixer mixer = mixer_registry().create(ConfigNode::string(key), args);
    if (!mixer->parameters().empty())
      throw std::invalid_argument("supernet: mixer " + key +
                                  " has weights but no elastic form; a supernet layer offers the attention-type "
                                  "mixers (" +
                                  attention_kernel_names() + ") and mixers without weights (mixer/pooling)");
    weightless[key] = register_module("weightless_" + std::to_string(weightless.size()), mixer);
  }
}

std::map<std::string, torch::Tensor> SupernetLayerImpl::slices(std::int64_t width, const LayerChoice& choice) const {
  const auto c = width, hidden = hidden_width(choice.mlp_ratio, width);
  std::map<std::string, torch::Tensor> w{
      {"norm1.weight", norm1->weight.narrow(0, 0, c)},
      {"norm1.bias", norm1->bias.narrow(0, 0, c)},
      {"norm2.weight", norm2->weight.narrow(0, 0, c)},
      {"norm2.bias", norm2->bias.narrow(0, 0, c)},
      {"channel.fc1.weight", fc1->weight.narrow(0, 0, hidden).narrow(1, 0, c)},
      {"channel.fc1.bias", fc1->bias.narrow(0, 0, hidden)},
      {"channel.fc2.weight", fc2->weight.narrow(0, 0, c).narrow(1, 0, hidden)},
      {"channel.fc2.bias", fc2->bias.narrow(0, 0, c)},
  };
  if (!is_attention_type_mixer(choice.mixer)) return w;
  // The first h heads of each of W_Q, W_K, W_V (rows [part * H_max d, part * H_max d + h d)).
  const auto inner = choice.heads * head_dim_, part = max_heads_ * head_dim_;
  std::vector<torch::Tensor> weights, biases;
  for (std::int64_t p = 0; p < 3; ++p) {
    weights.push_back(qkv->weight.narrow(0, p * part, inner).narrow(1, 0, c));
    biases.push_back(qkv->bias.narrow(0, p * part, inner));
  }
  w["mixer.qkv.weight"] = torch::cat(weights, 0);
  w["mixer.qkv.bias"] = torch::cat(biases, 0);
  w["mixer.proj.weight"] = proj->weight.narrow(0, 0, c).narrow(1, 0, inner);
  w["mixer.proj.bias"] = proj->bias.narrow(0, 0, c);
  return w;
}

torch::Tensor SupernetLayerImpl::forward(const torch::Tensor& x, std::int64_t width, const LayerChoice& choice,
                                         const MixerContext& ctx, AttentionRelations* capture) {
  auto w = slices(width, choice);
  const auto h = layer_norm_slice(x, w["norm1.weight"], w["norm1.bias"]);
  torch::Tensor mixed;
  if (is_attention_type_mixer(choice.mixer)) {
    const auto b = x.size(0), n = x.size(1), heads = choice.heads;
    const auto y = torch::linear(h, w["mixer.qkv.weight"], w["mixer.qkv.bias"]);
    const auto split = [&](std::int64_t p) {
      return y.narrow(-1, p * heads * head_dim_, heads * head_dim_).view({b, n, heads, head_dim_}).transpose(1, 2);
    };
    if (capture)
      *capture = {y.narrow(-1, 0, heads * head_dim_), y.narrow(-1, heads * head_dim_, heads * head_dim_),
                  y.narrow(-1, 2 * heads * head_dim_, heads * head_dim_)};
    const auto o = attention_kernels().at(choice.mixer).kernel(split(0), split(1), split(2));
    mixed = torch::linear(o.transpose(1, 2).reshape({b, n, heads * head_dim_}), w["mixer.proj.weight"],
                          w["mixer.proj.bias"]);
  } else {
    mixed = weightless.at(choice.mixer)->forward(h, ctx);
  }
  const auto u = x + mixed;
  const auto g = layer_norm_slice(u, w["norm2.weight"], w["norm2.bias"]);
  const auto hidden = torch::gelu(torch::linear(g, w["channel.fc1.weight"], w["channel.fc1.bias"]));
  return u + torch::linear(hidden, w["channel.fc2.weight"], w["channel.fc2.bias"]);
}

// ---- the supernet ------------------------------------------------------------------------------

namespace {

class SupernetNoDecay : public DeclaresNoWeightDecay {
 public:
  std::vector<std::string> no_weight_decay() const override { return {"pos_embed"}; }
};

// The supernet as a module that also declares its position table without decay.
class DeclaringSupernetImpl : public SupernetImpl, public SupernetNoDecay {
 public:
  using SupernetImpl::SupernetImpl;
};

}  // namespace

SupernetImpl::SupernetImpl(const SearchSpace& space, const ModelInputs& inputs, std::int64_t outputs,
                           std::int64_t patch, std::vector<std::int64_t> reductions)
    : space_(space), subnet_(largest_subnet(space)), patch_(patch), reductions_(std::move(reductions)) {
  const auto c = space.max_width();
  layout_.grid_height = inputs.height / patch;
  layout_.grid_width = inputs.width / patch;
  const auto tokens = layout_.grid_height * layout_.grid_width;
  patch_embed = register_module("patch_embed",
                                torch::nn::Conv2d(torch::nn::Conv2dOptions(inputs.channels, c, patch).stride(patch)));
  pos_embed = register_parameter("pos_embed", torch::zeros({1, tokens, c}));
  layer_list = register_module("layers", torch::nn::ModuleList());
  if (!reductions_.empty()) reduction_list = register_module("reductions", torch::nn::ModuleList());
  MixerContext layout = layout_;
  for (std::int64_t i = 0; i < space.max_depth(); ++i) {
    if (reduction_modules_.size() < reductions_.size() && reductions_[reduction_modules_.size()] == i) {
      layout.grid_height = (layout.grid_height + 1) / 2, layout.grid_width = (layout.grid_width + 1) / 2;
      reduction_modules_.push_back(Downsample("residual", c, c, layout.grid_height * layout.grid_width));
      reduction_list->push_back(reduction_modules_.back());
    }
    layers_.push_back(SupernetLayer(space, layout.grid_height * layout.grid_width, layout));
    layer_list->push_back(layers_.back());
  }
  norm = register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c}).eps(1e-6)));
  init_vit_weights(*this);  // as the composed model: Linear trunc-normal 0.02, LayerNorm 1 / 0
  head = register_module("head", torch::nn::Linear(c, outputs));
  torch::NoGradGuard no_grad;
  trunc_normal_(pos_embed, 0.02);
  trunc_normal_(head->weight, 0.02);
  head->bias.zero_();
}

void SupernetImpl::set_subnet(const Subnet& subnet) {
  if (const auto problem = subnet_problem(subnet, space_); !problem.empty())
    throw std::invalid_argument("supernet: the subnet is not in the space: " + problem);
  subnet_ = subnet;
}

torch::Tensor SupernetImpl::forward(const torch::Tensor& images, AttentionProbe*, const torch::Tensor&) {
  return run(images, nullptr);
}

torch::Tensor SupernetImpl::forward_relations(const torch::Tensor& images, AttentionRelations& relations) {
  relations = {};
  const auto logits = run(images, &relations);
  if (!relations.q.defined())
    throw std::invalid_argument("supernet: the subnet " + subnet_key(subnet_) +
                                " has no attention-type layer to take relations from");
  return logits;
}

torch::Tensor SupernetImpl::run(const torch::Tensor& images, AttentionRelations* capture) {
  const auto c = subnet_.width;
  auto x =
      torch::conv2d(images, patch_embed->weight.narrow(0, 0, c), patch_embed->bias.narrow(0, 0, c), {patch_, patch_});
  x = x.flatten(2).transpose(1, 2) + pos_embed.narrow(2, 0, c);
  MixerContext ctx = layout_;
  for (std::int64_t i = 0, next = 0; i < subnet_.depth(); ++i) {
    if (next < static_cast<std::int64_t>(reductions_.size()) && reductions_[static_cast<std::size_t>(next)] == i) {
      const Downsample& r = reduction_modules_[static_cast<std::size_t>(next++)];
      x = residual_spatial_reduction(x, ctx.grid_height, ctx.grid_width, r->norm->weight.narrow(0, 0, c),
                                     r->norm->bias.narrow(0, 0, c), r->conv->weight.narrow(0, 0, c).narrow(1, 0, c),
                                     r->conv->bias.narrow(0, 0, c), r->pos_embed.narrow(2, 0, c));
      ctx.grid_height = r->half_grid(ctx.grid_height), ctx.grid_width = r->half_grid(ctx.grid_width);
    }
    ctx.layer = static_cast<int>(i);
    x = layers_[static_cast<std::size_t>(i)]->forward(x, c, subnet_.layers[static_cast<std::size_t>(i)], ctx, capture);
  }
  x = layer_norm_slice(x.mean(1), norm->weight.narrow(0, 0, c), norm->bias.narrow(0, 0, c));
  return torch::linear(x, head->weight.narrow(1, 0, c), head->bias);
}

ConfigNode SupernetImpl::subnet_config(const Subnet& subnet) const {
  const auto parse = [](const std::string& yaml) { return parse_yaml(yaml, "<supernet>"); };
  ConfigNode model = parse("{type: model/composed, pool: mean, norm: true, block: prenorm}");
  model.set("dim", ConfigNode::integer(subnet.width));
  ConfigNode stem = parse("{type: stem/patch, pos: learned, class_token: false}");
  stem.set("patch", ConfigNode::integer(patch_));
  model.set("stem", stem);
  const std::int64_t active = active_reductions(subnet.depth());
  ConfigNode stack = parse(active == 0 ? "{type: stack/plain, drop_path: 0.0}"
                                       : "{type: stack/stages, downsample: residual, drop_path: 0.0}");
  if (active == 0) {
    stack.set("depth", ConfigNode::integer(subnet.depth()));
  } else {  // stages split at the reductions that run, all of width C
    ConfigNode depths = ConfigNode::sequence(), dims = ConfigNode::sequence();
    std::int64_t start = 0;
    for (std::int64_t k = 0; k <= active; ++k) {
      const std::int64_t end = k < active ? reductions_[static_cast<std::size_t>(k)] : subnet.depth();
      depths.push_back(ConfigNode::integer(end - start));
      dims.push_back(ConfigNode::integer(subnet.width));
      start = end;
    }
    stack.set("depths", depths);
    stack.set("dims", dims);
  }
  ConfigNode layers = ConfigNode::map();
  for (std::size_t i = 0; i < subnet.layers.size(); ++i) {
    const auto& choice = subnet.layers[i];
    ConfigNode mixer = ConfigNode::map();
    mixer.set("type", ConfigNode::string(choice.mixer));
    if (is_attention_type_mixer(choice.mixer)) {
      mixer.set("heads", ConfigNode::integer(choice.heads));
      mixer.set("head_dim", ConfigNode::integer(space_.head_dim));
    }
    ConfigNode channel = parse("{type: mlp}");
    channel.set("ratio", ConfigNode::floating(choice.mlp_ratio));
    ConfigNode layer = ConfigNode::map();
    layer.set("at", ConfigNode::integer(static_cast<std::int64_t>(i)));
    layer.set("mixer", mixer);
    layer.set("channel", channel);
    layers.set("l" + std::to_string(i), layer);
  }
  stack.set("layers", layers);
  model.set("stack", stack);
  return model;
}

std::map<std::string, torch::Tensor> SupernetImpl::subnet_weights(const Subnet& subnet) const {
  const auto c = subnet.width;
  std::map<std::string, torch::Tensor> w{
      {"stem.patch_embed.weight", patch_embed->weight.narrow(0, 0, c)},
      {"stem.patch_embed.bias", patch_embed->bias.narrow(0, 0, c)},
      {"stem.pos_embed", pos_embed.narrow(2, 0, c)},
      {"norm.weight", norm->weight.narrow(0, 0, c)},
      {"norm.bias", norm->bias.narrow(0, 0, c)},
      {"head.fc.weight", head->weight.narrow(1, 0, c)},
      {"head.fc.bias", head->bias},
  };
  for (std::size_t i = 0; i < subnet.layers.size(); ++i)
    for (auto& [name, tensor] : layers_[i]->slices(c, subnet.layers[i]))
      w["stack.blocks." + std::to_string(i) + "." + name] = tensor;
  for (std::int64_t k = 0; k < active_reductions(subnet.depth()); ++k) {
    const Downsample& r = reduction_modules_[static_cast<std::size_t>(k)];
    const std::string at = "stack.downsample." + std::to_string(k) + ".";
    w[at + "norm.weight"] = r->norm->weight.narrow(0, 0, c);
    w[at + "norm.bias"] = r->norm->bias.narrow(0, 0, c);
    w[at + "conv.weight"] = r->conv->weight.narrow(0, 0, c).narrow(1, 0, c);
    w[at + "conv.bias"] = r->conv->bias.narrow(0, 0, c);
    w[at + "pos_embed"] = r->pos_embed.narrow(2, 0, c);
  }
  return w;
}

std::int64_t SupernetImpl::active_reductions(std::int64_t depth) const {
  return std::count_if(reductions_.begin(), reductions_.end(), [&](std::int64_t j) { return j < depth; });
}

std::vector<std::int64_t> SupernetImpl::layer_tokens() const {
  std::vector<std::int64_t> tokens;
  std::int64_t h = layout_.grid_height, w = layout_.grid_width;
  for (std::int64_t i = 0; i < space_.max_depth(); ++i) {
    if (std::count(reductions_.begin(), reductions_.end(), i)) h = (h + 1) / 2, w = (w + 1) / 2;
    tokens.push_back(h * w);
  }
  return tokens;
}

void SupernetImpl::export_weights(const Subnet& subnet, torch::nn::Module& model) const {
  auto weights = subnet_weights(subnet);
  torch::NoGradGuard no_grad;
  for (auto& p : model.named_parameters()) {
    const auto it = weights.find(p.key());
    if (it == weights.end()) throw std::logic_error("supernet export: no slice for the subnet's parameter " + p.key());
    if (!it->second.sizes().equals(p.value().sizes()))
      throw std::logic_error("supernet export: " + p.key() + " is " + c10::str(p.value().sizes()) + ", the slice " +
                             c10::str(it->second.sizes()));
    p.value().copy_(it->second);
    weights.erase(it);
  }
  if (!weights.empty())
    throw std::logic_error("supernet export: the subnet's model has no parameter " + weights.begin()->first);
}

std::int64_t SupernetImpl::subnet_parameters(const Subnet& subnet) const {
  std::int64_t n = 0;
  for (const auto& [name, tensor] : subnet_weights(subnet)) n += tensor.numel();
  return n;
}

double SupernetImpl::subnet_macs(const Subnet& subnet) const {
  const auto c = static_cast<double>(subnet.width);
  const auto& w = patch_embed->weight;  // [C_max, channels, patch, patch]
  double macs = static_cast<double>(pos_embed.size(1)) * c * static_cast<double>(w.size(1) * w.size(2) * w.size(3)) +
                c * static_cast<double>(head->weight.size(0));
  const auto d = static_cast<double>(space_.head_dim);
  const std::vector<std::int64_t> tokens = layer_tokens();
  for (std::size_t i = 0; i < subnet.layers.size(); ++i) {
    const auto& l = subnet.layers[i];
    const auto n = static_cast<double>(tokens[i]);
    if (std::count(reductions_.begin(), reductions_.end(), static_cast<std::int64_t>(i)))
      macs += n * c * c * 9;  // the reduction's 3x3 convolution onto this layer's grid
    macs += 2 * n * c * static_cast<double>(hidden_width(l.mlp_ratio, subnet.width));  // W_1, W_2
    if (!is_attention_type_mixer(l.mixer)) continue;
    const double inner = static_cast<double>(l.heads) * d;
    macs += 4 * n * c * inner;  // W_Q, W_K, W_V, W_O
    macs += static_cast<double>(l.heads) * attention_kernels().at(l.mixer).macs_per_head(n, d);
  }
  return macs;
}

// ---- the registry entry ------------------------------------------------------------------------

namespace {

ConfigNode supernet_int_list(std::initializer_list<std::int64_t> values) {
  ConfigNode list = ConfigNode::sequence();
  for (auto v : values) list.push_back(ConfigNode::integer(v));
  return list;
}

}  // namespace

const Schema& supernet_schema() {
  static const Schema schema = [] {
    Schema s;
    s.add_int("patch", 4, "patch size of the stem (default 4: a 7x7 grid on 28x28 images)").min = 1;
    const auto list = [&](const std::string& name, ParamType type, ConfigNode def, const std::string& doc) {
      ParamSpec spec;
      spec.name = name, spec.type = type, spec.default_value = std::move(def), spec.doc = doc;
      if (type != ParamType::StringList) spec.min = type == ParamType::FloatList ? 1e-3 : 1.0;
      s.add(spec);
    };
    list("depths", ParamType::IntList, supernet_int_list({2, 3, 4, 5}), "layer counts (default [2, 3, 4, 5])");
    list("widths", ParamType::IntList, supernet_int_list({32, 48, 64, 80}),
         "embedding widths C (default [32, 48, 64, 80])");
    list("heads", ParamType::IntList, supernet_int_list({1, 2, 4}), "attention heads per layer (default [1, 2, 4])");
    ConfigNode ratios = ConfigNode::sequence();
    for (double r : {1.0, 2.0, 3.0}) ratios.push_back(ConfigNode::floating(r));
    list("mlp_ratios", ParamType::FloatList, ratios, "MLP hidden width / C per layer (default [1, 2, 3])");
    ConfigNode mixers = ConfigNode::sequence();
    for (const char* m : {"attention/softmax", "linear/elu", "mixer/pooling"}) mixers.push_back(ConfigNode::string(m));
    list("mixers", ParamType::StringList, mixers,
         "token mixers per layer, most capable first: attention types share Q/K/V/O (attention/softmax, "
         "linear/elu), weightless mixers as registered (default [attention/softmax, linear/elu, mixer/pooling])");
    s.add_int("head_dim", 16, "width of every attention head (default 16)").min = 1;
    s.add_int("subspaces", 1,
              "AutoDistil's sub-spaces: the widths, smallest first, split into this many contiguous groups, "
              "one supernet each (default 1: the whole space)")
        .min = 1;
    s.add_int("subspace", 0, "which of the sub-spaces this supernet trains, 0 = the smallest widths (default 0)").min =
        0;
    list("reductions", ParamType::IntList, ConfigNode::sequence(),
         "ViT-ResNAS's residual spatial reductions: the layers before which the token grid is halved, "
         "increasing (default [])");
    return s;
  }();
  return schema;
}

namespace {

// AutoDistil's partition into K compact sub-spaces (Xu et al. 2022, §3.1: students of very
// different size interfere in one supernet), here by width: the sorted widths in K contiguous
// groups, the first groups one longer when K does not divide them.
std::vector<std::int64_t> subspace_widths(std::vector<std::int64_t> widths, std::int64_t subspaces,
                                          std::int64_t subspace, const ConfigNode& params) {
  const auto n = static_cast<std::int64_t>(widths.size());
  if (subspaces > n)
    config_fail(params, "subspaces", std::to_string(subspaces) + " sub-spaces of " + std::to_string(n) + " widths",
                {"at most one sub-space per width"});
  if (subspace >= subspaces)
    config_fail(params, "subspace",
                "sub-space " + std::to_string(subspace) + " of " + std::to_string(subspaces) + " (0.." +
                    std::to_string(subspaces - 1) + ")");
  if (subspaces == 1) return widths;  // as given: the order is part of what a seed draws
  std::sort(widths.begin(), widths.end());
  const auto base = n / subspaces, extra = n % subspaces;
  const auto begin = subspace * base + std::min(subspace, extra);
  const auto size = base + (subspace < extra ? 1 : 0);
  return {widths.begin() + begin, widths.begin() + begin + size};
}

}  // namespace

SearchSpace supernet_space(const ConfigNode& params) {
  const ParamReader r(params, supernet_schema(), "");
  SearchSpace space;
  space.depths = r.get_int_list("depths");
  space.widths = r.get_int_list("widths");
  space.heads = r.get_int_list("heads");
  space.mlp_ratios = r.get_float_list("mlp_ratios");
  space.mixers = r.get_string_list("mixers");
  space.head_dim = r.get_int("head_dim");
  for (const char* name : {"depths", "widths", "heads", "mlp_ratios", "mixers"})
    if (r.get_node(name).items().empty()) config_fail(params, name, std::string(name) + " needs at least one choice");
  space.widths = subspace_widths(space.widths, r.get_int("subspaces"), r.get_int("subspace"), params);
  for (const auto& key : space.mixers)  // an unknown key: ConfigError with the nearest names
    if (!mixer_registry().contains(key)) mixer_registry().info(key, r.get_node("mixers").source(), "mixers");
  return space;
}

namespace {

Network make_supernet(const ConfigNode& params, const ModelArgs& args) {
  check_params(params, supernet_schema());
  const SearchSpace space = supernet_space(params);
  const ParamReader r(params, supernet_schema(), "");
  const auto patch = r.get_int("patch");
  const auto& in = args.inputs;
  if (in.height <= 0 || in.width <= 0 || in.height % patch != 0 || in.width % patch != 0)
    config_fail(params, "patch",
                "model/supernet needs images whose size the patch divides, got " + std::to_string(in.height) + "x" +
                    std::to_string(in.width) + " with patch " + std::to_string(patch));
  if (component_key(args.head) != "linear" || (args.head.is_map() && args.head.keys().size() > 1))
    throw ConfigError("model/supernet has its own elastic linear head; the task's head must be plain linear",
                      args.head.source(), "head", {"head: {type: linear}"});
  const std::vector<std::int64_t> reductions = r.get_int_list("reductions");
  for (std::size_t k = 0; k < reductions.size(); ++k)
    if (reductions[k] >= space.max_depth() || (k > 0 && reductions[k] <= reductions[k - 1]))
      config_fail(params, "reductions",
                  "reductions must increase and name layers 1.." + std::to_string(space.max_depth() - 1) +
                      " (before which the grid is halved), got " + std::to_string(reductions[k]),
                  {"e.g. reductions: [2] to halve the grid before the third layer"});
  try {
    return std::make_shared<DeclaringSupernetImpl>(space, in, args.outputs, patch, reductions);
  } catch (const std::invalid_argument& e) {
    config_fail(params, "mixers", e.what(), {"mixers: [attention/softmax, linear/elu, mixer/pooling]"});
  }
}

BLOCKLAB_REGISTER(model_registry(),
                  BLOCKLAB_ENTRY("model/supernet")
                      .summary("weight-sharing ViT supernet: elastic depth, width, heads and MLP ratio, a token mixer "
                               "per layer (attention types share Q/K/V/O); every subnet is an ordinary model")
                      .paper("AutoFormer (Chen et al., 2021), arXiv:2107.00651; ElasticViT (Tang et al., 2023), "
                             "arXiv:2303.09730; NAS on Efficient Transformers and Beyond (Liu et al., 2022), "
                             "arXiv:2207.13955")
                      .equation("subnet (C, d, h_l, r_l, m_l): the leading slices W[:out, :in] of the largest "
                                "weights; y = head(LN(mean(block_d(...block_1(patch(x))))))")
                      .schema(supernet_schema())
                      .example("{depths: [1, 2], widths: [16, 24], heads: [1, 2], mlp_ratios: [1, 2], head_dim: 8}"),
                  make_supernet);

}  // namespace
}  // namespace blocklab
