#include <catch2/catch.hpp>

#include "experiments/experiment.h"
#include "golden.h"
#include "registry/compose.h"
#include "registry/config_error.h"
#include "registry/interpolate.h"
#include "registry/yaml_io.h"

namespace BLOCKLAB_TEST_FILE {

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
  CHECK(c.at("h").as_string() == "7");  // oc.env returns strings, its default too (OmegaConf 2.3)
  CHECK(c.at("u").as_string() == "flag=True");  // Python's str(), as OmegaConf
}

TEST_CASE("~key=value compares values as Python does", "[compose]") {
  for (const char* same : {"~trainer.epochs=10", "~trainer.epochs=10.0", "~trainer.epochs=1e1"}) {
    INFO(same);
    CHECK_FALSE(compose_fixture("exp", {same}).config.find_path("trainer.epochs"));
  }
  for (const char* differs : {"~trainer.epochs='10'", "~trainer.epochs=11", "~trainer.epochs=[10]"}) {
    INFO(differs);
    CHECK_THROWS_WITH(compose_fixture("exp", {differs}), Catch::Contains("cannot delete: its value is 10"));
  }
}

namespace {

ConfigNode resolved(const std::string& yaml) {
  ConfigNode c = parse_yaml(yaml, "i.yaml");
  resolve_interpolations(c);
  return c;
}

}  // namespace

TEST_CASE("backslashes before ${ follow OmegaConf; others are kept", "[interpolate]") {
  const ConfigNode c = resolved(R"(x: 1
a: '\${x}'
b: '\\${x}'
c: '\\\${x}'
d: 'c:\d\\${x}'
e: 'a\\b ${x}'
)");
  CHECK(c.at("a").as_string() == R"(${x})");    // escaped: a literal
  CHECK(c.at("b").as_string() == R"(\1)");      // an escaped backslash, then the value
  CHECK(c.at("c").as_string() == R"(\${x})");
  CHECK(c.at("d").as_string() == R"(c:\d\1)");
  CHECK(c.at("e").as_string() == R"(a\\b 1)");  // not before ${: kept as written
}

TEST_CASE("oc.env defaults are strings, as OmegaConf returns them", "[interpolate]") {
  const ConfigNode c = resolved(R"(a: ${oc.env:BLOCKLAB_NOPE,10}
b: ${oc.env:BLOCKLAB_NOPE,1.50}
c: ${oc.env:BLOCKLAB_NOPE,true}
d: ${oc.env:BLOCKLAB_NOPE,null}
e: ${oc.env:BLOCKLAB_NOPE, a b }
f: "${oc.env:BLOCKLAB_NOPE,'a}b'}"
g: "x_${oc.env:BLOCKLAB_NOPE,'{}'}_y"
)");
  CHECK(c.at("a").is_string());
  CHECK(c.at("a").as_string() == "10");
  CHECK(c.at("b").as_string() == "1.5");
  CHECK(c.at("c").as_string() == "True");
  CHECK(c.at("d").is_null());
  CHECK(c.at("e").as_string() == "a b");
  CHECK(c.at("f").as_string() == "a}b");  // a '}' inside quotes does not end the interpolation
  CHECK(c.at("g").as_string() == "x_{}_y");
  CHECK_THROWS_WITH(resolved("a: ${oc.env:BLOCKLAB_NOPE,x,y}\n"), Catch::Contains("malformed default 'x,y'"));
}

TEST_CASE("interpolation chains are bounded", "[interpolate]") {
  // v<n> -> v<n-1> -> ... -> v0, first key first: resolving v<n> recurses through all of them.
  const auto chain = [](int n) {
    std::string yaml;
    for (int i = n; i >= 1; --i) yaml += "v" + std::to_string(i) + ": ${v" + std::to_string(i - 1) + "}\n";
    return yaml + "v0: 1\n";
  };
  CHECK(resolved(chain(200)).at("v200").as_int() == 1);
  CHECK_THROWS_WITH(resolved(chain(100000)), Catch::Contains("interpolations refer through more than 256 values"));
}

TEST_CASE("golden: unknown key lists the parameters the config leaves at their defaults", "[golden]") {
  // model is {type: mix/dense, width, heads}; mix/dense also takes dropout, unset here.
  check_golden("override_missing_optional_key",
               testing::error_text([] { compose_fixture("exp", {"model.dropuot=0.1"}); }));
}

