// The weight-sharing supernet (blocks/nas/), tag [nas]: the space's corners, random draws and
// mutations stay in the space and repeat with the seed; subnets round-trip through YAML and bad
// ones are located ConfigErrors; every subnet extracted as an ordinary model (model/composed)
// with its inherited weights computes exactly the supernet's output on that path (float64,
// largest, smallest and random subnets; catalog 003/004 C35 "max equals the full network",
// catalog 002 B-23 (2)); its parameter count is the extracted model's; a subnet's gradient reaches
// only its slices; switching one layer's attention type swaps only the kernel, on the same
// Q/K/V/O weights (B-23 (3)); ViT-ResNAS's residual spatial reductions extract exactly too, to
// stack/stages (B-19); a mixer with weights but no elastic form is refused.
#include <catch2/catch.hpp>

#include <random>
#include <set>

#include "blocks/nas/space.h"
#include "blocks/nas/supernet.h"
#include "registry/config_error.h"
#include "registry/yaml_io.h"
#include "tests/blocks/attention/helpers.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;
using attention_tests::parameter_count;

namespace {

const char* kSpaceYaml =
    "{type: model/supernet, patch: 7, depths: [1, 2, 3], widths: [16, 24], heads: [1, 2, 3], mlp_ratios: [1, 2.5], "
    "head_dim: 8, mixers: [attention/softmax, linear/elu, mixer/pooling]}";

ModelArgs image_args() {
  ModelArgs args;
  args.inputs.channels = 1;
  args.inputs.height = 28;
  args.inputs.width = 28;
  args.outputs = 10;
  return args;
}

// The supernet in float64 with every parameter drawn from N(0, 0.3) (so LayerNorms and biases
// matter), in eval mode.
Supernet make_supernet(const std::string& yaml = kSpaceYaml) {
  Network n = model_registry().create(parse_yaml(yaml, "model"), image_args());
  auto s = std::dynamic_pointer_cast<SupernetImpl>(n);
  REQUIRE(s);
  s->to(torch::kFloat64);
  torch::NoGradGuard no_grad;
  for (auto& p : s->parameters()) p.normal_(0.0, 0.3);
  s->eval();
  return s;
}

Network extract(const SupernetImpl& supernet, const Subnet& subnet) {
  Network model = model_registry().create(supernet.subnet_config(subnet), image_args());
  model->to(torch::kFloat64);
  supernet.export_weights(subnet, *model);
  model->eval();
  return model;
}

std::vector<Subnet> sample_subnets(const SearchSpace& space, int random, std::uint64_t seed) {
  std::vector<Subnet> subnets{largest_subnet(space), smallest_subnet(space)};
  std::mt19937_64 rng(seed);
  for (int i = 0; i < random; ++i) subnets.push_back(random_subnet(space, rng));
  return subnets;
}

}  // namespace

TEST_CASE("nas space: corners, random draws and mutations are points of the space, by seed", "[nas]") {
  const SearchSpace space = supernet_space(parse_yaml(kSpaceYaml, "model"));
  const Subnet big = largest_subnet(space), small = smallest_subnet(space);
  CHECK(big.width == 24);
  CHECK(big.depth() == 3);
  CHECK(big.layers[0] == LayerChoice{"attention/softmax", 3, 2.5});
  CHECK(small.width == 16);
  CHECK(small.depth() == 1);
  CHECK(small.layers[0] == LayerChoice{"mixer/pooling", 1, 1.0});
  CHECK(space.size() == 2 * (18.0 + 18.0 * 18.0 + 18.0 * 18.0 * 18.0));

  std::mt19937_64 a(7), b(7), c(8);
  std::vector<Subnet> first, again, other;
  for (int i = 0; i < 40; ++i) {
    first.push_back(random_subnet(space, a));
    again.push_back(random_subnet(space, b));
    other.push_back(random_subnet(space, c));
  }
  CHECK((first == again));
  CHECK((first != other));
  std::set<std::int64_t> depths, widths;
  std::set<std::string> mixers;
  for (const auto& s : first) {
    CHECK(subnet_problem(s, space).empty());
    depths.insert(s.depth());
    widths.insert(s.width);
    for (const auto& l : s.layers) mixers.insert(l.mixer);
  }
  CHECK(depths.size() == 3);  // every choice is drawn
  CHECK(widths.size() == 2);
  CHECK(mixers.size() == 3);

  std::mt19937_64 m(3);
  CHECK(mutate_subnet(first[0], space, 0.0, m) == first[0]);
  for (int i = 0; i < 20; ++i) CHECK(subnet_problem(mutate_subnet(first[i], space, 1.0, m), space).empty());
}

