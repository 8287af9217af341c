// End-to-end tests of the blocklab executable: exit statuses and the messages users see.
#include <catch2/catch.hpp>

#include <array>
#include <cstdio>
#include <sys/wait.h>

#include "golden.h"
#include "process_support.h"

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
