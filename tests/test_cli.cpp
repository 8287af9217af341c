// End-to-end tests of the blocklab executable: exit statuses and the messages users see.
#include <catch2/catch.hpp>

#include <sys/wait.h>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "golden.h"
#include "process_support.h"
#include "registry/cli_options.h"

namespace BLOCKLAB_TEST_FILE {

namespace fs = std::filesystem;

namespace {

using Result = blocklab::testing::CommandResult;

// Runs `blocklab <args>` in the tests directory, stdout and stderr together in `out`.
Result run_blocklab(const std::string& args) { return blocklab::testing::blocklab_command(args, BLOCKLAB_TEST_DIR, true); }

void check_golden(const std::string& name, const std::string& text) {
  const std::string mismatch = blocklab::testing::golden_mismatch(name, text);
  INFO(mismatch);
  CHECK(mismatch.empty());
}

}  // namespace

TEST_CASE("help for the tool and every subcommand exits 0", "[cli]") {
  CHECK(run_blocklab("--help").status == 0);
  for (const char* sub : {"list", "describe", "show", "run"}) {
    INFO(sub);
    const Result r = run_blocklab(std::string(sub) + " --help");
    CHECK(r.status == 0);
    CHECK(r.out.find("Usage: blocklab " + std::string(sub)) != std::string::npos);
  }
}

TEST_CASE("show prints the resolved config with provenance", "[cli]") {
  const Result r = run_blocklab("show exp --config-dir fixtures/conf --no-validate trainer.lr=3e-4 '~trainer.warmup' -p");
  CHECK(r.status == 0);
  CHECK(r.out.find("lr: 3e-4  # command line 'trainer.lr=3e-4'") != std::string::npos);
  CHECK(r.out.find("warmup") == std::string::npos);
  CHECK(r.out.find("epochs: 10  # fixtures/conf/trainer/default.yaml:2") != std::string::npos);
  const Result json = run_blocklab("show exp --config-dir fixtures/conf --no-validate --format json seed=3");
  CHECK(json.status == 0);
  CHECK(json.out.find("\"seed\": 3") != std::string::npos);
  CHECK(json.out.find("\"tag\": \"run_3\"") != std::string::npos);
}

TEST_CASE("bad input exits with status 2 and a clear message", "[cli]") {
  const Result unknown_cmd = run_blocklab("lst");
  CHECK(unknown_cmd.status == 2);
  check_golden("cli_unknown_command", unknown_cmd.out);

  const Result bad_option = run_blocklab("show exp --provenanse");
  CHECK(bad_option.status == 2);
  check_golden("cli_unknown_option", bad_option.out);

  const Result bad_group = run_blocklab("show exp --config-dir fixtures/conf --no-validate model=larg");
  CHECK(bad_group.status == 2);
  check_golden("cli_unknown_group_option", bad_group.out);

  const Result missing_value = run_blocklab("show exp --config-dir");
  CHECK(missing_value.status == 2);
  check_golden("cli_missing_option_value", missing_value.out);

  const Result nothing = run_blocklab("describe no/such-block");
  CHECK(nothing.status == 2);
  CHECK(nothing.out.find("error: nothing registered as 'no/such-block'") == 0);

  const Result unknown_kind = run_blocklab("list mixr");
  CHECK(unknown_kind.status == 2);

  CHECK(run_blocklab("").status == 2);
}

TEST_CASE("no raw yaml-cpp or Boost message reaches the user", "[cli]") {
  // A config file with broken YAML: the message names the file and line in our words.
  const Result r = run_blocklab("show broken --config-dir fixtures/broken_conf --no-validate");
  CHECK(r.status == 2);
  check_golden("cli_broken_yaml", r.out);
  CHECK(r.out.find("yaml-cpp") == std::string::npos);
  CHECK(r.out.find("boost") == std::string::npos);
}

TEST_CASE("one index-list syntax for every command: indices and inclusive ranges, checked", "[cli]") {
  using blocklab::IndexList;
  using blocklab::UsageError;
  CHECK(IndexList("attn", "--samples", "0-3,5").resolve(10, "samples") == std::vector<std::int64_t>{0, 1, 2, 3, 5});
  CHECK(IndexList("attn", "--samples", "7").resolve(8, "samples") == std::vector<std::int64_t>{7});
  CHECK(IndexList("attn", "--tokens", "2-5").single_range(6, "tokens") == std::pair<std::int64_t, std::int64_t>{2, 5});
  CHECK(IndexList().empty());
  // Syntax errors name the command, the option and the text, then show the syntax.
  CHECK_THROWS_WITH(IndexList("attn", "--tokens", "5-2"),
                    "blocklab attn: --tokens '5-2': 5-2 is a reversed range (write 2-5)\n"
                    "  --tokens takes indices from 0 and inclusive ranges FROM-TO, e.g. 0,2,5-7");
  for (const char* bad : {"", ",", "1,,2", "-1", "1-", "-", "a", "1.5", "+1", " 1", "1-2-3", "0x3", "3-3,3",
                          "0-5,4-6", "99999999999999999999", "1000000000001"})
    CHECK_THROWS_AS(IndexList("attn", "--samples", bad), UsageError);
  // Bounds: an index that does not exist says what does; huge ranges are checked, never expanded.
  CHECK_THROWS_WITH(IndexList("attn", "--layers", "0,7").resolve(4, "layers"),
                    Catch::Contains("--layers '0,7': asks for 7, but there are only layers 0-3"));
  CHECK_THROWS_WITH(IndexList("attn", "--samples", "0-999999999999").resolve(50, "samples"),
                    Catch::Contains("there are only samples 0-49"));
  CHECK_THROWS_WITH(IndexList("attn", "--samples", "0").resolve(0, "samples"), Catch::Contains("there are none"));
  CHECK_THROWS_WITH(IndexList("attn", "--tokens", "0-2,4").single_range(9, "tokens"), Catch::Contains("not one range"));
}

TEST_CASE("integers, choices, name lists and file names are checked with the valid values", "[cli]") {
  using blocklab::UsageError;
  CHECK(blocklab::parse_integer("sweep", "--jobs", "16", 1, 1024) == 16);
  CHECK(blocklab::parse_integer("x", "--n", "-3", -5, 5) == -3);
  CHECK_THROWS_WITH(blocklab::parse_integer("sweep", "--jobs", "0", 1, 1024),
                    "blocklab sweep: --jobs takes an integer from 1 to 1024, not '0'");
  for (const char* bad : {"", "-", "x", "1x", "1.0", "+2", " 2", "2 ", "1e3", "0x10", "-9223372036854775808",
                          "9223372036854775808", "99999999999999999999999"})
    CHECK_THROWS_AS(blocklab::parse_integer("sweep", "--jobs", bad, 1, 1024), UsageError);
  CHECK(blocklab::name_list("plot", "--metrics", "loss,test/acc") == std::vector<std::string>{"loss", "test/acc"});
  CHECK_THROWS_WITH(blocklab::name_list("plot", "--metrics", "loss,,lr"), Catch::Contains("has an empty name"));
  CHECK_THROWS_WITH(blocklab::name_list("plot", "--metrics", "loss,loss"), Catch::Contains("lists 'loss' twice"));
  CHECK_THROWS_WITH(blocklab::name_list("table", "--rows", "a\nb"), Catch::Contains("control character"));
  CHECK(blocklab::checked_file_name("table", "--name", "acc_by-mixer.v2") == "acc_by-mixer.v2");
  for (const char* bad : {"", "..", ".", "../x", "a/b", "/etc/passwd", ".hidden", "-rf", "a b", "a\\b", "a\nb"})
    CHECK_THROWS_WITH(blocklab::checked_file_name("table", "--name", bad), Catch::Contains("is not a plain file name"));
  CHECK_THROWS_AS(blocklab::checked_file_name("table", "--name", std::string(121, 'a')), UsageError);
}

TEST_CASE("an output path that a symbolic link leads out of its directory is refused", "[cli]") {
  blocklab::testing::TempDir tmp;
  const auto out = tmp.path / "out", elsewhere = tmp.path / "elsewhere";
  fs::create_directories(out / "tables");
  fs::create_directories(elsewhere);
  CHECK(blocklab::output_path_inside("table", out.string(), "tables/a.md") == (out / "tables/a.md").string());
  CHECK(blocklab::output_path_inside("table", out.string(), "plots/a.png") == (out / "plots/a.png").string());
  fs::create_directory_symlink(elsewhere, out / "plots");
  CHECK_THROWS_WITH(blocklab::output_path_inside("table", out.string(), "plots/a.png"),
                    Catch::Contains("refusing to write " + (out / "plots/a.png").string() + ": it leads to " +
                                    (elsewhere / "a.png").string()));
  fs::create_symlink(elsewhere / "victim.md", out / "tables" / "b.md");
  CHECK_THROWS_AS(blocklab::output_path_inside("table", out.string(), "tables/b.md"), blocklab::UsageError);
  // The directory itself may be reached through a link: only what is under it must stay there.
  fs::create_directory_symlink(out, tmp.path / "link");
  CHECK_NOTHROW(blocklab::output_path_inside("table", (tmp.path / "link").string(), "tables/a.md"));
}

TEST_CASE("every command checks its arguments: exit 2, the option named, the valid values shown", "[cli][golden]") {
  // Each line: the arguments, then what blocklab printed. Checked before any file is read, so
  // the run and sweep paths need not exist.
  const std::vector<std::string> cases = {
      "attn fixtures/curves/two_writers --tokens 5-2",
      "attn fixtures/curves/two_writers --samples 0,,3",
      "attn fixtures/curves/two_writers --layers=-1",
      "attn fixtures/curves/two_writers --heads 2-1",
      "attn fixtures/curves/two_writers --tokens 0-3,7",
      "attn fixtures/curves/two_writers --split dev",
      "attn fixtures/curves/two_writers --checkpoint first",
      "table fixtures/table_runs/runs --rows model.mixer --metric test/acc --precision 13",
      "table fixtures/table_runs/runs --rows model.mixer --metric test/acc --precision x",
      "table fixtures/table_runs/runs --rows model.mixer,,seed --metric test/acc",
      "table fixtures/table_runs/runs --rows model.mixer --cols model.mixer --metric test/acc",
      "table fixtures/table_runs/runs --rows model.mixer --cols a,b --metric test/acc",
      "table fixtures/table_runs/runs --rows model.mixer --metric test/acc --format html",
      "table fixtures/table_runs/runs --rows model.mixer --metric test/acc --best up",
      "table fixtures/table_runs/runs --rows model.mixer --metric test/acc --name ../../etc/x",
      "plot fixtures/curves/runs/lr_small_s0 --smooth 1000001",
      "plot fixtures/curves/runs/lr_small_s0 --smooth=-1",
      "plot fixtures/curves/runs/lr_small_s0 --metrics loss,,lr",
      "plot fixtures/curves/runs/lr_small_s0 --x time",
      "sweep vit_fmnist --jobs 0",
      "sweep vit_fmnist --jobs many",
      "sweep vit_fmnist --launcher pbs",
      "sweep vit_fmnist --launcher slurm --parallel=-2",
      "sweep vit_fmnist --launcher slurm --cpus-per-task 0",
      "sweep vit_fmnist --launcher slurm --time '1:00:00\nrm -rf /'",
      "sweep vit_fmnist --launcher slurm --sbatch=mem=4G",
      "job no/such/sweep --index 1 --threads 999",
      "show vit_fmnist --format toml",
      "bench vit --dim 0",
      "bench vit --heads 3",
      "bench vit --patch 5",
      "bench mixers --lengths 0",
      "bench mixers --heads 3",
      "bench mixers --mixers linear/elu,,linear/slab",
      "bench mixers --mixers linear/elu --set chunks=32",
      "bench mixers --set type=linear/elu",
      "generate no/such/run --temperature 1e999",
      "generate no/such/run --temperature nan",
      "bench mixers --min-time 1e9",
      "bench mixers --min-time fast",
      "bench mixers --mixers attention/softmax --without-softmax",
      "bench mixers --mixers ssm/mamba:scan=fast",
      "bench mixers --mixers ssm/mamba:sacn=reference",
      "bench scan --primitives selective,ssm",
      "bench scan --lengths 0",
      "bench vit --device tpu",
      "bench mixers --precision fp16",
  };
  std::string text;
  for (const std::string& args : cases) {
    const Result r = run_blocklab(args);
    INFO(args << "\n" << r.out);
    CHECK(r.status == 2);
    text += "$ blocklab " + args + "\n" + r.out;
  }
  check_golden("cli_argument_errors", text);
}

TEST_CASE("bench mixers times each mixer at each length next to softmax and draws the plot", "[cli]") {
  blocklab::testing::TempDir tmp;
  // Small and quick: lengths 16 and 64, width 16, one round.
  const auto bench = [&](const std::string& options) {
    const Result r = run_blocklab("bench mixers --lengths 16,64 --rounds 1 --threads 1 --dim 16 --heads 2 --out " +
                                  tmp.path.string() + " " + options);
    INFO(r.out);
    REQUIRE(r.status == 0);
    CHECK(r.out.find("time x per 4x tokens") != std::string::npos);
    CHECK(r.out.find("64: ") != std::string::npos);  // the 16 -> 64 scaling of each mixer
    return r.out;
  };
  const auto out = bench("--mixers linear/elu,linear/slab --min-time 0.05");
  for (const std::string row : {"attention/softmax", "linear/elu", "linear/slab"}) {
    CHECK(out.find(row + " ") != std::string::npos);
  }
  CHECK(fs::exists(tmp.path / "bench_mixers.png"));
  CHECK(fs::exists(tmp.path / "bench_mixers.svg"));
  // --without-softmax: the mixers alone, no ratio to softmax and no crossover.
  // A variant (KEY:OPTION=VALUE) runs beside its plain mixer and is timed against it.
  const auto variant = bench("--mixers linear/elu,linear/elu:form=parallel --min-time 0 --without-softmax");
  CHECK(variant.find("linear/elu:form=parallel / linear/elu") != std::string::npos);
  const auto alone = bench("--mixers linear/elu --min-time 0 --without-softmax");
  CHECK(alone.find("attention/softmax") == std::string::npos);
  CHECK(alone.find("- (not run)") != std::string::npos);
  // --set reaches the mixers that have the option (here refused by its schema), not softmax.
  const Result set = run_blocklab("bench mixers --mixers linear/elu --lengths 16 --rounds 1 --set chunk=0");
  CHECK(set.status == 2);
  CHECK(set.out.find("chunk") != std::string::npos);
  const Result unknown = run_blocklab("bench mixers --mixers linear/elo");
  CHECK(unknown.status == 2);
  CHECK(unknown.out.find("linear/elu") != std::string::npos);  // did you mean
}

TEST_CASE("bench scan times each primitive's fast form and reference loop and prints their ratios", "[cli]") {
  // Small and quick: lengths 64 and 256, one round, one call per measurement.
  const Result r = run_blocklab("bench scan --lengths 64,256 --rounds 1 --min-time 0 --threads 1");
  INFO(r.out);
  REQUIRE(r.status == 0);
  for (const std::string row : {"selective  fused", "selective  reference", "ssd        chunked",
                                "ssd        token-loop", "conv       fft", "conv       direct"}) {
    CHECK(r.out.find(row + " ") != std::string::npos);
  }
  // "LABEL  64: RATIO (LOW-HIGH)  256: ...": every ratio at N in the line of LABEL finite and positive.
  const auto ratio = [&](const std::string& label, const std::string& n) {
    const auto line = r.out.find("\n" + label + " ");
    REQUIRE(line != std::string::npos);
    const auto at = r.out.find(" " + n + ": ", line + 1);
    REQUIRE(at < r.out.find('\n', line + 1));
    return std::strtod(r.out.c_str() + at + n.size() + 3, nullptr);
  };
  for (const std::string label : {"selective reference / fused", "ssd token-loop / chunked", "conv direct / fft"}) {
    for (const std::string n : {"64", "256"}) {
      INFO(label << " at " << n);
      const double x = ratio(label, n);
      CHECK(std::isfinite(x));
      CHECK(x > 0);
    }
  }
  CHECK(r.out.find("time x per 4x tokens") != std::string::npos);
  for (const std::string label : {"selective fused", "ssd chunked", "conv fft"}) {
    INFO(label);
    const double x = ratio(label, "256");  // the 64 -> 256 scaling of each fast form
    CHECK(std::isfinite(x));
    CHECK(x > 0);
  }
}

}  // namespace BLOCKLAB_TEST_FILE
