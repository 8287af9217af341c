// einspace (blocks/nas/einspace.h, catalog 003/004 D37), tag [nas]: every sampled tree builds and
// its forward output has the inferred shape (the catalog's "every sampled tree compiles"), it
// round-trips through YAML, the depth limit holds and the same seed draws the same trees; module
// kinds follow the grammar's probabilities (computation 0.32); mutation keeps the output shape
// and changes the tree; im2col -> linear -> col2im equals torch's conv2d and the seed attention
// tree equals softmax(q k^T / sqrt(d)) v, both by hand; parameter counts by hand; bad trees are
// ConfigErrors naming the node's path and line; model/einspace pools by the stated rule (im:
// over H, W; col: over S).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <set>

#include "blocks/nas/einspace.h"
#include "registry/config_error.h"
#include "registry/yaml_io.h"
#include "tests/blocks/attention/helpers.h"

namespace BLOCKLAB_TEST_FILE {

using blocklab::attention_tests::close;
using blocklab::attention_tests::parameter_count;

using namespace blocklab;

namespace {

ConfigNode yaml(const std::string& text) { return parse_yaml(text, "test"); }

EinNode tree(const std::string& text) { return ein_from_node(yaml(text)); }

ModelInputs images(std::int64_t channels, std::int64_t height, std::int64_t width) {
  ModelInputs in;
  in.channels = channels;
  in.height = height;
  in.width = width;
  return in;
}

ModelArgs image_args(std::int64_t channels, std::int64_t height, std::int64_t width) {
  ModelArgs args;
  args.inputs = images(channels, height, width);
  args.outputs = 10;
  return args;
}


torch::Tensor parameter(const torch::nn::Module& m, const std::string& name) {
  const auto params = m.named_parameters();
  const auto* p = params.find(name);
  REQUIRE(p != nullptr);
  return *p;
}

// The deepest module's depth (the root at 0).
int depth_of(const EinNode& n) {
  int d = 0;
  for (const auto& c : n.children) d = std::max(d, 1 + depth_of(c));
  return d;
}

// Every module at `depth` >= limit is a computation module.
bool only_computation_from(const EinNode& n, int depth, int limit) {
  if (depth >= limit && n.kind != "computation") return false;
  for (const auto& c : n.children)
    if (!only_computation_from(c, depth + 1, limit)) return false;
  return true;
}

std::set<std::string> kinds_in(const EinNode& n) {
  std::set<std::string> kinds{n.kind};
  for (const auto& c : n.children) {
    const auto k = kinds_in(c);
    kinds.insert(k.begin(), k.end());
  }
  return kinds;
}

// The message of the ConfigError `f` throws ("no error" when none).
template <class F>
std::string error_of(F f) {
  try {
    f();
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "no error";
}

std::vector<std::int64_t> batched(std::int64_t batch, const EinShape& s) {
  std::vector<std::int64_t> dims{batch};
  dims.insert(dims.end(), s.dims.begin(), s.dims.end());
  return dims;
}

}  // namespace

TEST_CASE("einspace: sampled trees build, run at their inferred shapes and round-trip, by seed", "[nas]") {
  torch::manual_seed(0);
  const ModelInputs in = images(2, 12, 12);
  const EinShape input = ein_input_shape(in);
  const EinspaceLimits limits;
  const auto draw = [&](std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::vector<EinNode> trees;
    for (int i = 0; i < 50; ++i) trees.push_back(random_architecture(in, rng, limits));
    return trees;
  };
  const std::vector<EinNode> trees = draw(7);
  std::set<std::string> keys, kinds;
  bool any_im2col = false;
  for (const auto& t : trees) {
    INFO(ein_key(t));
    const EinShapeResult shape = ein_output_shape(t, input);
    REQUIRE(shape.ok());
    CHECK(t.kind != "computation");  // the network rule
    CHECK(depth_of(t) <= limits.max_depth);
    CHECK(only_computation_from(t, 0, limits.max_depth));
    CHECK(ein_from_node(ein_node(t)) == t);
    CHECK(ein_from_node(parse_yaml(dump_yaml(ein_node(t)), "dumped")) == t);
    auto net = std::make_shared<EinNetworkImpl>(t, in, 10);
    net->to(torch::kFloat64);
    CHECK(parameter_count(*net->body) == ein_parameter_count(t, input));
    const auto x = torch::randn({2, 2, 12, 12}, torch::kFloat64);
    CHECK(net->body->forward(x).sizes().vec() == batched(2, shape.shape));
    const auto y = net->forward(x);
    CHECK(y.sizes().vec() == std::vector<std::int64_t>{2, 10});
    y.sum().backward();
    for (const auto& p : net->parameters()) CHECK(p.grad().defined());
    keys.insert(ein_key(t));
    const auto k = kinds_in(t);
    kinds.insert(k.begin(), k.end());
    any_im2col = any_im2col || ein_key(t).find("im2col") != std::string::npos;
  }
  CHECK(keys.size() >= 20);
  CHECK(kinds == std::set<std::string>{"branching", "computation", "routing", "sequential"});
  CHECK(any_im2col);
  const auto keys_of = [](const std::vector<EinNode>& ts) {
    std::vector<std::string> out;
    for (const auto& t : ts) out.push_back(ein_key(t));
    return out;
  };
  CHECK(keys_of(draw(7)) == keys_of(trees));
  CHECK(keys_of(draw(8)) != keys_of(trees));

  // Sized for 28 x 28 images: trees there infer and stay within the parameter limit.
  std::mt19937_64 rng(3);
  for (int i = 0; i < 10; ++i) {
    const EinNode t = random_architecture(images(1, 28, 28), rng, limits);
    INFO(ein_key(t));
    CHECK(ein_output_shape(t, EinShape{{1, 28, 28}}).ok());
    CHECK(ein_parameter_count(t, EinShape{{1, 28, 28}}) <= limits.max_parameters);
  }
}

TEST_CASE("einspace: module kinds follow the grammar's probabilities and the depth limit", "[nas]") {
  // max_depth 2: the root's modules (depth 1) are drawn from all four kinds, P(computation) =
  // 0.32 and 0.68 / 3 each for the others (a failed branching module is re-drawn, so the shares
  // move a little); below them only computation modules.
  EinspaceLimits limits;
  limits.max_depth = 2;
  std::mt19937_64 rng(5);
  std::map<std::string, double> share;
  double drawn = 0;
  for (int i = 0; i < 300; ++i) {
    const EinNode t = random_architecture(images(2, 8, 8), rng, limits);
    CHECK(only_computation_from(t, 0, 2));
    const std::size_t n =
        t.kind == "branching" && t.children.size() > 2 ? 1 : t.children.size();  // a repeat counts once
    for (std::size_t j = 0; j < n; ++j) {
      share[t.children[j].kind] += 1;
      drawn += 1;
    }
  }
  for (auto& [kind, s] : share) s /= drawn;
  CHECK(share["computation"] > 0.24);
  CHECK(share["computation"] < 0.45);
  for (const char* kind : {"sequential", "branching", "routing"}) {
    INFO(kind);
    CHECK(share[kind] > 0.1);
    CHECK(share[kind] < 0.36);
  }
}

TEST_CASE("einspace: mutation keeps the output shape and changes the tree", "[nas]") {
  torch::manual_seed(0);
  const ModelInputs in = images(2, 12, 12);
  const EinShape input = ein_input_shape(in);
  std::mt19937_64 rng(11);
  EinNode parent = random_architecture(in, rng);
  const EinShape out = ein_output_shape(parent, input).shape;
  int changed = 0;
  for (int i = 0; i < 50; ++i) {
    const EinNode child = mutate_architecture(parent, in, rng);
    INFO(ein_key(parent) << " -> " << ein_key(child));
    const EinShapeResult shape = ein_output_shape(child, input);
    REQUIRE(shape.ok());
    CHECK(shape.shape == out);
    CHECK(ein_from_node(ein_node(child)) == child);  // still a tree of the grammar
    changed += child != parent;
    parent = child;
  }
  CHECK(changed >= 35);  // most of the time (a small tree may have no re-draw of the same shape)
  EinModule last(parent, input);
  last->to(torch::kFloat64);
  CHECK(last->forward(torch::randn({2, 2, 12, 12}, torch::kFloat64)).sizes().vec() == batched(2, out));

  // The same generator state gives the same child.
  std::mt19937_64 a(21), b(21);
  CHECK(mutate_architecture(parent, in, a) == mutate_architecture(parent, in, b));
}

TEST_CASE("einspace: im2col -> linear -> col2im is a convolution", "[nas]") {
  torch::manual_seed(1);
  for (const auto& [pre, stride] :
       std::vector<std::pair<std::string, std::int64_t>>{{"im2col_k3s1p1", 1}, {"im2col_k3s2p1", 2}}) {
    INFO(pre);
    const EinNode t = tree("{routing: {pre: " + pre + ", inner: linear4, post: col2im}}");
    EinModule m(t, EinShape{{3, 6, 5}});
    m->to(torch::kFloat64);
    const auto x = torch::randn({2, 3, 6, 5}, torch::kFloat64);
    const auto w = parameter(*m, "inner.linear.weight");  // [4, 3 * 3 * 3], rows (c, i, j)
    const auto bias = parameter(*m, "inner.linear.bias");
    const auto expected = torch::conv2d(x, w.view({4, 3, 3, 3}), bias, stride, 1);
    CHECK(close(m->forward(x), expected));
    CHECK(m->output_shape() == EinShape{{4, (6 + 2 - 3) / stride + 1, (5 + 2 - 3) / stride + 1}});
  }
}

TEST_CASE("einspace: the seed attention tree is softmax(q k^T / sqrt(d)) v", "[nas]") {
  torch::manual_seed(2);
  // einspace's seed architecture (seed_architectures.py): clone2 -> [clone2 -> [linear (q),
  // linear then permute21 (k^T)] -> scaled_dot_product -> softmax, linear (v)] -> dot_product.
  const EinNode t = tree(R"({branching: {fn: clone2, aggregate: dot_product, inner: [
      {sequential: [{branching: {fn: clone2, aggregate: scaled_dot_product,
                                 inner: [linear4, {routing: {pre: identity, inner: linear4, post: permute21}}]}},
                    softmax]},
      linear6]}})");
  EinModule m(t, EinShape{{5, 8}});
  m->to(torch::kFloat64);
  const auto x = torch::randn({2, 5, 8}, torch::kFloat64);
  const auto q = torch::linear(x, parameter(*m, "inner0.first.inner0.linear.weight"),
                               parameter(*m, "inner0.first.inner0.linear.bias"));
  const auto k = torch::linear(x, parameter(*m, "inner0.first.inner1.inner.linear.weight"),
                               parameter(*m, "inner0.first.inner1.inner.linear.bias"));
  const auto v = torch::linear(x, parameter(*m, "inner1.linear.weight"), parameter(*m, "inner1.linear.bias"));
  const auto expected = torch::softmax(q.matmul(k.transpose(1, 2)) / std::sqrt(4.0), -1).matmul(v);
  CHECK(close(m->forward(x), expected));
  CHECK(m->output_shape() == EinShape{{5, 6}});
}

