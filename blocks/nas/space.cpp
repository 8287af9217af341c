#include "blocks/nas/space.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "registry/config_error.h"

namespace blocklab {

namespace {

template <class T>
T space_pick(const std::vector<T>& choices, std::mt19937_64& rng) {
  return choices[static_cast<std::size_t>(rng() % choices.size())];
}

// Numbers as the YAML a user writes: 3 for 3.0, 2.5 for 2.5.
std::string space_number(double v) {
  char text[32];
  std::snprintf(text, sizeof text, "%g", v);
  return text;
}

template <class T>
std::string space_list(const std::vector<T>& choices) {
  std::string out;
  for (const auto& c : choices) {
    std::ostringstream s;
    if constexpr (std::is_floating_point_v<T>)
      s << space_number(c);
    else
      s << c;
    out += (out.empty() ? "" : ", ") + s.str();
  }
  return out;
}

template <class T>
bool space_has(const std::vector<T>& choices, const T& v) {
  return std::find(choices.begin(), choices.end(), v) != choices.end();
}

LayerChoice space_random_layer(const SearchSpace& space, std::mt19937_64& rng) {
  LayerChoice layer;
  layer.mixer = space_pick(space.mixers, rng);
  layer.heads = space_pick(space.heads, rng);
  layer.mlp_ratio = space_pick(space.mlp_ratios, rng);
  return layer;
}

}  // namespace

std::int64_t SearchSpace::max_depth() const { return *std::max_element(depths.begin(), depths.end()); }
std::int64_t SearchSpace::max_width() const { return *std::max_element(widths.begin(), widths.end()); }
std::int64_t SearchSpace::max_heads() const { return *std::max_element(heads.begin(), heads.end()); }
double SearchSpace::max_mlp_ratio() const { return *std::max_element(mlp_ratios.begin(), mlp_ratios.end()); }

double SearchSpace::size() const {
  const double per_layer = static_cast<double>(mixers.size() * heads.size() * mlp_ratios.size());
  double layers = 0;
  for (const auto d : depths) layers += std::pow(per_layer, static_cast<double>(d));
  return static_cast<double>(widths.size()) * layers;
}

Subnet largest_subnet(const SearchSpace& space) {
  Subnet s;
  s.width = space.max_width();
  s.layers.assign(static_cast<std::size_t>(space.max_depth()),
                  LayerChoice{space.mixers.front(), space.max_heads(), space.max_mlp_ratio()});
  return s;
}

Subnet smallest_subnet(const SearchSpace& space) {
  Subnet s;
  s.width = *std::min_element(space.widths.begin(), space.widths.end());
  const auto depth = *std::min_element(space.depths.begin(), space.depths.end());
  s.layers.assign(static_cast<std::size_t>(depth),
                  LayerChoice{space.mixers.back(), *std::min_element(space.heads.begin(), space.heads.end()),
                              *std::min_element(space.mlp_ratios.begin(), space.mlp_ratios.end())});
  return s;
}

Subnet random_subnet(const SearchSpace& space, std::mt19937_64& rng) {
  Subnet s;
  const auto depth = space_pick(space.depths, rng);
  s.width = space_pick(space.widths, rng);
  for (std::int64_t i = 0; i < depth; ++i) s.layers.push_back(space_random_layer(space, rng));
  return s;
}

Subnet mutate_subnet(const Subnet& parent, const SearchSpace& space, double rate, std::mt19937_64& rng) {
  const auto redraw = [&] { return static_cast<double>(rng() % 1000000) / 1e6 < rate; };
  Subnet child = parent;
  if (redraw()) child.width = space_pick(space.widths, rng);
  if (redraw()) {
    const auto depth = space_pick(space.depths, rng);
    while (child.depth() > depth) child.layers.pop_back();
    while (child.depth() < depth) child.layers.push_back(space_random_layer(space, rng));
  }
  for (auto& layer : child.layers) {
    if (redraw()) layer.mixer = space_pick(space.mixers, rng);
    if (redraw()) layer.heads = space_pick(space.heads, rng);
    if (redraw()) layer.mlp_ratio = space_pick(space.mlp_ratios, rng);
  }
  return child;
}

std::string subnet_problem(const Subnet& subnet, const SearchSpace& space) {
  if (!space_has(space.widths, subnet.width))
    return "width " + std::to_string(subnet.width) + " is not one of " + space_list(space.widths);
  if (!space_has(space.depths, subnet.depth()))
    return "depth " + std::to_string(subnet.depth()) + " (layers given) is not one of " + space_list(space.depths);
  for (std::size_t i = 0; i < subnet.layers.size(); ++i) {
    const auto& l = subnet.layers[i];
    const std::string at = "layer " + std::to_string(i) + ": ";
    if (!space_has(space.mixers, l.mixer))
      return at + "mixer " + l.mixer + " is not one of " + space_list(space.mixers);
    if (!space_has(space.heads, l.heads))
      return at + "heads " + std::to_string(l.heads) + " is not one of " + space_list(space.heads);
    if (!space_has(space.mlp_ratios, l.mlp_ratio))
      return at + "mlp_ratio " + space_number(l.mlp_ratio) + " is not one of " + space_list(space.mlp_ratios);
  }
  return {};
}

ConfigNode subnet_node(const Subnet& subnet) {
  ConfigNode node = ConfigNode::map();
  node.set("width", ConfigNode::integer(subnet.width));
  ConfigNode layers = ConfigNode::sequence();
  for (const auto& l : subnet.layers) {
    ConfigNode layer = ConfigNode::map();
    layer.set("mixer", ConfigNode::string(l.mixer));
    layer.set("heads", ConfigNode::integer(l.heads));
    layer.set("mlp_ratio", ConfigNode::floating(l.mlp_ratio));
    layers.push_back(std::move(layer));
  }
  node.set("layers", std::move(layers));
  return node;
}

Subnet subnet_from_node(const ConfigNode& node, const SearchSpace& space) {
  const auto fail = [](const ConfigNode& at, const std::string& message, std::vector<std::string> hints = {}) {
    throw ConfigError(message, at.source(), "", std::move(hints));
  };
  const std::vector<std::string> form{"a subnet is {width: W, layers: [{mixer: KEY, heads: H, mlp_ratio: R}, ...]}"};
  if (!node.is_map()) fail(node, "a subnet must be a mapping", form);
  for (const auto& key : node.keys())
    if (key != "width" && key != "layers") fail(node, "unknown subnet key '" + key + "'", form);
  const ConfigNode* width = node.find("width");
  const ConfigNode* layers = node.find("layers");
  if (!width || !width->is_int() || !layers || !layers->is_sequence())
    fail(node, "a subnet needs width and layers", form);
  Subnet s;
  s.width = width->as_int();
  for (const auto& item : layers->items()) {
    const ConfigNode* mixer = item.is_map() ? item.find("mixer") : nullptr;
    const ConfigNode* heads = item.is_map() ? item.find("heads") : nullptr;
    const ConfigNode* ratio = item.is_map() ? item.find("mlp_ratio") : nullptr;
    if (!mixer || !mixer->is_scalar() || !heads || !heads->is_int() || !ratio || !ratio->is_number())
      fail(item, "a subnet layer needs mixer, heads and mlp_ratio", form);
    s.layers.push_back(LayerChoice{mixer->as_string(), heads->as_int(), ratio->as_double()});
  }
  if (const auto problem = subnet_problem(s, space); !problem.empty())
    fail(node, "the subnet is not in the supernet's space: " + problem,
         {"widths " + space_list(space.widths) + "; depths " + space_list(space.depths) + "; heads " +
          space_list(space.heads) + "; mlp_ratios " + space_list(space.mlp_ratios) + "; mixers " +
          space_list(space.mixers)});
  return s;
}

std::string subnet_key(const Subnet& subnet) {
  std::string key = "w" + std::to_string(subnet.width) + " d" + std::to_string(subnet.depth());
  for (const auto& l : subnet.layers)
    key += " " + l.mixer + ".h" + std::to_string(l.heads) + ".r" + space_number(l.mlp_ratio);
  return key;
}

}  // namespace blocklab
