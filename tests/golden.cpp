#include "golden.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

namespace blocklab::testing {

std::string golden_mismatch(const std::string& name, const std::string& actual) {
  const std::string path = std::string(BLOCKLAB_TEST_DIR) + "/golden/" + name + ".txt";
  if (const char* update = std::getenv("BLOCKLAB_UPDATE_GOLDEN"); update && std::string(update) == "1") {
    std::ofstream(path, std::ios::binary) << actual;
    return "";
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return "missing golden file " + path + " (run with BLOCKLAB_UPDATE_GOLDEN=1 to create it)\nactual:\n" + actual;
  std::stringstream ss;
  ss << in.rdbuf();
  if (ss.str() == actual) return "";
  return "golden " + name + " differs\n--- expected\n" + ss.str() + "--- actual\n" + actual;
}

}  // namespace blocklab::testing
