// The experiments we ship (experiments/conf/*.yaml) compose and validate, and so does every
// sweep their comments tell a researcher to run: a typo in a key, a mixer name or a value
// fails here, not an hour into a sweep.
#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "experiments/experiment.h"
#include "experiments/sweep.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;
namespace fs = std::filesystem;

namespace {

const std::string kConf = std::string(BLOCKLAB_TEST_DIR) + "/../experiments/conf";

struct Command {
  std::string verb, experiment;
  std::vector<std::string> overrides;  // as typed, with sweep syntax
};

// `#   blocklab run|sweep <experiment> [args]` lines of a config's comments, without the
// command's options (--jobs 2).
std::vector<Command> commented_commands(const fs::path& file) {
  static const std::regex line_pattern(R"(^#\s+blocklab (run|sweep) (\S+)(.*)$)");
  std::vector<Command> commands;
  std::ifstream in(file);
  for (std::string line; std::getline(in, line);) {
    // A command continued with a backslash goes on in the next comment line.
    while (!line.empty() && line.back() == '\\') {
      std::string next;
      if (!std::getline(in, next)) break;
      line.pop_back();
      line += next.substr(std::min(next.find_first_not_of("# "), next.size()));
    }
    line = line.substr(0, line.find(" # "));  // a trailing remark
    std::smatch m;
    if (!std::regex_match(line, m, line_pattern)) continue;
    Command c{m[1], m[2], {}};
    std::istringstream args(m[3].str());
    for (std::string arg; args >> arg;) {
      if (arg.rfind("--", 0) == 0) {
        if (arg.find('=') == std::string::npos) args >> arg;  // the option's value
        continue;
      }
      c.overrides.push_back(arg);
    }
    commands.push_back(c);
  }
  return commands;
}

}  // namespace

TEST_CASE("every shipped experiment, and every run and sweep its comments list, composes and validates",
          "[compose]") {
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(kConf))
    if (entry.path().extension() == ".yaml") files.push_back(entry.path());
  REQUIRE(files.size() >= 10);
  std::size_t checked = 0;
  for (const auto& file : files) {
    INFO(file.filename().string());
    CHECK_NOTHROW(load_experiment(kConf, file.stem().string(), {}));
    for (const Command& c : commented_commands(file)) {
      if (!fs::exists(fs::path(kConf) / (c.experiment + ".yaml"))) continue;  // e.g. a placeholder name
      std::string shown = "blocklab " + c.verb + " " + c.experiment;
      for (const auto& o : c.overrides) shown += " " + o;
      INFO(shown);
      // A sweep composes and validates every point of its grid, as `blocklab sweep` does.
      if (c.verb == "sweep")
        CHECK_NOTHROW(checked += plan_sweep(kConf, c.experiment, c.overrides).jobs.size());
      else
        CHECK_NOTHROW(checked += load_experiment(kConf, c.experiment, c.overrides).config.is_map() ? 1 : 0);
    }
  }
  CHECK(checked >= 200);  // 246 points: the sweeps of the block waves list dozens of mixers x 3 seeds
}

}  // namespace BLOCKLAB_TEST_FILE
