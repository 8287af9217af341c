// libFuzzer target for the config entry points: override strings and YAML documents.
// The first input byte picks the entry point. Anything but a ConfigError is a finding.
//   bash scripts/fuzz.sh 60     # build with clang + ASan/UBSan and fuzz for 60 s
#include <cstddef>
#include <cstdint>
#include <string>

#include "registry/config_error.h"
#include "registry/interpolate.h"
#include "registry/override.h"
#include "registry/schema.h"
#include "registry/yaml_io.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string input(reinterpret_cast<const char*>(data) + 1, size - 1);
  try {
    if (data[0] % 3 == 0) {
      blocklab::Override o = blocklab::parse_override(input);
      if (o.is_sweep()) (void)o.sweep->values(o.source());
    } else if (data[0] % 3 == 1) {  // an override value's interpolations, resolved
      blocklab::ConfigNode root = blocklab::ConfigNode::map();
      root.set("x", blocklab::parse_override_value(input));
      blocklab::resolve_interpolations(root);
    } else {
      blocklab::ConfigNode c = blocklab::parse_yaml(input, "fuzz.yaml");
      blocklab::resolve_interpolations(c);
      (void)blocklab::dump_yaml(c);
      (void)blocklab::dump_json(c);
    }
  } catch (const blocklab::ConfigError&) {
  }
  return 0;
}