TEST_CASE("nas space: subnets round-trip through YAML; bad ones name the value and the choices", "[nas]") {
  const SearchSpace space = supernet_space(parse_yaml(kSpaceYaml, "model"));
  std::mt19937_64 rng(11);
  for (int i = 0; i < 10; ++i) {
    const Subnet s = random_subnet(space, rng);
    CHECK(subnet_from_node(parse_yaml(dump_yaml(subnet_node(s)), "subnet"), space) == s);
  }
  CHECK(subnet_key(largest_subnet(space)) ==
        "w24 d3 attention/softmax.h3.r2.5 attention/softmax.h3.r2.5 attention/softmax.h3.r2.5");
  const auto bad = [&](const std::string& yaml) { subnet_from_node(parse_yaml(yaml, "subnet.yaml"), space); };
  CHECK_THROWS_WITH(bad("{width: 20, layers: [{mixer: mixer/pooling, heads: 1, mlp_ratio: 1}]}"),
                    Catch::Contains("subnet.yaml:1") && Catch::Contains("width 20 is not one of 16, 24"));
  CHECK_THROWS_WITH(bad("{width: 16, layers: [{mixer: linear/elu, heads: 4, mlp_ratio: 1}]}"),
                    Catch::Contains("layer 0: heads 4 is not one of 1, 2, 3"));
  CHECK_THROWS_WITH(bad("{width: 16, layers: []}"), Catch::Contains("depth 0 (layers given) is not one of 1, 2, 3"));
  CHECK_THROWS_WITH(bad("{width: 16, layers: [{mixer: linear/elu, heads: 1}]}"),
                    Catch::Contains("needs mixer, heads and mlp_ratio"));
  CHECK_THROWS_WITH(bad("{width: 16, depth: 2, layers: []}"), Catch::Contains("unknown subnet key 'depth'"));
}

TEST_CASE("nas supernet: every extracted subnet computes exactly the supernet's path (float64)", "[nas]") {
  const Supernet supernet = make_supernet();
  const auto x = torch::randn({3, 1, 28, 28}, torch::kFloat64);
  torch::NoGradGuard no_grad;
  for (const Subnet& subnet : sample_subnets(supernet->space(), 12, 5)) {
    INFO(subnet_key(subnet));
    supernet->set_subnet(subnet);
    const auto expected = supernet->forward(x);
    const Network model = extract(*supernet, subnet);
    const auto got = model->forward(x);
    REQUIRE(got.sizes() == expected.sizes());
    CHECK((got - expected).abs().max().item<double>() < 1e-10);
    CHECK(supernet->subnet_parameters(subnet) == parameter_count(*model));
  }
  // The largest subnet uses every weight of the supernet (catalog C35: max is the full network).
  CHECK(supernet->subnet_parameters(largest_subnet(supernet->space())) == parameter_count(*supernet));
}

TEST_CASE("nas supernet: ViT-ResNAS's residual spatial reductions extract exactly to stack/stages", "[nas]") {
  const auto x = torch::randn({2, 1, 28, 28}, torch::kFloat64);
  torch::NoGradGuard no_grad;
  // patch 7: 4x4 -> 2x2 -> 1x1 before layers 1 and 2; patch 4: 7x7 -> 4x4 (odd) before layer 1.
  for (const std::string& change :
       {std::string("head_dim: 8, reductions: [1, 2]"), std::string("head_dim: 8, reductions: [1], patch: 4")}) {
    std::string yaml = kSpaceYaml;
    yaml.replace(yaml.find("head_dim: 8"), std::string("head_dim: 8").size(), change);
    if (change.find("patch: 4") != std::string::npos) yaml.replace(yaml.find("patch: 7, "), 10, "");
    INFO(yaml);
    const Supernet supernet = make_supernet(yaml);
    for (const Subnet& subnet : sample_subnets(supernet->space(), 10, 9)) {
      INFO(subnet_key(subnet));
      supernet->set_subnet(subnet);
      const auto expected = supernet->forward(x);
      const Network model = extract(*supernet, subnet);
      CHECK((model->forward(x) - expected).abs().max().item<double>() < 1e-10);
      CHECK(supernet->subnet_parameters(subnet) == parameter_count(*model));
      const ConfigNode stack = supernet->subnet_config(subnet).at("stack");
      CHECK(stack.at("type").text() == (subnet.depth() > 1 ? "stack/stages" : "stack/plain"));
    }
    CHECK(supernet->subnet_parameters(largest_subnet(supernet->space())) == parameter_count(*supernet));
  }
  // A reduction shrinks the later layers' token count: fewer multiply-adds than without it, and a
  // subnet shallower than the reduction is the plain supernet's.
  std::string yaml = kSpaceYaml;
  yaml.replace(yaml.find("head_dim: 8"), std::string("head_dim: 8").size(), "head_dim: 8, reductions: [2]");
  const Supernet reduced = make_supernet(yaml), plain = make_supernet();
  const Subnet big = largest_subnet(plain->space());
  Subnet shallow = big;
  shallow.layers.resize(2);
  CHECK(reduced->subnet_macs(big) < plain->subnet_macs(big));
  CHECK(reduced->subnet_macs(shallow) == plain->subnet_macs(shallow));
  for (const char* bad : {"reductions: [3]", "reductions: [2, 1]", "reductions: [0]"}) {
    std::string wrong = kSpaceYaml;
    wrong.replace(wrong.find("head_dim: 8"), std::string("head_dim: 8").size(), std::string("head_dim: 8, ") + bad);
    INFO(bad);
    CHECK_THROWS_AS(make_supernet(wrong), ConfigError);
  }
}