TEST_CASE("einspace: YAML round trip, key and node count", "[nas]") {
  const std::string text =
      "sequential:\n"
      "  - routing: {pre: im2col_k4s4p0, inner: linear16, post: identity}\n"
      "  - branching:\n"
      "      fn: clone2\n"
      "      inner: [norm, softmax]\n"
      "      aggregate: add\n";
  const EinNode t = tree(text);
  EinNode by_hand{"sequential", "", "", {}};
  by_hand.children.push_back(
      EinNode{"routing", "im2col_k4s4p0", "identity", {EinNode{"computation", "linear16", "", {}}}});
  by_hand.children.push_back(
      EinNode{"branching",
              "clone2",
              "add",
              {EinNode{"computation", "norm", "", {}}, EinNode{"computation", "softmax", "", {}}}});
  CHECK(t == by_hand);
  CHECK(ein_node(t).same_value(yaml(text)));
  CHECK(ein_from_node(parse_yaml(dump_yaml(ein_node(t)), "dumped")) == t);
  CHECK(ein_key(t) == "seq(route(im2col_k4s4p0,linear16,identity),branch(clone2,norm,softmax,add))");
  CHECK(ein_node_count(t) == 6);
  // 28 x 28 patches of 4 x 4: [49, 16] -> linear16 -> [49, 16]; the branches keep it.
  CHECK(ein_output_shape(t, EinShape{{1, 28, 28}}).shape == EinShape{{49, 16}});
  // Four repeated branches (YAML anchors repeat one module): counted and keyed four times.
  const EinNode four = tree(
      "{branching: {fn: group4_dim2, inner: [&m {sequential: [norm, linear8]}, *m, *m, *m], "
      "aggregate: concat4_dim2}}");
  CHECK(ein_node_count(four) == 1 + 4 * 3);
  // [8, 4] -> 4 x [8, 1] -> norm, linear8 -> 4 x [8, 8] -> [8, 32].
  CHECK(ein_output_shape(four, EinShape{{8, 4}}).shape == EinShape{{8, 32}});
}