TEST_CASE("an option of a component that the YAML leaves at its default is set without +", "[compose]") {
  // model is {type: mix/dense, width, heads}; mix/dense also takes dropout, unset in the YAML.
  const ConfigNode c = compose_fixture("exp", {"model.dropout=0.1"}).config;
  CHECK(c.find_path("model.dropout")->as_double() == Approx(0.1));
  CHECK(c.find_path("model.dropout")->source().text() == "command line 'model.dropout=0.1'");
  // Keys that are no option of the component still need + (a typo is not added silently).
  CHECK_THROWS_WITH(compose_fixture("exp", {"model.dropuot=0.1"}), Catch::Contains("no such key in the config"));
  CHECK_THROWS_WITH(compose_fixture("exp", {"trainer.dropout=0.1"}), Catch::Contains("no such key in the config"));
}

TEST_CASE("interpolated containers cannot nest the config deeper than the limit", "[interpolate]") {
  // v<i> is v<i-1> wrapped in 10 lists: 40 links would nest 400 levels.
  std::string yaml = "v0: 1\n";
  for (int i = 1; i <= 40; ++i)
    yaml += "v" + std::to_string(i) + ": " + std::string(10, '[') + "'${v" + std::to_string(i - 1) + "}'" +
            std::string(10, ']') + "\n";
  CHECK_THROWS_WITH(resolved(yaml), Catch::Contains("the interpolation makes the config nest deeper than 256 levels"));
}

namespace {

// The fixtures of the Hydra differential test (tests/hydra_diff), composed in process.
const std::string kHydraConf = std::string(BLOCKLAB_TEST_DIR) + "/fixtures/hydra_conf";

ComposeResult compose_hydra_fixture(const std::string& name, const std::vector<std::string>& overrides) {
  ComposeRequest req;
  req.config_dir = kHydraConf;
  req.display_dir = "hydra_conf";
  req.config_name = name;
  req.overrides = parse_overrides(overrides);
  return compose(req);
}

std::vector<std::int64_t> multi_ints(const ConfigNode& list) {
  std::vector<std::int64_t> out;
  for (const auto& item : list.items()) out.push_back(item.as_int());
  return out;
}

}  // namespace

TEST_CASE("several options of one group merge in the listed order at the group's package", "[compose]") {
  // exp_multi: - experiment: [lr_low, lr_high], then _self_.
  const ComposeResult r = compose_hydra_fixture("exp_multi", {});
  const ConfigNode& c = r.config;
  CHECK(c.find_path("experiment.lr")->as_double() == Approx(0.1));  // the later option wins
  CHECK(c.find_path("experiment.lr")->source().text() == "hydra_conf/experiment/lr_high.yaml:1");
  CHECK(c.find_path("experiment.tag")->as_string() == "low");  // set by the first option only
  CHECK(c.find_path("experiment.tag")->source().text() == "hydra_conf/experiment/lr_low.yaml:3");
  CHECK(multi_ints(*c.find_path("experiment.steps")) == std::vector<std::int64_t>{3});  // lists are replaced
  CHECK(c.find_path("experiment.nested.a")->as_int() == 1);
  CHECK(c.find_path("experiment.nested.b")->as_int() == 20);  // mappings merge
  CHECK(c.find_path("experiment.extra")->as_string() == "high_0.1");
  CHECK(c.find_path("summary.lr")->as_double() == Approx(0.1));
  const auto choice = std::find(r.choices.begin(), r.choices.end(),
                                std::pair<std::string, std::string>{"experiment", "[lr_low, lr_high]"});
  CHECK(choice != r.choices.end());

  const ConfigNode swapped = compose_hydra_fixture("exp_multi", {"experiment=[lr_high,lr_low]"}).config;
  CHECK(swapped.find_path("experiment.lr")->as_double() == Approx(0.001));
  CHECK(swapped.find_path("experiment.nested.b")->as_int() == 2);
  CHECK(swapped.find_path("experiment.extra")->as_string() == "high_0.001");
  // One option replaces the list; an empty list selects nothing.
  CHECK_FALSE(compose_hydra_fixture("exp_multi", {"experiment=lr_high"}).config.find_path("experiment.tag"));
  CHECK_FALSE(compose_hydra_fixture("exp_multi_self_first", {"experiment@picked=[]"}).config.has("picked"));
}