TEST_CASE("nas supernet: a subnet's gradient reaches only its slices", "[nas]") {
  const Supernet supernet = make_supernet();
  const Subnet subnet = subnet_from_node(
      parse_yaml("{width: 16, layers: [{mixer: linear/elu, heads: 2, mlp_ratio: 1}, {mixer: mixer/pooling, heads: 1, "
                 "mlp_ratio: 2.5}]}",
                 "subnet"),
      supernet->space());
  supernet->set_subnet(subnet);
  supernet->forward(torch::randn({2, 1, 28, 28}, torch::kFloat64)).pow(2).sum().backward();
  const auto nonzero = [](const torch::Tensor& g) { return g.defined() ? g.ne(0).sum().item<std::int64_t>() : 0; };
  // Reached: more than rounding. Outside the slices the gradient is exactly 0; inside, all of it but
  // the pooling layer's norm1 bias: PoolFormer's pool(h) - h ignores a constant shift of h, so that
  // bias's true gradient is 0 (rounding leaves about 1e-17).
  const auto reached = [](const torch::Tensor& g) {
    return g.defined() ? g.abs().gt(1e-10).sum().item<std::int64_t>() : 0;
  };
  std::int64_t touched = 0, any = 0;
  for (const auto& p : supernet->parameters()) touched += reached(p.grad()), any += nonzero(p.grad());
  const auto& pooling = *supernet->layer_list->ptr<SupernetLayerImpl>(1);
  CHECK(touched == supernet->subnet_parameters(subnet) - 16);
  CHECK(any <= supernet->subnet_parameters(subnet));
  CHECK(pooling.norm1->bias.grad().narrow(0, 0, 16).abs().max().item<double>() < 1e-10);
  CHECK(pooling.norm1->bias.grad().narrow(0, 16, 8).abs().sum().item<double>() == 0.0);
  auto& first = *supernet->layer_list->ptr<SupernetLayerImpl>(0);
  CHECK(nonzero(first.qkv->weight.grad()) == 3 * 16 * 16);  // 2 heads of 8, 16 input columns, q k v
  CHECK(first.qkv->weight.grad().narrow(1, 16, 8).abs().sum().item<double>() == 0.0);        // columns >= C
  CHECK(nonzero(supernet->layer_list->ptr<SupernetLayerImpl>(2)->fc1->weight.grad()) == 0);  // a layer not run
}

TEST_CASE("nas supernet: switching one layer's attention type keeps its Q/K/V/O and changes the output", "[nas]") {
  const Supernet supernet = make_supernet();
  const auto x = torch::randn({2, 1, 28, 28}, torch::kFloat64);
  Subnet subnet = largest_subnet(supernet->space());
  torch::NoGradGuard no_grad;
  supernet->set_subnet(subnet);
  const auto softmax_out = supernet->forward(x);
  subnet.layers[2].mixer = "linear/elu";
  supernet->set_subnet(subnet);
  const auto elu_out = supernet->forward(x);
  CHECK((softmax_out - elu_out).abs().max().item<double>() > 1e-6);  // the kernel changed the output
  // ... with the same Q/K/V/O weights: both extract to the same tensors of layer 2.
  Subnet softmax_subnet = subnet;
  softmax_subnet.layers[2].mixer = "attention/softmax";
  const auto w_elu = supernet->subnet_weights(subnet), w_softmax = supernet->subnet_weights(softmax_subnet);
  for (const char* name : {"stack.blocks.2.mixer.qkv.weight", "stack.blocks.2.mixer.proj.weight"})
    CHECK(torch::equal(w_elu.at(name), w_softmax.at(name)));
}

TEST_CASE("nas supernet: bad spaces and subnets are refused with the fix", "[nas]") {
  const auto build = [](const std::string& yaml) { model_registry().create(parse_yaml(yaml, "m.yaml"), image_args()); };
  CHECK_THROWS_WITH(
      build("{type: model/supernet, mixers: [attention/softmax, conv/lka]}"),
      Catch::Contains("conv/lka has weights but no elastic form") && Catch::Contains("attention/softmax, linear/elu"));
  CHECK_THROWS_WITH(build("{type: model/supernet, mixers: [attention/sofmax]}"),
                    Catch::Contains("attention/sofmax") && Catch::Contains("attention/softmax"));
  CHECK_THROWS_WITH(build("{type: model/supernet, widths: []}"), Catch::Contains("widths needs at least one choice"));
  CHECK_THROWS_WITH(build("{type: model/supernet, patch: 5}"), Catch::Contains("patch 5"));
  const Supernet supernet = make_supernet();
  Subnet s = largest_subnet(supernet->space());
  s.width = 20;
  CHECK_THROWS_WITH(supernet->set_subnet(s), Catch::Contains("width 20 is not one of 16, 24"));
}

}  // namespace BLOCKLAB_TEST_FILE