TEST_CASE("einspace: bad trees are ConfigErrors naming the node", "[nas]") {
  using Catch::Contains;
  const auto parse_error = [](const std::string& text) { return error_of([&] { tree(text); }); };
  CHECK_THROWS_AS(tree("{sequential: [norm, linear_64]}"), ConfigError);
  CHECK_THAT(parse_error("{sequential: [norm, linear_64]}"),
             Contains("architecture.sequential.1") && Contains("unknown function 'linear_64'"));
  // A function in the wrong place: a linear width where a routing function goes.
  CHECK_THAT(parse_error("{routing: {pre: linear64, inner: norm, post: identity}}"),
             Contains("architecture.routing.pre") &&
                 Contains("'linear64' is not a prerouting function (it is a computation function)"));
  CHECK_THAT(parse_error("{branching: {fn: linear64, inner: [norm, norm], aggregate: add}}"),
             Contains("architecture.branching.fn") && Contains("not a branching function"));
  // Branch counts that do not match.
  CHECK_THAT(parse_error("{branching: {fn: clone2, inner: [norm, softmax, identity], aggregate: add}}"),
             Contains("architecture.branching.inner") && Contains("clone2 makes 2 branches, but there are 3"));
  CHECK_THAT(parse_error("{branching: {fn: clone2, inner: [norm, norm], aggregate: concat4_dim1}}"),
             Contains("architecture.branching.aggregate") && Contains("concat4_dim1 joins 4 tensors"));
  CHECK_THAT(parse_error("{branching: {fn: clone4, inner: [norm, norm, norm, norm], aggregate: dot_product}}"),
             Contains("architecture.branching.aggregate") && Contains("multiplies 2 tensors"));
  CHECK_THAT(parse_error("{branching: {fn: clone4, inner: [norm, norm, softmax, norm], aggregate: add}}"),
             Contains("architecture.branching.inner.2") && Contains("repeats one module"));
  // Grammar form.
  CHECK_THAT(parse_error("{sequential: [norm, norm, norm]}"),
             Contains("architecture.sequential") && Contains("2 modules, got 3"));
  CHECK_THAT(parse_error("{sequentail: [norm, norm]}"),
             Contains("unknown module 'sequentail'") && Contains("did you mean 'sequential'"));
  CHECK_THAT(parse_error("{routing: {pre: identity, inner: norm, post: identity, extra: 1}}"),
             Contains("architecture.routing.extra"));
  CHECK_THAT(parse_error("{routing: {pre: identity, inner: norm, post: col2im}}"),
             Contains("architecture.routing.post") && Contains("col2im undoes"));
  // Located at the node's line.
  try {
    tree("sequential:\n  - norm\n  - linear_64\n");
    FAIL("no error");
  } catch (const ConfigError& e) {
    CHECK(e.diagnostics().front().where.line == 3);
    CHECK(e.diagnostics().front().path == "architecture.sequential.1");
  }

  // Shapes are checked where the tree meets its input: at the node's path.
  const EinShapeResult big_kernel = ein_output_shape(
      tree("{sequential: [norm, {routing: {pre: im2col_k7s7p0, inner: norm, post: identity}}]}"), EinShape{{1, 6, 6}});
  CHECK_FALSE(big_kernel.ok());
  CHECK(big_kernel.path == "sequential.1.routing.pre");
  CHECK_THAT(big_kernel.problem, Contains("larger than the map"));
  // Modes: permute21 on images, im2col in col mode; through model/einspace, at model.architecture...
  const auto build = [](const std::string& architecture) {
    return error_of([&] {
      model_registry().create(yaml("{type: model/einspace, architecture: " + architecture + "}"), image_args(1, 8, 8));
    });
  };
  CHECK_THAT(build("{routing: {pre: permute21, inner: norm, post: identity}}"),
             Contains("model.architecture.routing.pre") && Contains("permute21 needs col mode"));
  CHECK_THAT(build("{routing: {pre: im2col_k4s4p0, inner: {routing: {pre: im2col_k1s1p0, inner: norm, "
                   "post: identity}}, post: identity}}"),
             Contains("model.architecture.routing.inner.routing.pre") && Contains("needs im mode"));
  CHECK_THAT(build("{branching: {fn: clone2, inner: [linear16, linear32], aggregate: add}}"),
             Contains("model.architecture.branching.aggregate") && Contains("add needs equal shapes"));
  CHECK_THAT(build("{sequential: [norm, lienar16]}"),
             Contains("model.architecture.sequential.1") && Contains("did you mean") && Contains("'linear16'"));
}

