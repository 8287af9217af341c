#include "blocks/common/options.h"

#include "registry/registry.h"

namespace blocklab {

void check_params(const ConfigNode& params, const Schema& schema) {
  ConfigNode plain = params.is_map() ? params : ConfigNode::map(params.source());
  plain.erase("type");
  DiagnosticSink sink;
  validate(plain, schema, "", RegistryIndex::instance().lookup(), sink);
  sink.throw_if_any();
}

void config_fail(const ConfigNode& params, const std::string& name, const std::string& message,
                 std::vector<std::string> hints) {
  const ConfigNode* at = params.is_map() ? params.find(name) : nullptr;
  throw ConfigError(message, at ? at->source() : params.source(), at ? name : "", std::move(hints));
}

ParamSpec& rate(ParamSpec& spec) {
  spec.min = 0.0;
  spec.max = 1.0;
  return spec;
}

}  // namespace blocklab
