// AutoDistil (catalog 003/004 C41), tag [nas]: MiniLMv2's self-attention relations and their
// distillation loss against a by-hand computation, zero when the student is the teacher (the
// catalog's test), across widths by relation heads; a supernet gives the queries, keys and values of
// its last attention-type layer; the widths split into contiguous sub-spaces; end to end: a
// supernet trained task-agnostically from a teacher run (no labels), searched by the distillation
// proxy, and the rules that refuse what cannot work.
#include <catch2/catch.hpp>

#include <cmath>

#include "blocks/nas/relation_kd.h"
#include "blocks/nas/supernet.h"
#include "registry/config_error.h"
#include "registry/yaml_io.h"
#include "tests/process_support.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;
namespace fs = std::filesystem;

namespace {

// softmax(x_a x_a^T / sqrt(d)) of relation head a, row by row, by hand.
double autodistil_relation(const torch::Tensor& x, std::int64_t b, std::int64_t a, std::int64_t d, std::int64_t i,
                           std::int64_t j) {
  const auto n = x.size(1);
  const auto row = [&](std::int64_t t) { return x[b][t].narrow(0, a * d, d); };
  std::vector<double> logits;
  for (std::int64_t t = 0; t < n; ++t) logits.push_back(row(i).dot(row(t)).item<double>() / std::sqrt(double(d)));
  double z = 0;
  for (double l : logits) z += std::exp(l);
  return std::exp(logits[static_cast<std::size_t>(j)]) / z;
}

Supernet autodistil_supernet(const std::string& yaml) {
  ModelArgs args;
  args.inputs.channels = 1, args.inputs.height = 28, args.inputs.width = 28, args.outputs = 10;
  auto s = std::dynamic_pointer_cast<SupernetImpl>(model_registry().create(parse_yaml(yaml, "model"), args));
  REQUIRE(s);
  s->to(torch::kFloat64);
  s->eval();
  return s;
}

const char* kAutodistilTiny =
    " model.patch=7 model.depths=[1,2] model.widths=[16,24] model.heads=[1,2] model.mlp_ratios=[1,2] "
    "model.head_dim=8 model.mixers=[attention/softmax,linear/elu] dataset.limit_train=256 dataset.limit_test=100 "
    "dataset.val_size=0 trainer.batch_size=32 trainer.epochs=1 threads=1 -q";

}  // namespace

TEST_CASE("autodistil: relations and their distillation loss by hand; zero for the teacher itself", "[nas]") {
  torch::manual_seed(3);
  const auto x = torch::randn({2, 4, 6}, torch::kFloat64);
  const auto log_r = log_self_relations(x, 2);  // d_r = 3
  REQUIRE(log_r.sizes() == torch::IntArrayRef({2, 2, 4, 4}));
  for (std::int64_t b = 0; b < 2; ++b)
    for (std::int64_t a = 0; a < 2; ++a)
      for (std::int64_t i = 0; i < 4; ++i)
        for (std::int64_t j = 0; j < 4; ++j)
          CHECK(std::abs(log_r[b][a][i][j].exp().item<double>() - autodistil_relation(x, b, a, 3, i, j)) < 1e-12);

  const AttentionRelations teacher{torch::randn({2, 4, 6}, torch::kFloat64), torch::randn({2, 4, 6}, torch::kFloat64),
                                   torch::randn({2, 4, 6}, torch::kFloat64)};
  CHECK(relation_kd_loss(teacher, teacher, 2).item<double>() == 0.0);
  // A narrower student (width 4 against 6: the same relation shapes through the relation heads).
  AttentionRelations student{torch::randn({2, 4, 4}, torch::kFloat64).requires_grad_(),
                             torch::randn({2, 4, 4}, torch::kFloat64).requires_grad_(),
                             torch::randn({2, 4, 4}, torch::kFloat64).requires_grad_()};
  const auto loss = relation_kd_loss(teacher, student, 2);
  double by_hand = 0;
  for (const auto& [t, s] : {std::pair{teacher.q, student.q}, {teacher.k, student.k}, {teacher.v, student.v}}) {
    double kl = 0;
    for (std::int64_t b = 0; b < 2; ++b)
      for (std::int64_t a = 0; a < 2; ++a)
        for (std::int64_t i = 0; i < 4; ++i)
          for (std::int64_t j = 0; j < 4; ++j) {
            const double p = autodistil_relation(t, b, a, 3, i, j), q = autodistil_relation(s.detach(), b, a, 2, i, j);
            kl += p * std::log(p / q);
          }
    by_hand += kl / (2 * 2 * 4);  // the mean over batch, relation heads and rows
  }
  CHECK(std::abs(loss.item<double>() - by_hand) < 1e-10);
  CHECK(loss.item<double>() > 0);
  loss.backward();
  CHECK(student.q.grad().abs().sum().item<double>() > 0);
  CHECK_THROWS_AS(log_self_relations(x, 4), std::invalid_argument);  // 4 does not divide 6
}

