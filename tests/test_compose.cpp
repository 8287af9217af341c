#include <catch2/catch.hpp>

#include "experiments/experiment.h"
#include "golden.h"
#include "registry/compose.h"
#include "registry/config_error.h"
#include "registry/interpolate.h"
#include "registry/yaml_io.h"

using namespace blocklab;

namespace {

const std::string kConf = std::string(BLOCKLAB_TEST_DIR) + "/fixtures/conf";

ComposeResult compose_fixture(const std::string& name, const std::vector<std::string>& overrides) {
  ComposeRequest req;
  req.config_dir = kConf;
  req.display_dir = "conf";
  req.config_name = name;
  req.overrides = parse_overrides(overrides);
  return compose(req);
}

ConfigNode load_validated(const std::string& name, const std::vector<std::string>& overrides) {
  ConfigNode c = compose_fixture(name, overrides).config;
  validate_experiment(c);
  return c;
}

void check_golden(const std::string& name, const std::string& text) {
  const std::string mismatch = testing::golden_mismatch(name, text);
  INFO(mismatch);
  CHECK(mismatch.empty());
}

}  // namespace

TEST_CASE("defaults lists place group options at their packages", "[compose]") {
  const ConfigNode c = compose_fixture("exp", {}).config;
  CHECK(c.find_path("trainer.lr")->as_double() == Approx(1e-3));
  CHECK(c.find_path("model.width")->as_int() == 64);
  CHECK(c.at("tag").as_string() == "run_0");
  CHECK(c.find_path("trainer.lr")->source().text() == "conf/trainer/default.yaml:1");
  CHECK(c.keys() == std::vector<std::string>{"trainer", "model", "task", "seed", "tag"});
}

TEST_CASE("group and value overrides, with command-line provenance", "[compose]") {
  const ConfigNode c = compose_fixture("exp", {"trainer=fast", "model=large", "trainer.lr=3e-4", "~trainer.warmup",
                                               "+trainer.clip=1.0", "++seed=7", "model.heads=2"})
                           .config;
  CHECK(c.find_path("trainer.lr")->as_double() == Approx(3e-4));
  CHECK(c.find_path("trainer.lr")->source().text() == "command line 'trainer.lr=3e-4'");
  CHECK(c.find_path("trainer.epochs")->as_int() == 2);
  CHECK(c.find_path("trainer.warmup") == nullptr);
  CHECK(c.find_path("trainer.clip")->as_double() == 1.0);
  CHECK(c.find_path("model.width")->as_int() == 256);
  CHECK(c.find_path("model.heads")->as_int() == 2);
  CHECK(c.at("tag").as_string() == "run_7");  // interpolation sees the override
}

TEST_CASE("deleting a config group drops its package", "[compose]") {
  const ConfigNode c = compose_fixture("exp", {"~model"}).config;
  CHECK_FALSE(c.has("model"));
}

TEST_CASE("provenance dump names files and overrides", "[compose]") {
  const ConfigNode c = compose_fixture("exp", {"trainer.lr=3e-4"}).config;
  DumpOptions opt;
  opt.provenance = true;
  const std::string y = dump_yaml(c, opt);
  CHECK(y.find("lr: 3e-4  # command line 'trainer.lr=3e-4'") != std::string::npos);
  CHECK(y.find("epochs: 10  # conf/trainer/default.yaml:2") != std::string::npos);
}

TEST_CASE("the same config and overrides compose to the same tree", "[compose]") {
  const auto a = compose_fixture("exp", {"model=large", "seed=3"}).config;
  const auto b = compose_fixture("exp", {"model=large", "seed=3"}).config;
  CHECK(dump_yaml(a) == dump_yaml(b));
}

TEST_CASE("a valid experiment passes validation", "[schema]") {
  CHECK_NOTHROW(load_validated("exp", {"model.heads=8", "trainer.lr=0.5"}));
  CHECK_NOTHROW(load_validated("exp", {"model=large"}));
}

