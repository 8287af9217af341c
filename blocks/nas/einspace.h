// model/einspace: one architecture of einspace, a search space that is a probabilistic
// context-free grammar over fundamental operations (no weight sharing: every candidate is a
// model of its own, trained from scratch).
//
// Paper: "einspace: Searching for Neural Architectures from Fundamental Operations" (Ericsson
// et al., NeurIPS 2024, arXiv:2405.20838); rules as in the official code (linusericsson/einspace,
// einspace/search_spaces.py and layers.py): catalog 003/004, D37.
//
// The grammar (a module maps one tensor to one tensor):
//   network     -> sequential | branching | routing
//   module      -> sequential | branching | routing | computation
//   sequential  -> module module                   y = m_2(m_1(x))
//   branching   -> branch module^b aggregate       y = agg(m_1(x_1), ..., m_b(x_b)), (x_1..x_b) = branch(x)
//   routing     -> pre module post                 y = post(m(pre(x)))
//   computation -> fn                              y = fn(x)
// Terminals (name: what it computes; shapes without the batch):
//   computation  identity; linear<N>: x W^T + b over the last dim (to N); norm: LayerNorm over
//                the last dim (eps 1e-5, torch's default, as the official nn.LayerNorm);
//                leakyrelu (slope 0.01); softmax over the last dim; pos_enc: x + P, P a learnable
//                tensor of x's shape drawn N(0, 1) (the official torch.randn)
//   branch       clone<b>: b references to x; group<b>_dim<d>: dim d split into b equal parts
//   aggregate    add: sum of the branches; concat<b>_dim<d>; dot_product: x_1 @ x_2 over the
//                last two dims; scaled_dot_product: (x_1 @ x_2) / sqrt(size(x_1, -1))
//   pre          identity; permute<order> (im: 132 213 231 312 321, col: 21; e.g. permute231 is
//                [B, C, H, W] -> [B, H, W, C]); im2col_k<k>s<s>p<p>: [C, H, W] -> [H' W', C k k]
//                (torch's unfold, rows in (c, i, j) order), H' = (H + 2p - k) / s + 1, 2p <= k
//   post         identity; permute<order>; col2im: [S, D] -> [S D / (H' W'), H', W'] with the
//                H' x W' of the same routing module's im2col (transpose, then reshape, as the
//                official Col2Im), so im2col -> linear<N> -> col2im is a k x k convolution to N
// Modes: "im" [B, C, H, W] and "col" [B, S, D]; only im2col and col2im change the mode.
// Rules (an option applies only where they hold): a branching module has b modules (for b > 2
// the grammar draws one and repeats it, so they must be equal); concat<b> needs b branches and
// the other dims equal; add needs equal shapes; dot products need 2 branches with matching
// inner dims (col: [S, D] @ [D, T]; im: [C, H, W] @ [C, W, W']); group needs a dim that b
// divides; im2col needs im mode and a map at least k x k; col2im needs col mode, an im2col as
// its module's prerouting function, and S D divisible by H' W'.
//
// Sampling (random_architecture): modules are drawn with P(computation) = 0.32 where it is an
// option, the others sharing the rest (the network rule has no computation module; at
// max_depth only computation modules remain; below min_depth none); terminals uniformly among
// the options that apply to the current shape; a module that cannot be completed (no aggregation
// fits its branches) is dropped and another kind drawn (back-tracking); the whole draw restarts
// when a step budget is spent. Deterministic in a std::mt19937_64 (reduced with %). The option
// set is reduced for 28 x 28 images on a CPU (EinspaceLimits): linear widths 16..128, branching
// factors 2 and 4, im2col kernels k1s1p0 k3s1p1 k3s2p1 k4s4p0 k7s7p0, and no intermediate tensor
// larger than max_elements per example.
// Mutation (regularised evolution's, mutate_architecture): a module of the tree drawn uniformly
// (a repeated branch counts once and changes in every copy) is re-drawn from the grammar with the
// same input shape; the child keeps it when its output shape is the old one and the subtree
// differs, else another draw (up to mutation_tries; then the parent comes back unchanged).
//
// The network (EinNetworkImpl): y = head(LN(pool(tree(x)))) for images x [B, C, H, W]. Pool: im
// output [B, C, H, W] -> mean over H, W -> [B, C] (the official head); col output [B, S, D] ->
// mean over S -> [B, D] (the features are the last dim; the official head averages D instead).
// LN: LayerNorm eps 1e-6; head: the task's head component (default linear). Tree weights keep
// torch's default init (as the official code); pos_enc tables N(0, 1).
//
// YAML (the model's `architecture`): a computation module is its function name; the others are a
// mapping with one key:
//   {sequential: [m_1, m_2]}
//   {branching: {fn: clone2, inner: [m_1, m_2], aggregate: add}}
//   {routing: {pre: im2col_k4s4p0, inner: m, post: identity}}
// Paths in messages follow it: model.architecture.sequential.1.branching.inner.0.
//
// Left out (compact subset): clone8/group8/concat8, linear256..2048 and im2col k1s2p0, k8s8p0,
// k16s16p0 are accepted in trees but not drawn; norm is LayerNorm in both modes (the official
// code uses BatchNorm2d in im mode); the branching-factor bookkeeping of the official code (an
// aggregation sees the module's own branch count instead); repeated cells and their stitching;
// the parameter/memory check and the 5-minute sampling timeout (replaced by EinspaceLimits);
// mutation of single terminals (a module's whole subtree is re-drawn, which covers them) and the
// official whole-network compile check (the output shape is kept instead); the seed
// architectures; the search loop itself (search.regularized_evolution).
//
// Shape contract: images [B, channels, H, W] -> outputs [B, K] (the head's).
#pragma once

