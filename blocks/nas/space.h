// The search space of a weight-sharing supernet and its points, the subnets.
//
// A space lists the choices of each elastic dimension (AutoFormer, Chen et al. 2021,
// arXiv:2107.00651; ElasticViT, Tang et al. 2023, arXiv:2303.09730; the attention-type supernet
// of "Neural Architecture Search on Efficient Transformers and Beyond", Liu et al. 2022,
// arXiv:2207.13955):
//   depth      how many layers run (the first `depth` of the supernet's layers)
//   width      the embedding width C, shared by every layer (the first C channels)
//   per layer  the token mixer (a registry key), the attention heads (the first h heads of
//              width head_dim) and the MLP ratio (the first round(ratio C) hidden units)
// A subnet is one choice per dimension; it is data ({width, layers: [{mixer, heads, mlp_ratio}]})
// and becomes an ordinary model config (blocks/nas/supernet.h).
//
// Sampling is deterministic in the generator's state (std::mt19937_64, reduced with %, which is
// the same on every standard library), so a seed gives the same subnets everywhere.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "registry/config_node.h"

namespace blocklab {

struct SearchSpace {
  std::vector<std::int64_t> depths;  // layer counts
  std::vector<std::int64_t> widths;  // embedding widths C
  std::vector<std::int64_t> heads;   // attention heads per layer
  std::vector<double> mlp_ratios;    // MLP hidden width / C per layer
  // Token mixers per layer, from the most to the least capable: the largest subnet uses the
  // first, the smallest the last.
  std::vector<std::string> mixers;
  std::int64_t head_dim = 16;  // width of every head

  std::int64_t max_depth() const;
  std::int64_t max_width() const;
  std::int64_t max_heads() const;
  double max_mlp_ratio() const;
  // Points in the space (as a double: it overflows integers quickly).
  double size() const;
};

struct LayerChoice {
  std::string mixer;
  std::int64_t heads = 1;
  double mlp_ratio = 1.0;

  bool operator==(const LayerChoice& o) const {
    return mixer == o.mixer && heads == o.heads && mlp_ratio == o.mlp_ratio;
  }
};

struct Subnet {
  std::int64_t width = 0;
  std::vector<LayerChoice> layers;  // one per layer that runs: depth = layers.size()

  std::int64_t depth() const { return static_cast<std::int64_t>(layers.size()); }
  bool operator==(const Subnet& o) const { return width == o.width && layers == o.layers; }
  bool operator!=(const Subnet& o) const { return !(*this == o); }
};

// The space's corners (the sandwich rule's largest and smallest subnets): every dimension at
// its largest (smallest) choice, the first (last) mixer in every layer.
Subnet largest_subnet(const SearchSpace& space);
Subnet smallest_subnet(const SearchSpace& space);
// Every dimension drawn uniformly from its choices, each layer independently.
Subnet random_subnet(const SearchSpace& space, std::mt19937_64& rng);
// Regularised evolution's mutation (Real et al. 2019, arXiv:1802.01548): each dimension is
// redrawn with probability `rate`; a deeper subnet gets new layers drawn at random.
Subnet mutate_subnet(const Subnet& parent, const SearchSpace& space, double rate, std::mt19937_64& rng);

// Empty when `subnet` is a point of `space`, else what is wrong ("width 40 is not one of 32,
// 48, 64").
std::string subnet_problem(const Subnet& subnet, const SearchSpace& space);

// {width: 48, layers: [{mixer: attention/softmax, heads: 2, mlp_ratio: 3}, ...]}
ConfigNode subnet_node(const Subnet& subnet);
// The inverse of subnet_node; throws ConfigError located at the offending value when `node` is
// not a point of `space`.
Subnet subnet_from_node(const ConfigNode& node, const SearchSpace& space);
// A compact, unique name: "w48 d2 attention/softmax.h2.r3 mixer/pooling.h1.r2"; stable, for
// ledgers and tables.
std::string subnet_key(const Subnet& subnet);

}  // namespace blocklab
