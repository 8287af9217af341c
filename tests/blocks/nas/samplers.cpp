// The supernet samplers (blocks/nas/samplers.h), tag [nas]: the sandwich rule's corners and roles;
// a step's subnets are a function of (seed, step); multi_arch gives one subnet per sub-batch;
// ElasticViT's bank walk starts at bank 0, moves by at most one bank a step, visits the banks,
// and a fresh sampler asked for a late step (a resumed run) walks to the same bank; its subnets
// lie within the bound of their bank's target (catalog 003/004 C35); bad settings are refused;
// and task supernet trains with each sampler.
#include <catch2/catch.hpp>

#include <cmath>
#include <set>

#include "blocks/nas/samplers.h"
#include "tests/process_support.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;

namespace {

SearchSpace sampler_space() {
  SearchSpace s;
  s.depths = {1, 2, 3, 4};
  s.widths = {16, 32, 48};
  s.heads = {1, 2};
  s.mlp_ratios = {1.0, 2.0, 4.0};
  s.mixers = {"attention/softmax", "mixer/pooling"};
  return s;
}

// A size that grows with width, depth and ratio, like FLOPs.
double fake_mflops(const Subnet& s) {
  double m = 0;
  for (const auto& l : s.layers)
    m += static_cast<double>(s.width) * (l.mlp_ratio + static_cast<double>(l.heads)) / 16.0;
  return m;
}

SubnetSampler make_sampler(const std::string& kind, std::vector<double> banks = {}) {
  SamplerSettings s;
  s.kind = kind;
  s.random = 3;
  s.sub_batches = 4;
  s.mflops_banks = std::move(banks);
  s.mflops_bound = 0.5;
  return SubnetSampler(sampler_space(), s, fake_mflops);
}

}  // namespace

TEST_CASE("nas samplers: the sandwich rule, uniform and multi_arch draw by (seed, step)", "[nas]") {
  const SearchSpace space = sampler_space();
  const auto sandwich = make_sampler("sandwich").at(4, 17);
  REQUIRE(sandwich.size() == 5);
  CHECK((sandwich[0].subnet == largest_subnet(space)));
  CHECK((sandwich[0].teaches && !sandwich[0].distills));
  CHECK((sandwich[1].subnet == smallest_subnet(space)));
  for (std::size_t i = 1; i < 5; ++i) CHECK((sandwich[i].distills && !sandwich[i].teaches && sandwich[i].part < 0));
  const auto again = make_sampler("sandwich").at(4, 17);
  const auto next = make_sampler("sandwich").at(4, 18);
  CHECK((again[2].subnet == sandwich[2].subnet && again[4].subnet == sandwich[4].subnet));
  CHECK((next[2].subnet != sandwich[2].subnet || next[3].subnet != sandwich[3].subnet));

  for (const auto& s : make_sampler("uniform").at(1, 2)) CHECK((!s.teaches && !s.distills && s.part < 0));
  const auto multi = make_sampler("multi_arch").at(1, 2);
  REQUIRE(multi.size() == 4);
  for (std::size_t i = 0; i < 4; ++i) {
    CHECK(multi[i].part == static_cast<std::int64_t>(i));
    CHECK(subnet_problem(multi[i].subnet, space).empty());
  }
}

TEST_CASE("nas samplers: ElasticViT's complexity-aware bank walk and its bounded subnets", "[nas]") {
  const std::vector<double> banks{2.0, 6.0, 12.0, 24.0};
  const SubnetSampler walker = make_sampler("complexity_aware", banks);
  CHECK(walker.bank_at(9, 0) == 0);
  std::set<std::int64_t> visited;
  std::int64_t previous = 0;
  for (std::int64_t step = 1; step <= 400; ++step) {
    const auto bank = walker.bank_at(9, step);
    CHECK(std::abs(bank - previous) <= 1);
    visited.insert(bank);
    previous = bank;
  }
  CHECK(visited.size() == banks.size());
  // A fresh sampler (a resumed run) walks to the same bank.
  CHECK(make_sampler("complexity_aware", banks).bank_at(9, 400) == previous);
  CHECK(make_sampler("complexity_aware", banks).bank_at(9, 250) == walker.bank_at(9, 250));

  for (std::int64_t step : {0, 50, 123, 399}) {
    const auto bank = walker.bank_at(9, step);
    const auto subnets = walker.at(9, step);
    REQUIRE(subnets.size() == 4);
    for (std::size_t i = 0; i < 3; ++i) {
      CHECK(subnets[i].teaches);
      CHECK(std::abs(fake_mflops(subnets[i].subnet) - banks[static_cast<std::size_t>(bank)]) <= 0.5);
    }
    CHECK((subnets[3].distills && subnets[3].subnet == smallest_subnet(sampler_space())));
  }
}

TEST_CASE("nas samplers: bad settings are refused", "[nas]") {
  CHECK_THROWS_WITH(make_sampler("greedy"), Catch::Contains("unknown sampler greedy"));
  CHECK_THROWS_WITH(make_sampler("complexity_aware"), Catch::Contains("needs mflops_banks"));
  CHECK_THROWS_WITH(make_sampler("complexity_aware", {3.0, 1.0}), Catch::Contains("must increase"));
  const auto r =
      testing::blocklab_command("show fmnist_supernet trainer.sampler=complexity_aware", BLOCKLAB_TEST_DIR, true);
  CHECK(r.status == 2);
  CHECK_THAT(r.out, Catch::Contains("trainer.mflops_banks") && Catch::Contains("needs FLOPs banks"));
}

TEST_CASE("nas samplers: task supernet trains with every sampler", "[nas]") {
  const std::string tiny =
      " model.patch=7 model.depths=[1,2] model.widths=[16,24] model.heads=[1,2] model.mlp_ratios=[1,2] "
      "model.head_dim=8 dataset.limit_train=256 dataset.limit_test=100 dataset.val_size=0 trainer.batch_size=32 "
      "trainer.epochs=1 threads=1 -q";
  for (const std::string sampler : {"trainer.sampler=uniform", "trainer.sampler=multi_arch",
                                    "trainer.sampler=complexity_aware "
                                    "trainer.mflops_banks=[0.1,0.2,0.3]"}) {
    INFO(sampler);
    testing::TempDir tmp;
    const auto r = testing::blocklab_command(
        "run fmnist_supernet " + sampler + tiny + " output_dir=" + tmp.path.string(), BLOCKLAB_TEST_DIR, true);
    INFO(r.out);
    CHECK(r.status == 0);
  }
}

}  // namespace BLOCKLAB_TEST_FILE