TEST_CASE("einspace: parameter counts by hand", "[nas]") {
  // im [2, 6, 6] -> im2col k3 s2 p1: [3 * 3, 2 * 3 * 3] -> linear16 -> norm -> pos_enc [9, 16].
  const EinNode t = tree(
      "{sequential: [{routing: {pre: im2col_k3s2p1, inner: linear16, post: identity}}, {sequential: [norm, "
      "pos_enc]}]}");
  const EinShape input{{2, 6, 6}};
  const std::int64_t body = (2 * 3 * 3 + 1) * 16 + 2 * 16 + 9 * 16;
  CHECK(ein_parameter_count(t, input) == body);
  EinModule m(t, input);
  CHECK(parameter_count(*m) == body);
  const auto net = std::make_shared<EinNetworkImpl>(t, images(2, 6, 6), 10);
  CHECK(parameter_count(*net) == body + 2 * 16 + (16 + 1) * 10);  // + LayerNorm(16) + head 16 -> 10

  // The forward by hand: LN(unfold(x) W^T + b) + P.
  torch::manual_seed(3);
  m->to(torch::kFloat64);
  {
    torch::NoGradGuard no_grad;
    for (auto& p : m->parameters()) p.normal_(0.0, 0.5);
  }
  const auto x = torch::randn({2, 2, 6, 6}, torch::kFloat64);
  namespace F = torch::nn::functional;
  const auto patches = F::unfold(x, F::UnfoldFuncOptions(3).stride(2).padding(1)).transpose(1, 2);  // [2, 9, 18]
  const auto h =
      torch::linear(patches, parameter(*m, "first.inner.linear.weight"), parameter(*m, "first.inner.linear.bias"));
  const auto mean = h.mean(-1, true), var = (h - mean).pow(2).mean(-1, true);
  const auto normed = (h - mean) / torch::sqrt(var + 1e-5) * parameter(*m, "second.first.norm.weight") +
                      parameter(*m, "second.first.norm.bias");
  CHECK(close(m->forward(x), normed + parameter(*m, "second.second.pos")));

  // model/einspace's default architecture on 28 x 28: linear64 on 16, q and k linear32, v linear64, norm(64).
  CHECK(ein_parameter_count(ein_default_architecture(), EinShape{{1, 28, 28}}) ==
        (16 + 1) * 64 + 2 * (64 + 1) * 32 + (64 + 1) * 64 + 2 * 64);
}