TEST_CASE("golden: unknown key with did-you-mean and valid keys", "[golden]") {
  check_golden("unknown_key", testing::error_text([] { load_validated("exp", {"+trainer.lrr=0.1"}); }));
}

TEST_CASE("golden: unknown key in an override of a missing key", "[golden]") {
  check_golden("override_missing_key", testing::error_text([] { compose_fixture("exp", {"trainer.lrr=0.1"}); }));
}

TEST_CASE("golden: wrong type", "[golden]") {
  check_golden("wrong_type", testing::error_text([] { load_validated("exp", {"trainer.epochs=ten"}); }));
}

TEST_CASE("golden: value out of range", "[golden]") {
  check_golden("out_of_range", testing::error_text([] { load_validated("exp", {"model.heads=0"}); }));
}

TEST_CASE("golden: unknown registry name", "[golden]") {
  check_golden("unknown_registry_name", testing::error_text([] { load_validated("exp", {"model.type=mix/dens"}); }));
}

TEST_CASE("golden: unknown task", "[golden]") {
  check_golden("unknown_task", testing::error_text([] { load_validated("exp", {"task=test/prob"}); }));
}

TEST_CASE("golden: missing interpolation target", "[golden]") {
  check_golden("missing_interpolation", testing::error_text([] { compose_fixture("bad_interp", {}); }));
}

TEST_CASE("golden: interpolation cycle", "[golden]") {
  check_golden("interpolation_cycle", testing::error_text([] { compose_fixture("bad_cycle", {}); }));
}

TEST_CASE("golden: unknown group option", "[golden]") {
  check_golden("unknown_group_option", testing::error_text([] { compose_fixture("exp", {"model=larg"}); }));
}

TEST_CASE("golden: unknown experiment", "[golden]") {
  check_golden("unknown_experiment", testing::error_text([] { compose_fixture("exq", {}); }));
}

TEST_CASE("golden: adding a key that exists", "[golden]") {
  check_golden("add_existing_key", testing::error_text([] { compose_fixture("exp", {"+trainer.lr=1"}); }));
}

TEST_CASE("golden: a sweep given to a single run", "[golden]") {
  check_golden("sweep_in_run", testing::error_text([] { compose_fixture("exp", {"seed=1,2"}); }));
}

TEST_CASE("golden: several errors in one report", "[golden]") {
  check_golden("several_errors", testing::error_text([] {
                 load_validated("exp", {"trainer.epochs=ten", "model.heads=100", "+model.widht=3", "+extra=1"});
               }));
}

TEST_CASE("golden: several malformed overrides in one report", "[golden]") {
  check_golden("several_malformed_overrides", testing::error_text([] { parse_overrides({"a=[1", "b", "c=ok"}); }));
}

TEST_CASE("golden: mandatory value not given", "[golden]") {
  check_golden("mandatory_missing", testing::error_text([] { load_validated("exp", {"trainer.lr=???"}); }));
}

TEST_CASE("interpolation forms", "[interpolate]") {
  ConfigNode c = parse_yaml(
      "a: {b: 3, c: '${.b}', d: '${..e}', s: 'x_${a.b}_${e}'}\ne: 1.5\nf: '${a}'\ng: '\\${a.b}'\nh: '${oc.env:BLOCKLAB_NOPE,7}'\n"
      "t: true\nu: 'flag=${t}'\n",
      "i.yaml");
  resolve_interpolations(c);
  CHECK(c.find_path("a.c")->as_int() == 3);
  CHECK(c.find_path("a.d")->as_double() == 1.5);
  CHECK(c.find_path("a.s")->as_string() == "x_3_1.5");
  CHECK(c.find_path("f.b")->as_int() == 3);
  CHECK(c.at("g").as_string() == "${a.b}");
  CHECK(c.at("h").as_int() == 7);
  CHECK(c.at("u").as_string() == "flag=True");  // Python's str(), as OmegaConf
}
