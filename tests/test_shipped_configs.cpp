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

using namespace blocklab;
namespace fs = std::filesystem;

namespace {

const std::string kConf = std::string(BLOCKLAB_TEST_DIR) + "/../experiments/conf";

struct Command {
  std::string experiment;
  std::vector<std::string> fixed;                                // key=value
  std::vector<std::pair<std::string, std::string>> axes;        // key, "a,b,c"
};

// `#   blocklab run|sweep <experiment> [args]` lines of a config's comments. Sweep axes are
// key=a,b,c; seed=range(...) and options (--jobs 2) are left out.
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
    Command c{m[2], {}, {}};
    std::istringstream args(m[3].str());
    for (std::string arg; args >> arg;) {
      if (arg.rfind("--", 0) == 0) {
        if (arg.find('=') == std::string::npos) args >> arg;  // the option's value
        continue;
      }
      const auto eq = arg.find('=');
      if (eq == std::string::npos || arg.find("range(") != std::string::npos) continue;
      const std::string value = arg.substr(eq + 1);
      if (value.find(',') != std::string::npos && value.front() != '[')
        c.axes.emplace_back(arg.substr(0, eq), value);
      else
        c.fixed.push_back(arg);
    }
    commands.push_back(c);
  }
  return commands;
}

std::vector<std::string> split_commas(const std::string& text) {
  std::vector<std::string> parts;
  std::istringstream in(text);
  for (std::string part; std::getline(in, part, ',');) parts.push_back(part);
  return parts;
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
      // Each value of each axis, with the command's fixed overrides.
      std::vector<std::vector<std::string>> variants{c.fixed};
      for (const auto& [key, values] : c.axes)
        for (const std::string& value : split_commas(values)) {
          variants.push_back(c.fixed);
          variants.back().push_back(key + "=" + value);
        }
      for (const auto& overrides : variants) {
        std::string shown = c.experiment;
        for (const auto& o : overrides) shown += " " + o;
        INFO("blocklab ... " << shown);
        CHECK_NOTHROW(load_experiment(kConf, c.experiment, overrides));
        ++checked;
      }
    }
  }
  CHECK(checked >= 30);  // the sweeps of the block waves list dozens of mixers
}