TEST_CASE("model/einspace: default and example build; the head reads the pooled features", "[nas]") {
  torch::manual_seed(4);
  const ModelArgs args = image_args(1, 28, 28);
  Network n = model_registry().create(yaml("{type: model/einspace}"), args);
  auto net = std::dynamic_pointer_cast<EinNetworkImpl>(n);
  REQUIRE(net);
  CHECK(net->tree() == ein_default_architecture());
  CHECK(net->body->output_shape() == EinShape{{49, 64}});
  net->to(torch::kFloat64);
  net->eval();
  const auto x = torch::randn({3, 1, 28, 28}, torch::kFloat64);
  // col output [B, S, D]: the mean over S.
  CHECK(close(net->forward(x), net->head->forward(net->norm->forward(net->body->forward(x).mean(1)))));
  CHECK(net->forward(x).sizes().vec() == std::vector<std::int64_t>{3, 10});

  // im output [B, C, H, W] (linear8 acts on W): the mean over H and W, features C.
  Network im = model_registry().create(
      yaml("{type: model/einspace, architecture: {routing: {pre: identity, inner: linear8, post: identity}}}"),
      image_args(3, 6, 6));
  auto im_net = std::dynamic_pointer_cast<EinNetworkImpl>(im);
  REQUIRE(im_net);
  im_net->to(torch::kFloat64);
  const auto y = torch::randn({2, 3, 6, 6}, torch::kFloat64);
  CHECK(im_net->body->output_shape() == EinShape{{3, 6, 8}});
  CHECK(close(im_net->forward(y), im_net->head->forward(im_net->norm->forward(im_net->body->forward(y).mean({2, 3})))));
  CHECK(parameter_count(*im_net->norm) == 2 * 3);

  // The registry's example builds on Fashion-MNIST-sized images.
  ConfigNode example = yaml(model_registry().info("model/einspace").example);
  example.set("type", ConfigNode::string("model/einspace"));
  CHECK(model_registry().create(example, args)->forward(torch::randn({2, 1, 28, 28})).sizes().vec() ==
        std::vector<std::int64_t>{2, 10});
}

}  // namespace BLOCKLAB_TEST_FILE