TEST_CASE("+group=[a,b] appends options after _self_; their defaults lists apply", "[compose]") {
  // experiment/fast overrides the primary's trainer choice; experiment/seeded comes last.
  const ConfigNode c = compose_hydra_fixture("exp_basic", {"+experiment=[fast,seeded]"}).config;
  CHECK(c.find_path("trainer.lr")->as_double() == Approx(0.01));  // trainer/fast
  CHECK(c.find_path("trainer.epochs")->as_int() == 6);            // seeded after fast after _self_
  CHECK(c.find_path("run.seed")->as_int() == 42);
  CHECK_FALSE(c.has("experiment"));  // both options are _global_
  // The command line beats an option's `override`.
  const ConfigNode d = compose_hydra_fixture("exp_basic", {"+experiment=[fast,seeded]", "trainer=default"}).config;
  CHECK(d.find_path("trainer.lr")->as_double() == Approx(1e-3));
  // At another package, and an option with its own defaults list.
  const ConfigNode e = compose_hydra_fixture("exp_basic", {"+experiment@exp=[lr_low,with_data]"}).config;
  CHECK(e.find_path("exp.lr")->as_double() == Approx(0.5));
  CHECK(e.find_path("exp.data.name")->as_string() == "cifar");
  // A list entry is no choice of the group, so the group can still be added (as in Hydra).
  CHECK(compose_hydra_fixture("exp_multi", {"+experiment=[seeded]"}).config.find_path("run.seed")->as_int() == 42);
}

TEST_CASE("[a,b] for a key that is no config group stays a list value; a comma list stays a sweep", "[compose]") {
  const ConfigNode c = compose_hydra_fixture("exp_basic", {"trainer.schedule=[7,8]"}).config;
  CHECK(multi_ints(*c.find_path("trainer.schedule")) == std::vector<std::int64_t>{7, 8});
  CHECK_THROWS_WITH(compose_hydra_fixture("exp_basic", {"+experiment=lr_low,lr_high"}),
                    Catch::Contains("is a sweep: a single run takes one value per key"));
}

TEST_CASE("golden: multi-select errors name the option and the candidates", "[golden]") {
  check_golden("multi_select_unknown_option",
               testing::error_text([] { compose_hydra_fixture("exp_multi", {"experiment=[lr_low,lr_hgh]"}); }));
  check_golden("multi_select_not_names",
               testing::error_text([] { compose_hydra_fixture("exp_basic", {"trainer=[1,2]"}); }));
  check_golden("multi_select_in_defaults", testing::error_text([] { compose_hydra_fixture("exp_multi_bad", {}); }));
  check_golden("multi_select_delete", testing::error_text([] { compose_hydra_fixture("exp_multi", {"~experiment"}); }));
}

TEST_CASE("value overrides on a composed config follow compose's rules; group choices are refused", "[compose]") {
  const ConfigNode base = compose_hydra_fixture("exp_basic", {}).config;
  const auto apply = [&](const std::vector<std::string>& overrides) {
    return override_composed_config(base, parse_overrides(overrides), kHydraConf, "compose it again");
  };
  const ConfigNode c = apply({"trainer.lr=0.5", "+run.extra=1", "~aug", "trainer={epochs: 1}"});
  CHECK(c.find_path("trainer.lr")->as_double() == Approx(0.5));
  CHECK(c.find_path("trainer.lr")->source().text() == "command line 'trainer.lr=0.5'");
  CHECK(c.find_path("run.extra")->as_int() == 1);
  CHECK(c.find_path("trainer.epochs")->as_int() == 1);  // a mapping given to a group's key merges
  CHECK_FALSE(c.has("aug"));
  CHECK(c.find_path("summary.lr")->as_double() == Approx(1e-3));  // resolved before: stays
  CHECK_THROWS_WITH(apply({"trainer=fast"}),
                    Catch::Contains("chooses a config group option") && Catch::Contains("compose it again"));
  CHECK_THROWS_WITH(apply({"+experiment=[lr_low]"}), Catch::Contains("chooses a config group option"));
  CHECK_THROWS_WITH(apply({"run.name=${trainer.lr}"}), Catch::Contains("interpolations are not resolved"));
  CHECK_THROWS_WITH(apply({"trainer.nope=1"}), Catch::Contains("no such key in the config"));
  CHECK_THROWS_WITH(apply({"seed=1,2"}), Catch::Contains("is a sweep"));
}

}  // namespace BLOCKLAB_TEST_FILE
