// blocklab block <key>: one registered block, built from its options, run on a .npy input.
//
// The door for differential tests against reference implementations in Python (timm and other
// PyPI packages): the block's parameters and buffers go to a file that `torch.load` reads as a
// dict of tensors under the module's own names (--state-dict), weights made in Python come in
// the same way (--load-state-dict, a dict saved with torch.save), and the output is a .npy
// (--output). The block runs on the CPU in eval mode without gradients, so a run is
// deterministic. Kinds: token mixers (x [B, N, C] -> [B, N, C], with a grid, prefix tokens and
// causality from the command line), blocks that need no token mixer config (the convolutional
// ones: resnet, block/inception-resnet; tokens like a mixer's), channel mixers (x [..., C] ->
// [..., C]) and channel attention (feature maps x [B, C, H, W] -> [B, C, H, W]).
// It reads and writes .npy, so it registers with the analysis/ commands.
#include <fstream>
#include <functional>
#include <iostream>
#include <iterator>
#include <limits>
#include <map>
#include <tuple>

#include <caffe2/serialize/inline_container.h>
#include <torch/csrc/jit/serialization/pickler.h>

#include "analysis/block_options.h"
#include "analysis/cairo_util.h"
#include "analysis/npy.h"
#include "blocks/channel_attention/channel_attention.h"
#include "blocks/common/options.h"
#include "blocks/interfaces.h"
#include "experiments/run_files.h"
#include "registry/cli_options.h"
#include "registry/command.h"
#include "registry/config_error.h"
#include "registry/registry.h"
#include "registry/suggest.h"
#include "registry/yaml_io.h"

