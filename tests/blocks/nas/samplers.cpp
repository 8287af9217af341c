// The supernet samplers (blocks/nas/samplers.h), tag [nas]: the sandwich rule's corners and roles;
// a step's subnets are a function of (seed, step); multi_arch gives one subnet per sub-batch;
// ElasticViT's bank walk starts at bank 0, moves by at most one bank a step, visits the banks,
// and a fresh sampler asked for a late step (a resumed run) walks to the same bank; its subnets
// lie within the bound of their bank's target (catalog 003/004 C35); ElasticViT's performance-aware
// memory keeps each bank's best subnets, restores exactly from its text, and the sampler draws from
// it at the memory rate; bad settings are refused; and task supernet trains with each sampler.
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

SubnetSampler make_sampler(const std::string& kind, std::vector<double> banks = {}, double memory_rate = 0.2) {
  SamplerSettings s;
  s.kind = kind;
  s.random = 3;
  s.sub_batches = 4;
  s.mflops_banks = std::move(banks);
  s.mflops_bound = 0.5;
  s.memory_rate = memory_rate;
  return SubnetSampler(sampler_space(), s, fake_mflops);
}

Subnet sampler_subnet(std::int64_t width, std::int64_t depth) {
  Subnet s{width, {}};
  for (std::int64_t i = 0; i < depth; ++i) s.layers.push_back({"attention/softmax", 1, 2.0});
  return s;
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

TEST_CASE("nas samplers: ElasticViT's performance-aware memory keeps each bank's best", "[nas]") {
  SubnetMemory memory(2, 2);
  memory.offer(0, sampler_subnet(16, 1), -1.5);
  memory.offer(0, sampler_subnet(32, 1), -0.5);
  memory.offer(1, sampler_subnet(48, 1), -2.0);
  memory.offer(0, sampler_subnet(16, 2), -3.0);  // full and worse than the worst (-1.5): refused
  REQUIRE(memory.bank(0).size() == 2);
  CHECK((memory.bank(0)[0].subnet == sampler_subnet(16, 1)));
  memory.offer(0, sampler_subnet(16, 3), -1.0);  // better than the worst: replaces it in place
  CHECK((memory.bank(0)[0].subnet == sampler_subnet(16, 3)));
  CHECK(memory.bank(0)[0].score == -1.0);
  memory.offer(0, sampler_subnet(32, 1), -4.0);  // remembered already: its score is refreshed
  CHECK(memory.bank(0).size() == 2);
  CHECK(memory.bank(0)[1].score == -4.0);
  CHECK(memory.bank(1).size() == 1);

  memory.offer(1, sampler_subnet(16, 4), 0.1 + 0.2);  // a score with no short decimal form
  const SubnetMemory back = SubnetMemory::from_text(memory.text(), sampler_space(), 2, 2);
  for (std::int64_t b = 0; b < 2; ++b) {
    REQUIRE(back.bank(b).size() == memory.bank(b).size());
    for (std::size_t i = 0; i < back.bank(b).size(); ++i) {
      CHECK((back.bank(b)[i].subnet == memory.bank(b)[i].subnet));
      CHECK(back.bank(b)[i].score == memory.bank(b)[i].score);  // exact
    }
  }
  CHECK_THROWS_AS(SubnetMemory::from_text("0 -1 40 1 attention/softmax 1 2\n", sampler_space(), 2, 2),
                  std::invalid_argument);  // width 40 is not in the space
  CHECK_THROWS_AS(SubnetMemory::from_text("5 -1 16 0\n", sampler_space(), 2, 2), std::invalid_argument);
}

TEST_CASE("nas samplers: performance_aware draws from the bank's memory at its rate", "[nas]") {
  const std::vector<double> banks{2.0, 6.0};
  SubnetMemory memory(2, 5);
  std::mt19937_64 rng(3);
  const Subnet remembered = random_subnet(sampler_space(), rng);
  for (std::int64_t b = 0; b < 2; ++b) memory.offer(b, remembered, -0.1);

  // Without a memory (or an empty one) it is complexity_aware's bank walk with bounded subnets.
  const auto fresh = make_sampler("performance_aware", banks, 1.0);
  const auto walk = make_sampler("complexity_aware", banks);
  for (std::int64_t step = 0; step < 30; ++step) {
    const auto drawn = fresh.at(7, step);
    REQUIRE(drawn.size() == 4);
    CHECK(fresh.bank_at(7, step) == walk.bank_at(7, step));
    for (std::size_t i = 0; i < 3; ++i) {
      CHECK(!drawn[i].remembered);
      CHECK(drawn[i].bank == fresh.bank_at(7, step));
      CHECK(std::abs(fake_mflops(drawn[i].subnet) - banks[static_cast<std::size_t>(drawn[i].bank)]) <= 0.5);
    }
    CHECK((drawn[3].subnet == smallest_subnet(sampler_space()) && drawn[3].distills));
  }
  // Rate 1: every slot from memory; rate 0: none; the same (seed, step, memory): the same draw.
  for (std::int64_t step = 0; step < 10; ++step) {
    for (const auto& s : make_sampler("performance_aware", banks, 1.0).at(7, step, &memory))
      if (s.bank >= 0) CHECK((s.remembered && s.subnet == remembered));
    for (const auto& s : make_sampler("performance_aware", banks, 0.0).at(7, step, &memory)) CHECK(!s.remembered);
  }
  std::int64_t from_memory = 0, slots = 0;
  const auto half = make_sampler("performance_aware", banks, 0.5);
  for (std::int64_t step = 0; step < 200; ++step) {
    const auto a = half.at(9, step, &memory), b = half.at(9, step, &memory);
    for (std::size_t i = 0; i < a.size(); ++i)
      CHECK((a[i].subnet == b[i].subnet && a[i].remembered == b[i].remembered));
    for (const auto& s : a)
      if (s.bank >= 0) from_memory += s.remembered, ++slots;
  }
  CHECK(slots == 600);
  CHECK(from_memory > 240);  // 300 expected; binomial sd 8.7
  CHECK(from_memory < 360);
}

TEST_CASE("nas samplers: bad settings are refused", "[nas]") {
  CHECK_THROWS_WITH(make_sampler("greedy"), Catch::Contains("unknown sampler greedy"));
  CHECK_THROWS_WITH(make_sampler("complexity_aware"), Catch::Contains("needs mflops_banks"));
  CHECK_THROWS_WITH(make_sampler("complexity_aware", {3.0, 1.0}), Catch::Contains("must increase"));
  CHECK_THROWS_WITH(make_sampler("performance_aware"), Catch::Contains("needs mflops_banks"));
  CHECK_THROWS_WITH(make_sampler("performance_aware", {1.0}, 1.5), Catch::Contains("memory_rate in [0, 1]"));
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
                                    "trainer.mflops_banks=[0.1,0.2,0.3]",
                                    "trainer.sampler=performance_aware trainer.mflops_banks=[0.1,0.2,0.3] "
                                    "trainer.memory_rate=0.5"}) {
    INFO(sampler);
    testing::TempDir tmp;
    const auto r = testing::blocklab_command(
        "run fmnist_supernet " + sampler + tiny + " output_dir=" + tmp.path.string(), BLOCKLAB_TEST_DIR, true);
    INFO(r.out);
    CHECK(r.status == 0);
  }
}

}  // namespace BLOCKLAB_TEST_FILE