#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "blocks/model.h"
#include "registry/config_node.h"

namespace blocklab {

// A node of the derivation tree: one module with its terminals.
struct EinNode {
  std::string kind;  // sequential | branching | routing | computation
  // The terminal before the children: computation: its function (linear64, norm, ...);
  // branching: the branching function (clone2, group2_dim1, ...); routing: the prerouting
  // function (identity, permute21, im2col_k3s1p1, ...); sequential: empty.
  std::string fn;
  // The terminal after the children: branching: the aggregation function (add, concat2_dim2,
  // dot_product, scaled_dot_product, ...); routing: the postrouting function (identity,
  // permute21, col2im, ...); otherwise empty.
  std::string post;
  // sequential: first, second; branching: one module per branch; routing: the inner module;
  // computation: none.
  std::vector<EinNode> children;

  bool operator==(const EinNode& o) const {
    return kind == o.kind && fn == o.fn && post == o.post && children == o.children;
  }
  bool operator!=(const EinNode& o) const { return !(*this == o); }
};

// A tensor's shape without the batch: im [C, H, W] or col [S, D].
struct EinShape {
  std::vector<std::int64_t> dims;

  bool im() const { return dims.size() == 3; }
  std::string mode() const { return im() ? "im" : "col"; }
  std::string text() const;  // "im [1, 28, 28]"
  bool operator==(const EinShape& o) const { return dims == o.dims; }
  bool operator!=(const EinShape& o) const { return dims != o.dims; }
};

// Images of `inputs` as the tree's input: im [channels, height, width].
EinShape ein_input_shape(const ModelInputs& inputs);

// What a tree gives for an input: its output shape, or why it does not apply and where (a path
// relative to the tree's root in the YAML form, "" for the root: "sequential.1.routing.post").
struct EinShapeResult {
  EinShape shape;
  std::string problem;
  std::string path;
  bool ok() const { return problem.empty(); }
};
EinShapeResult ein_output_shape(const EinNode& tree, const EinShape& input);

// Parameters of the modules a tree builds for `input` (linear<N>: (in + 1) N, norm: 2 D, pos_enc:
// its shape's size); throws std::invalid_argument when the tree does not apply.
std::int64_t ein_parameter_count(const EinNode& tree, const EinShape& input);
// Modules in the tree (every node, each copy of a repeated branch too).
std::int64_t ein_node_count(const EinNode& tree);
// A compact, unique text for keys and tables: computation "linear64", "seq(a,b)",
// "branch(clone2,a,b,add)", "route(im2col_k3s1p1,a,col2im)".
std::string ein_key(const EinNode& tree);

// The YAML form (see the header comment) and its inverse. ein_from_node checks the grammar (known
// terminals in their places, 2 modules in a sequential one, b equal modules for b > 2 branches,
// concat<b> with b branches, dot products with 2, col2im after an im2col) and throws ConfigError
// located at the offending node, its path `path` + ".sequential.1..." (shapes are checked
// when a model is built, by ein_output_shape). A computation module at the root is accepted (the
// network rule only shapes sampling).
ConfigNode ein_node(const EinNode& tree);
EinNode ein_from_node(const ConfigNode& node, const std::string& path = "architecture");

// model/einspace's default architecture (for 28 x 28 images): 4 x 4 patches (im2col_k4s4p0) and
// linear64 (49 tokens of width 64), then a residual single-head attention (queries and keys
// linear32, values linear64, softmax(q k^T / sqrt(32)) v, add) and norm.
EinNode ein_default_architecture();

// Sampling and mutation limits; the defaults are sized for 28 x 28 images on a CPU.
struct EinspaceLimits {
  double computation_prob = 0.32;  // P(computation module) where it is an option (the paper's)
  int min_depth = 0;               // module depth below which no computation module is drawn
  int max_depth = 8;               // module depth at which only computation modules remain (paper 100)
  std::int64_t max_elements = std::int64_t{1} << 17;    // largest tensor per example a terminal may make
  std::int64_t max_parameters = std::int64_t{1} << 20;  // parameters of a drawn tree (and of one linear)
  std::vector<std::int64_t> linear_widths{16, 32, 64, 128};
  std::vector<std::int64_t> branching_factors{2, 4};
  std::vector<std::string> im2col{"im2col_k1s1p0", "im2col_k3s1p1", "im2col_k3s2p1", "im2col_k4s4p0", "im2col_k7s7p0"};
  std::int64_t max_steps = 20000;  // draws in one attempt before it restarts
  int attempts = 100;              // restarts before random_architecture gives up
  int mutation_tries = 100;        // re-draws before mutate_architecture returns the parent
};

// A tree drawn from the grammar for images of `inputs`; throws std::runtime_error when no attempt
// finds one within the limits.
EinNode random_architecture(const ModelInputs& inputs, std::mt19937_64& rng, const EinspaceLimits& limits = {});
// A child of `parent` (see the header comment); `parent` itself when no re-draw fits.
EinNode mutate_architecture(const EinNode& parent, const ModelInputs& inputs, std::mt19937_64& rng,
                            const EinspaceLimits& limits = {});

// The modules of a tree on an input shape. Parameters by name: sequential "first", "second";
// branching "inner0", "inner1", ...; routing "inner"; computation "linear" (weight, bias), "norm"
// (weight, bias), "pos".
class EinModuleImpl : public torch::nn::Module {
 public:
  // Throws std::invalid_argument naming the node's path when `node` does not apply to `input`.
  EinModuleImpl(const EinNode& node, const EinShape& input);
  // x [B, dims of the input shape] -> [B, dims of output_shape()].
  torch::Tensor forward(const torch::Tensor& x);
  const EinShape& output_shape() const { return output_; }

