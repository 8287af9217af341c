#include "blocks/stacks/layer_plan.h"

#include <sstream>

#include "registry/registry.h"

namespace blocklab {

namespace {

const char* const kParts[] = {"block", "mixer", "channel"};

ConfigNode* part(LayerSpec& s, const std::string& name) {
  return name == "block" ? &s.block : name == "mixer" ? &s.mixer : &s.channel;
}
std::string* part_path(LayerSpec& s, const std::string& name) {
  return name == "block" ? &s.block_path : name == "mixer" ? &s.mixer_path : &s.channel_path;
}

// `current` changed by `patch`: a component with a type replaces it; a mapping without one
// changes its options (nested mappings merge key by key).
ConfigNode apply_patch(const ConfigNode& current, const ConfigNode& patch) {
  if (!patch.is_map() || patch.has("type")) return patch;
  ConfigNode merged = current.is_map() ? current : ConfigNode::map(current.source());
  if (!current.is_map() && !current.is_null()) merged.set("type", current);
  for (const auto& [key, value] : patch.entries()) {
    const ConfigNode* old = merged.find(key);
    merged.set(key, old && old->is_map() && value.is_map() ? apply_patch(*old, value) : value);
  }
  return merged;
}

[[noreturn]] void fail_at(const ConfigNode& node, const std::string& path, const std::string& message,
                          std::vector<std::string> hints = {}) {
  throw ConfigError(Diagnostic{node.source(), path, message, std::move(hints)});
}

// "3", "0-1", "0,2,4-5" or an int: the selected layers, each checked against depth.
std::vector<bool> parse_at(const ConfigNode& at, std::int64_t depth, const std::string& path) {
  std::vector<bool> chosen(static_cast<std::size_t>(depth), false);
  const std::string hint =
      "write a layer (3), a range (0-1) or a list (\"0,2,4-5\"); layers are 0.." + std::to_string(depth - 1);
  if (!at.is_scalar()) fail_at(at, path, "expected layers, got a " + std::string(at.kind_name()), {hint});
  std::stringstream parts(at.text());
  for (std::string item; std::getline(parts, item, ',');) {
    const auto dash = item.find('-');
    std::int64_t from = 0, to = 0;
    try {
      std::size_t used = 0;
      from = std::stoll(item.substr(0, dash), &used);
      if (used != item.substr(0, dash).size()) throw std::invalid_argument(item);
      to = dash == std::string::npos ? from : std::stoll(item.substr(dash + 1), &used);
      if (dash != std::string::npos && used != item.size() - dash - 1) throw std::invalid_argument(item);
    } catch (const std::exception&) {
      fail_at(at, path, "'" + item + "' is not a layer or a range of layers", {hint});
    }
    if (from < 0 || to < from)
      fail_at(at, path, "'" + item + "' is not a range of layers (from <= to, both >= 0)", {hint});
    if (to >= depth)
      fail_at(at, path,
              "layer " + std::to_string(to) + " is beyond the stack's depth " + std::to_string(depth) + " (layers 0.." +
                  std::to_string(depth - 1) + ")",
              {"use layers below " + std::to_string(depth) + ", or a larger depth"});
    for (std::int64_t i = from; i <= to; ++i) chosen[static_cast<std::size_t>(i)] = true;
  }
  return chosen;
}

// The layers an override entry selects.
std::vector<bool> selected_layers(const ConfigNode& entry, std::int64_t depth, const std::string& path,
                                  const std::vector<std::int64_t>& stage_of) {
  const ConfigNode* at = entry.find("at");
  const ConfigNode* every = entry.find("every");
  const ConfigNode* stage = entry.find("stage");
  if (!at && !every && !stage)
    fail_at(entry, path, "an override needs `at` (layers), `every` (every k-th layer) or `stage`",
            {"e.g. {at: 2-3, mixer: {heads: 2}} or {every: 2, offset: 1, mixer: ...}"});
  std::vector<bool> chosen =
      at ? parse_at(*at, depth, path + ".at") : std::vector<bool>(static_cast<std::size_t>(depth), true);
  if (every) {
    const std::int64_t k = every->as_int();
    const ConfigNode* off = entry.find("offset");
    const std::int64_t offset = off ? off->as_int() : 0;
    if (offset >= depth)
      fail_at(*off, path + ".offset",
              "offset " + std::to_string(offset) + " is beyond the stack's depth " + std::to_string(depth));
    for (std::int64_t i = 0; i < depth; ++i)
      if (i < offset || (i - offset) % k != 0) chosen[static_cast<std::size_t>(i)] = false;
  }
  if (stage) {
    const std::int64_t stages = stage_of.empty() ? 1 : stage_of.back() + 1;
    const std::int64_t s = stage->as_int();
    if (s >= stages)
      fail_at(*stage, path + ".stage",
              "stage " + std::to_string(s) + " does not exist: the stack has " + std::to_string(stages) +
                  (stages == 1 ? " stage (0)" : " stages (0.." + std::to_string(stages - 1) + ")"));
    for (std::int64_t i = 0; i < depth; ++i)
      if ((stage_of.empty() ? 0 : stage_of[static_cast<std::size_t>(i)]) != s)
        chosen[static_cast<std::size_t>(i)] = false;
  }
  bool any = false;
  for (bool c : chosen) any = any || c;
  if (!any) fail_at(entry, path, "this override selects no layer of the stack (depth " + std::to_string(depth) + ")");
  return chosen;
}

}  // namespace

const Schema& layer_override_schema() {
  static const Schema schema = [] {
    Schema s;
    s.add(ParamSpec{"at",
                    ParamType::Any,
                    ConfigNode(),
                    false,
                    true,
                    {},
                    {},
                    {},
                    {},
                    {},
                    "layers: 3, a range 0-1, or a list \"0,2,4-5\" (default: all)"});
    auto& every = s.add_int("every", 1, "every k-th layer (from offset; within `at` when given)");
    every.min = 1;
    s.add_int("offset", 0, "the first layer of `every`").min = 0;
    s.add_int("stage", 0, "the layers of this stage (staged stacks)").min = 0;
    for (const char* p : kParts)
      s.add(ParamSpec{
          p,
          ParamType::Any,
          ConfigNode(),
          false,
          true,
          {},
          {},
          {},
          {},
          {},
          std::string("the selected layers' ") + p + ": a component replaces it, options without type change it"});
    return s;
  }();
  return schema;
}

std::vector<LayerSpec> plan_layers(std::int64_t depth, const LayerDefaults& defaults, const ConfigNode& overrides,
                                   const std::string& overrides_path, const std::vector<std::int64_t>& stage_of) {
  LayerSpec base{defaults.block,           defaults.mixer,           defaults.channel,
                 defaults.path + ".block", defaults.path + ".mixer", defaults.path + ".channel"};
  std::vector<LayerSpec> layers(static_cast<std::size_t>(depth), base);
  if (overrides.is_null()) return layers;
  if (!overrides.is_map())
    fail_at(overrides, overrides_path,
            "expected named overrides {name: {at: ..., mixer: ...}}, got a " + std::string(overrides.kind_name()),
            {"e.g. layers: {late: {at: 2-3, mixer: {type: attention/sigmoid}}}"});
  for (const auto& [name, entry] : overrides.entries()) {
    const std::string path = overrides_path + "." + name;
    if (entry.is_null()) continue;  // an override switched off (~ or null)
    DiagnosticSink sink;
    validate(entry, layer_override_schema(), path, RegistryIndex::instance().lookup(), sink);
    sink.throw_if_any();
    const std::vector<bool> chosen = selected_layers(entry, depth, path, stage_of);
    for (const char* p : kParts) {
      const ConfigNode* patch = entry.find(p);
      if (!patch) continue;
      for (std::size_t i = 0; i < layers.size(); ++i) {
        if (!chosen[i]) continue;
        *part(layers[i], p) = apply_patch(*part(layers[i], p), *patch);
        *part_path(layers[i], p) = path + "." + p;
      }
    }
  }
  return layers;
}

std::string layer_mixer_key(const LayerSpec& spec) { return component_key(spec.mixer); }

Block build_layer(const LayerSpec& spec, std::int64_t i, const BlockArgs& args) {
  BlockArgs layer = args;
  layer.mixer = spec.mixer;
  layer.channel = spec.channel;
  try {
    return block_registry().create(spec.block, layer);
  } catch (const ConfigError& e) {
    // Name the override: "heads" of its mixer becomes "model.layers.late.mixer.heads", "layer 2: ...".
    const std::pair<const ConfigNode*, const std::string*> parts[] = {
        {&spec.mixer, &spec.mixer_path}, {&spec.channel, &spec.channel_path}, {&spec.block, &spec.block_path}};
    const auto owner = [&](const std::string& key) -> const std::string& {
      for (const auto& [node, path] : parts)
        if (node->is_map() && node->has(key)) return *path;
      return spec.mixer_path;
    };
    std::vector<Diagnostic> located;
    for (Diagnostic d : e.diagnostics()) {
      const std::string& at = owner(d.path.substr(0, d.path.find('.')));
      if (at.find(".layers.") == std::string::npos) {  // the default block: as the block reports it
        located.push_back(std::move(d));
        continue;
      }
      d.path = d.path.empty() ? at : at + "." + d.path;
      d.message = "layer " + std::to_string(i) + ": " + d.message;
      located.push_back(std::move(d));
    }
    throw ConfigError(std::move(located));
  }
}

double drop_path_rate(double drop_path, std::int64_t i, std::int64_t depth) {
  return depth > 1 ? drop_path * static_cast<double>(i) / static_cast<double>(depth - 1) : 0.0;
}

std::vector<Block> build_layers(const std::vector<LayerSpec>& plan, std::int64_t dim, std::int64_t tokens,
                                const MixerContext& layout, double drop_path, torch::nn::ModuleList& list) {
  const auto depth = static_cast<std::int64_t>(plan.size());
  std::vector<Block> blocks;
  for (std::int64_t i = 0; i < depth; ++i) {
    const BlockArgs args{
        dim, tokens, {}, {}, drop_path_rate(drop_path, i, depth), i, depth, layout.grid_height, layout.grid_width};
    blocks.push_back(build_layer(plan[static_cast<std::size_t>(i)], i, args));
    list->push_back(blocks.back());
  }
  return blocks;
}

}  // namespace blocklab