TEST_CASE("autodistil: a supernet gives its last attention layer's relations; sub-spaces split the widths", "[nas]") {
  const Supernet net = autodistil_supernet(
      "{type: model/supernet, patch: 7, depths: [1, 2], widths: [16, 24], heads: [1, 2], mlp_ratios: [1, 2], "
      "head_dim: 8, mixers: [attention/softmax, mixer/pooling]}");
  const auto x = torch::randn({3, 1, 28, 28}, torch::kFloat64);
  torch::NoGradGuard no_grad;
  Subnet s{16, {{"attention/softmax", 2, 1.0}, {"mixer/pooling", 1, 1.0}}};
  net->set_subnet(s);
  AttentionRelations r;
  CHECK(torch::equal(net->forward_relations(x, r), net->forward(x)));
  CHECK(r.q.sizes() == torch::IntArrayRef({3, 16, 16}));  // 4x4 tokens, 2 heads of 8
  // The queries are layer 0's: LN(z_0) W_Q (the first 16 rows of the shared projection).
  const auto z0 =
      torch::conv2d(x, net->patch_embed->weight.narrow(0, 0, 16), net->patch_embed->bias.narrow(0, 0, 16), {7, 7})
          .flatten(2)
          .transpose(1, 2) +
      net->pos_embed.narrow(2, 0, 16);
  const auto& layer = *net->layer_list->ptr<SupernetLayerImpl>(0);
  const auto h =
      torch::layer_norm(z0, {16}, layer.norm1->weight.narrow(0, 0, 16), layer.norm1->bias.narrow(0, 0, 16), 1e-6);
  const auto q =
      torch::linear(h, layer.qkv->weight.narrow(0, 0, 16).narrow(1, 0, 16), layer.qkv->bias.narrow(0, 0, 16));
  CHECK((r.q - q).abs().max().item<double>() < 1e-10);
  AttentionRelations again;
  net->forward_relations(x, again);
  CHECK(relation_kd_loss(r, again, 4).item<double>() == 0.0);
  net->set_subnet(Subnet{16, {{"mixer/pooling", 1, 1.0}}});
  CHECK_THROWS_AS(net->forward_relations(x, r), std::invalid_argument);

  const std::string space = "{type: model/supernet, widths: [64, 32, 80, 48], subspaces: 3, subspace: ";
  CHECK((autodistil_supernet(space + "0}")->space().widths == std::vector<std::int64_t>{32, 48}));
  CHECK((autodistil_supernet(space + "1}")->space().widths == std::vector<std::int64_t>{64}));
  CHECK((autodistil_supernet(space + "2}")->space().widths == std::vector<std::int64_t>{80}));
  CHECK_THROWS_AS(autodistil_supernet(space + "3}"), ConfigError);
  CHECK_THROWS_AS(autodistil_supernet("{type: model/supernet, subspaces: 5}"), ConfigError);
}

TEST_CASE("autodistil: task-agnostic supernet training from a teacher run, searched by the proxy", "[nas]") {
  testing::TempDir tmp;
  const std::string runs = (tmp.path / "runs").string();
  const auto teacher = testing::blocklab_command("run fmnist_supernet output_dir=" + runs + kAutodistilTiny);
  INFO(teacher.out << teacher.err);
  REQUIRE(teacher.status == 0);
  const fs::path teacher_dir = fs::directory_iterator(tmp.path / "runs" / "fmnist_supernet")->path();

  const std::string student = std::string(" trainer.objective=relation_kd trainer.teacher=") + teacher_dir.string() +
                              " output_dir=" + (tmp.path / "students").string() + kAutodistilTiny;
  const auto trained = testing::blocklab_command("run fmnist_supernet model.widths=[16] model.heads=[1]" + student);
  INFO(trained.out << trained.err);
  REQUIRE(trained.status == 0);
  const fs::path student_dir = fs::directory_iterator(tmp.path / "students" / "fmnist_supernet")->path();
  const std::string metrics = testing::slurp(student_dir / "metrics.jsonl");
  CHECK(metrics.find("\"test/relation_kd\": ") != std::string::npos);
  CHECK(testing::slurp(student_dir / "summary.json").find("\"best/test_relation_kd\"") != std::string::npos);

  const auto searched = testing::blocklab_command(
      "search fmnist_supernet --score relation_kd --split test --candidates 3 --population 2 --sample 2 --out " +
      (tmp.path / "searches").string() + " model.widths=[16] model.heads=[1]" + student);
  INFO(searched.out << searched.err);
  REQUIRE(searched.status == 0);
  std::string dir = searched.out;
  while (!dir.empty() && dir.back() == '\n') dir.pop_back();
  CHECK(testing::slurp(fs::path(dir) / "pareto.md").find("relation-distillation loss") != std::string::npos);

  // What cannot work is refused before anything runs, at the option.
  const auto no_teacher = testing::blocklab_command(
      "show fmnist_supernet trainer.objective=relation_kd model.mixers=[attention/softmax,linear/elu]");
  CHECK(no_teacher.status == 2);
  CHECK_THAT(no_teacher.out + no_teacher.err, Catch::Contains("trainer.teacher") && Catch::Contains("needs a teacher"));
  const auto pooling = testing::blocklab_command(
      "show fmnist_supernet trainer.objective=relation_kd trainer.teacher=" + teacher_dir.string() +
      " model.mixers=[attention/softmax,mixer/pooling]");
  CHECK(pooling.status == 2);
  CHECK_THAT(pooling.out + pooling.err, Catch::Contains("mixer/pooling does not attend"));
}

}  // namespace BLOCKLAB_TEST_FILE