 private:
  using Unary = std::function<torch::Tensor(const torch::Tensor&)>;
  std::string kind_;
  Unary fn_, pre_, post_;
  std::function<std::vector<torch::Tensor>(const torch::Tensor&)> branch_;
  std::function<torch::Tensor(const std::vector<torch::Tensor>&)> aggregate_;
  std::vector<std::shared_ptr<EinModuleImpl>> children_;
  torch::nn::Linear linear_{nullptr};
  torch::nn::LayerNorm norm_{nullptr};
  torch::Tensor pos_;
  EinShape output_;
};
TORCH_MODULE(EinModule);

class EinNetworkImpl : public NetworkImpl {
 public:
  // Throws std::invalid_argument when the tree does not apply to images of `inputs`.
  EinNetworkImpl(EinNode tree, const ModelInputs& inputs, std::int64_t outputs,
                 const ConfigNode& head_config = ConfigNode::string("linear"));

  torch::Tensor forward(const torch::Tensor& images, AttentionProbe* probe = nullptr,
                        const torch::Tensor& lengths = {}) override;
  // The pooled tree output [B, F] before LN and head (see the header comment).
  torch::Tensor features(const torch::Tensor& images);
  const EinNode& tree() const { return tree_; }

  EinModule body{nullptr};
  torch::nn::LayerNorm norm{nullptr};
  Head head;

 private:
  EinNode tree_;
};
using EinNetwork = std::shared_ptr<EinNetworkImpl>;

}  // namespace blocklab