namespace blocklab {
namespace {

const std::string kCommand = "block";

struct BlockOptions {
  std::string key;
  ConfigNode params;     // {type: key, ...}: the block's options
  std::int64_t dim = 0;  // 0: the input's last dimension
  std::int64_t grid_height = 0, grid_width = 0, prefix = 0;
  bool causal = false;
  std::int64_t seed = 0;
  bool float64 = false;
  std::string input, output, save_state, load_state;
};

[[noreturn]] void usage(const std::string& message) {
  throw UsageError("blocklab block: " + message + "\n  see: blocklab block --help");
}

std::string shape_text(at::IntArrayRef sizes) {
  std::string s = "[";
  for (std::size_t i = 0; i < sizes.size(); ++i) s += (i ? ", " : "") + std::to_string(sizes[i]);
  return s + "]";
}

// ---- Options of the block: a mapping (--options) and key=value overrides (--set) ----------

ConfigNode block_params(const std::string& key, const std::string& mapping, const std::vector<std::string>& sets) {
  ConfigNode params = ConfigNode::map();
  if (!mapping.empty()) {
    params = parse_yaml(mapping, "--options");
    if (!params.is_map()) usage("--options takes a mapping of the block's options, e.g. '{heads: 4}'");
  }
  for (const auto& text : sets)
    apply_option_set(params, text, "block", "the block is the first argument, not an option");
  if (params.has("type") && component_key(params) != key)
    usage("--options: the block is the first argument ('" + key + "'), not a 'type' option");
  params.set("type", ConfigNode::string(key));
  return params;
}

// ---- The block ---------------------------------------------------------------------------

// A built block: its module (for the state dict) and its forward on one input.
struct BuiltBlock {
  std::shared_ptr<torch::nn::Module> module;
  std::function<torch::Tensor(const torch::Tensor&)> forward;
};

bool is_mixer(const std::string& key) { return mixer_registry().contains(key); }
bool is_channel_attention(const std::string& key) { return channel_attention_registry().contains(key); }
bool is_block(const std::string& key) { return !is_mixer(key) && block_registry().contains(key); }
// Token mixers and blocks: both take tokens [B, N, C] with a grid, prefix tokens and causality.
bool takes_tokens(const std::string& key) { return is_mixer(key) || is_block(key); }

// The registry that holds `key` (a token mixer, a channel mixer or a channel attention).
const RegistryBase& registry_of(const std::string& key) {
  if (is_mixer(key)) return mixer_registry();
  if (is_channel_attention(key)) return channel_attention_registry();
  if (is_block(key)) return block_registry();
  return channel_registry();
}

void check_known(const std::string& key) {
  if (is_mixer(key) || is_channel_attention(key) || is_block(key) || channel_registry().contains(key)) return;
  std::vector<std::string> all = mixer_registry().keys();
  for (const auto& k : channel_registry().keys()) all.push_back(k);
  for (const auto& k : block_registry().keys()) all.push_back(k);
  for (const auto& k : channel_attention_registry().keys()) all.push_back(k);
  std::vector<std::string> hints;
  if (const std::string close = did_you_mean(key, all); !close.empty()) hints.push_back(close);
  hints.push_back(
      "blocks: token mixers (blocklab list mixer), channel mixers (blocklab list channel), channel attention "
      "(blocklab list channel-attention) and blocks without a token mixer (blocklab list block)");
  throw ConfigError("blocklab block: unknown block '" + printable(key) + "'", Source{}, "", hints);
}

// Refuses an input the block cannot take, before building it.
void check_input(const BlockOptions& o, const torch::Tensor& x) {
  const std::string given = "--input " + o.input + " has shape " + shape_text(x.sizes()) + "; ";
  if (x.numel() == 0) usage(given + "it is empty");
  if (is_channel_attention(o.key)) {
    if (x.dim() != 4 || x.size(1) != o.dim)
      usage(given + o.key + " (a channel attention) takes feature maps [B, " + std::to_string(o.dim) + ", H, W]");
    return;
  }
  if (!takes_tokens(o.key)) {
    if (x.dim() < 1 || x.size(-1) != o.dim)
      usage(given + o.key + " (a channel mixer) takes [..., " + std::to_string(o.dim) + "]");
    return;
  }
  if (x.dim() != 3 || x.size(2) != o.dim || x.size(0) < 1)
    usage(given + o.key + (is_block(o.key) ? " (a block)" : " (a token mixer)") + " takes [B, N, " +
          std::to_string(o.dim) + "]");
  const std::int64_t grid = x.size(1) - o.prefix;
  if (grid < 1) usage(given + "--prefix " + std::to_string(o.prefix) + " leaves no grid tokens");
  if (o.grid_height && o.grid_height * o.grid_width != grid)
    usage(given + "--grid " + std::to_string(o.grid_height) + "x" + std::to_string(o.grid_width) + " holds " +
          std::to_string(o.grid_height * o.grid_width) + " tokens, not the " + std::to_string(grid) +
          " after the prefix tokens");
}

BuiltBlock build_block(const BlockOptions& o, std::int64_t tokens) {
  torch::manual_seed(static_cast<std::uint64_t>(o.seed));
  if (is_channel_attention(o.key)) {
    ChannelAttention a = channel_attention_registry().create(o.params, ChannelAttentionArgs{o.dim});
    return {a, [a](const torch::Tensor& x) { return a->forward(x); }};
  }
  if (is_block(o.key)) {
    BlockArgs args;
    args.dim = o.dim, args.max_tokens = tokens, args.grid_height = o.grid_height, args.grid_width = o.grid_width;
    Block b = block_registry().create(o.params, args);
    MixerContext ctx;
    ctx.grid_height = o.grid_height, ctx.grid_width = o.grid_width, ctx.prefix_tokens = o.prefix, ctx.causal = o.causal;
    return {b, [b, ctx](const torch::Tensor& x) { return b->forward(x, ctx); }};
  }
  if (!is_mixer(o.key)) {
    ChannelMixer m = channel_registry().create(o.params, o.dim);
    return {m, [m](const torch::Tensor& x) { return m->forward(x); }};
  }
  MixerArgs args{o.dim, tokens};
  args.grid_height = o.grid_height, args.grid_width = o.grid_width;  // mixers sized by the grid (mixer/spectral)
  TokenMixer m = mixer_registry().create(o.params, args);
  if (o.causal && !m->capabilities().causal) usage(o.key + " cannot mix causally (--causal)");
  MixerContext ctx;
  ctx.grid_height = o.grid_height;
  ctx.grid_width = o.grid_width;
  ctx.prefix_tokens = o.prefix;
  ctx.causal = o.causal;
  return {m, [m, ctx](const torch::Tensor& x) { return m->forward(x, ctx); }};
}

// ---- State dicts ---------------------------------------------------------------------------

// The module's parameters and buffers under their own names (qkv.weight, proj.bias, ...).
std::map<std::string, torch::Tensor> own_state(const torch::nn::Module& m) {
  std::map<std::string, torch::Tensor> state;
  for (const auto& p : m.named_parameters(true)) state[p.key()] = p.value();
  for (const auto& b : m.named_buffers(true)) state[b.key()] = b.value();
  return state;
}

// The bytes of torch.save(value): a zip with the pickle (data.pkl) and one record per tensor
// storage (data/0, ...). As torch::pickle_save, but without its type tags on dicts and lists
// (torch.jit._pickle.restore_type_tag), which torch.load's default weights_only mode refuses.
std::string torch_save_bytes(const c10::IValue& value) {
  std::string pickled, out;
  torch::jit::Pickler pickler([&](const char* bytes, std::size_t n) { pickled.append(bytes, n); }, nullptr, nullptr,
                              nullptr, nullptr, /*tag_aggregates=*/false);
  pickler.protocol();
  pickler.pushIValue(value);
  pickler.stop();
  caffe2::serialize::PyTorchStreamWriter writer([&](const void* bytes, std::size_t n) {
    out.append(static_cast<const char*>(bytes), n);
    return n;
  });
  writer.writeRecord("data.pkl", pickled.data(), pickled.size());
  const std::vector<at::Tensor>& tensors = pickler.tensorData();
  for (std::size_t i = 0; i < tensors.size(); ++i)
    writer.writeRecord("data/" + std::to_string(i), tensors[i].storage().data(), tensors[i].storage().nbytes());
  writer.writeEndOfFile();
  return out;
}

void save_state_dict(const torch::nn::Module& m, const std::string& path) {
  c10::Dict<std::string, at::Tensor> dict;
  for (const auto& [name, t] : own_state(m)) dict.insert(name, t.detach().to(torch::kCPU).contiguous().clone());
  cairo_util::write_atomically(path, torch_save_bytes(c10::IValue(dict)));
}

std::map<std::string, torch::Tensor> read_state_dict(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path + ": cannot open");
  const std::vector<char> bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  c10::IValue value;
  try {
    value = torch::pickle_load(bytes);
  } catch (const std::exception&) {
    throw std::runtime_error("cannot read " + path + ": not a file written by torch.save");
  }
  if (!value.isGenericDict()) throw std::runtime_error("cannot read " + path + ": it holds no dict of tensors");
  std::map<std::string, torch::Tensor> state;
  for (const auto& entry : value.toGenericDict()) {
    if (!entry.key().isString() || !entry.value().isTensor())
      throw std::runtime_error("cannot read " + path + ": it holds no dict of tensors (str -> Tensor)");
    state[entry.key().toStringRef()] = entry.value().toTensor();
  }
  return state;
}

std::vector<std::string> names_of(const std::map<std::string, torch::Tensor>& state) {
  std::vector<std::string> names;
  for (const auto& kv : state) names.push_back(kv.first);
  return names;
}

// Key problems of `loaded` against `own`: missing and unexpected names (with the nearest own
// name), then shape mismatches.
std::vector<std::string> state_problems(const std::map<std::string, torch::Tensor>& own,
                                        const std::map<std::string, torch::Tensor>& loaded) {
  std::vector<std::string> problems;
  for (const auto& [name, t] : own)
    if (!loaded.count(name)) problems.push_back("missing '" + name + "' " + shape_text(t.sizes()));
  for (const auto& [name, t] : loaded) {
    if (own.count(name)) continue;
    const std::string close = did_you_mean(name, names_of(own));
    problems.push_back("unexpected '" + printable(name) + "'" + (close.empty() ? "" : " (" + close + ")"));
  }
  for (const auto& [name, t] : own)
    if (loaded.count(name) && loaded.at(name).sizes() != t.sizes())
      problems.push_back("'" + name + "' has shape " + shape_text(loaded.at(name).sizes()) + " in the file, " +
                         shape_text(t.sizes()) + " in the block");
  return problems;
}

void load_state_dict(torch::nn::Module& m, const std::string& key, const std::string& path) {
  const auto loaded = read_state_dict(path);
  const auto own = own_state(m);
  if (const auto problems = state_problems(own, loaded); !problems.empty())
    throw ConfigError("blocklab block: the state dict " + path + " does not fit " + key, Source{}, "", problems);
  torch::NoGradGuard no_grad;
  for (const auto& [name, t] : own) t.copy_(loaded.at(name));
}

// ---- Arrays --------------------------------------------------------------------------------

torch::Tensor read_input(const std::string& path, bool float64) {
  std::vector<std::int64_t> shape;
  bool was_float64 = false;
  std::vector<double> values = read_npy_f64(path, shape, was_float64);
  return torch::from_blob(values.data(), shape, torch::kFloat64)
      .clone()
      .to(float64 ? torch::kFloat64 : torch::kFloat32);
}

void write_output(const std::string& path, const torch::Tensor& y) {
  const torch::Tensor c = y.detach().contiguous();
  if (c.scalar_type() == torch::kFloat64)
    write_npy(path, c.sizes().vec(), c.data_ptr<double>());
  else
    write_npy(path, c.sizes().vec(), c.to(torch::kFloat32).contiguous().data_ptr<float>());
}

int run_block(BlockOptions o) {
  const torch::Tensor x = read_input(o.input, o.float64);
  if (o.dim == 0) o.dim = !x.dim() ? 0 : is_channel_attention(o.key) && x.dim() > 1 ? x.size(1) : x.size(-1);
  check_input(o, x);
  BuiltBlock block = build_block(o, takes_tokens(o.key) ? x.size(1) : 0);
  block.module->to(o.float64 ? torch::kFloat64 : torch::kFloat32);
  if (!o.load_state.empty()) load_state_dict(*block.module, o.key, o.load_state);
  block.module->eval();
  torch::Tensor y;
  {
    torch::NoGradGuard no_grad;
    y = block.forward(x);
  }
  if (!o.save_state.empty()) save_state_dict(*block.module, o.save_state);
  if (!o.output.empty()) write_output(o.output, y);
  std::cerr << o.key << ": " << shape_text(x.sizes()) << " -> " << shape_text(y.sizes()) << "\n";
  return 0;
}

// ---- Command line --------------------------------------------------------------------------

std::pair<std::int64_t, std::int64_t> grid_option(const CommandLine& cl) {
  const std::string text = string_option(cl, "grid");
  if (text.empty()) return {0, 0};
  const std::size_t x = text.find('x');
  if (x == std::string::npos) usage("--grid takes HxW, e.g. 7x7, not '" + printable(text) + "'");
  return {parse_integer(kCommand, "--grid", text.substr(0, x), 1, 4096),
          parse_integer(kCommand, "--grid", text.substr(x + 1), 1, 4096)};
}

std::string existing_file(const CommandLine& cl, const char* name) {
  const std::string path = string_option(cl, name);
  if (!path.empty() && !file_exists(path)) usage(std::string("--") + name + ": no file '" + printable(path) + "'");
  return path;
}

BlockOptions block_options(const CommandLine& cl) {
  if (cl.positional.size() != 1) usage("give one block key, e.g. attention/gpsa");
  BlockOptions o;
  o.key = cl.positional[0];
  check_known(o.key);
  const auto sets = cl.vars.count("set") ? cl.vars["set"].as<std::vector<std::string>>() : std::vector<std::string>{};
  o.params = block_params(o.key, string_option(cl, "options"), sets);
  // Checked now, so that a wrong option is reported before any file is read.
  check_params(o.params, registry_of(o.key).info(o.key).schema);
  o.dim = integer_option(cl, kCommand, "dim", 1, 1 << 20, 0);
  std::tie(o.grid_height, o.grid_width) = grid_option(cl);
  o.prefix = integer_option(cl, kCommand, "prefix", 0, 1 << 20, 0);
  o.causal = cl.vars.count("causal") > 0;
  o.seed = integer_option(cl, kCommand, "seed", 0, std::numeric_limits<std::int64_t>::max(), 0);
  o.float64 = choice_option(cl, kCommand, "dtype", {"float32", "float64"}, "float32") == "float64";
  o.input = existing_file(cl, "input");
  if (o.input.empty()) usage("--input is required: the .npy array the block runs on");
  o.load_state = existing_file(cl, "load-state-dict");
  o.output = string_option(cl, "output");
  o.save_state = string_option(cl, "state-dict");
  if (!takes_tokens(o.key) && (o.grid_height || o.prefix || o.causal))
    usage(o.key + (is_channel_attention(o.key) ? " is a channel attention" : " is a channel mixer") +
          ": --grid, --prefix and --causal are for token mixers and blocks");
  return o;
}

int block_command(const std::vector<std::string>& args) {
  po::options_description opts("Options");
  opts.add_options()("help,h", "show this help")("set", po::value<std::vector<std::string>>()->composing(),
                                                 "an option of the block, KEY=VALUE (repeatable)")(
      "options", po::value<std::string>(), "the block's options as a YAML mapping, e.g. '{heads: 4}'")(
      "input", po::value<std::string>(), "the input array (.npy, float32 or float64; required)")(
      "output", po::value<std::string>(), "where the output array goes (.npy, in --dtype)")(
      "state-dict", po::value<std::string>(), "where the parameters and buffers go (torch.load reads a dict)")(
      "load-state-dict", po::value<std::string>(), "parameters to run with (a dict of tensors saved by torch.save)")(
      "dim", po::value<std::string>(),
      "embedding width C (default: the input's last dimension; channel attention: its dimension 1)")(
      "grid", po::value<std::string>(), "token mixers: the patch grid HxW of the grid tokens (default: none)")(
      "prefix", po::value<std::string>(), "token mixers: class/register tokens before the grid (default 0)")(
      "causal", "token mixers: token i sees tokens j <= i only")("seed", po::value<std::string>(),
                                                                 "seed of the initial weights (default 0)")(
      "dtype", po::value<std::string>(), "float32 (default) or float64: the block's and the output's dtype");
  const auto cl = parse_command_line(kCommand, args, opts);
  if (cl.vars.count("help")) {
    std::cout << command_help(
        kCommand, "<key> --input x.npy [options]",
        "Builds one registered block (a token mixer, a channel mixer, a channel attention, or a block without a token "
        "mixer config) from its options, runs it on a .npy "
        "array in eval mode without gradients and writes the output (.npy) and its parameters (a dict of tensors "
        "under the module's own names, for torch.load): differential tests against Python references.",
        opts,
        "Examples:\n"
        "  blocklab block attention/gpsa --set heads=4 --grid 7x7 --input x.npy --output y.npy --state-dict w.pt\n"
        "  blocklab block attention/gpsa --options '{heads: 4}' --grid 7x7 --input x.npy --load-state-dict w.pt "
        "--output y.npy --dtype float64\n"
        "  blocklab block mlp --input x.npy --output y.npy\n"
        "In Python: torch.load('w.pt') is a dict of tensors; np.load('y.npy') the output. Token mixers take "
        "x [B, N, C] (N = prefix + H W with --grid), channel mixers x [..., C], channel attention feature maps "
        "x [B, C, H, W].\n");
    return 0;
  }
  return run_block(block_options(cl));
}

const bool BLOCKLAB_UNIQUE(registered_) = CommandRegistry::instance().add(
    {"block", "one registered block on a .npy input, its weights for torch.load (differential tests)", block_command,
     64});

}  // namespace
}  // namespace blocklab
