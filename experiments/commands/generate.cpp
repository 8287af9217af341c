// blocklab generate <run-dir> --prompt "In the beginning": text sampled from a trained causal
// language model (task lm on a character dataset such as text/kjv).
//
// Rebuilds the run's model from config.yaml (its dataset gives the vocabulary and context),
// loads the best (or last) checkpoint and continues the prompt character by character
// (experiments/generation.h): the recurrent step when every layer's token mixer has one, the
// full forward over the last `context` characters otherwise. Prints the prompt and the
// continuation to stdout; which path ran goes to stderr. Same run, prompt, options and seed:
// the same text.
#include <cmath>
#include <iostream>
#include <map>

#include "datasets/dataset.h"
#include "experiments/generation.h"
#include "experiments/model_builder.h"
#include "experiments/run_files.h"
#include "experiments/task.h"
#include "experiments/trained_run.h"
#include "registry/cli_options.h"
#include "registry/command.h"
#include "registry/config_error.h"
#include "registry/yaml_io.h"

namespace blocklab {
namespace {

struct GenerateOptions {
  std::string run_dir, prompt = "\n", checkpoint = "best";
  SamplingOptions sampling;
};

// A character's id in the run's vocabulary (token names of one character each).
std::map<char, std::int64_t> character_ids(const DatasetInfo& info, const std::string& run_dir) {
  std::map<char, std::int64_t> ids;
  for (std::size_t i = 0; i < info.token_names.size(); ++i)
    if (info.token_names[i].size() == 1) ids[info.token_names[i][0]] = static_cast<std::int64_t>(i);
  if (ids.empty() || ids.size() != info.token_names.size())
    throw ConfigError("the dataset of " + run_dir + " has no character vocabulary: nothing to print", Source{}, "",
                      {"blocklab generate reads language models on characters (e.g. dataset text/kjv)"});
  return ids;
}

std::string shown(char c) { return c == '\n' ? "'\\n'" : c == '\t' ? "'\\t'" : "'" + std::string(1, c) + "'"; }

std::vector<std::int64_t> encode_prompt(const std::string& prompt, const std::map<char, std::int64_t>& ids) {
  std::vector<std::int64_t> out;
  std::string unknown;
  for (char c : prompt) {
    const auto it = ids.find(c);
    if (it != ids.end())
      out.push_back(it->second);
    else if (unknown.find(c) == std::string::npos)
      unknown += c;
  }
  if (!unknown.empty()) {
    std::string listed, vocabulary;
    for (char c : unknown) listed += (listed.empty() ? "" : ", ") + shown(c);
    for (const auto& [c, id] : ids) vocabulary += c == '\n' ? std::string("\\n") : std::string(1, c);
    throw UsageError("blocklab generate: the prompt holds characters outside the model's vocabulary: " + listed +
                     "\n  the vocabulary: " + vocabulary);
  }
  if (out.empty()) throw UsageError("blocklab generate: --prompt is empty; give at least one character");
  return out;
}

int generate(const GenerateOptions& o) {
  const TrainedRun run = load_trained_run(o.run_dir, o.checkpoint, "blocklab generate cannot step it");
  if (run.task != "lm")
    throw ConfigError("blocklab generate samples from language models (task lm); this run's task is '" + run.task +
                      "'");
  const DatasetInfo& info = run.info;
  const std::vector<std::int64_t> prompt = encode_prompt(o.prompt, character_ids(info, o.run_dir));
  const Model& model = run.model;
  const Generated g = generate_tokens(*model, prompt, info.length, o.sampling);
  std::cerr << "generate: " << o.sampling.tokens << " characters by "
            << (g.stepped ? "the recurrent step (every layer's token mixer is recurrent)"
                          : "the full forward over the last " + std::to_string(info.length) + " characters")
            << ", seed " << o.sampling.seed << "\n";
  std::string text = o.prompt;
  for (std::int64_t id : g.ids) text += info.token_names.at(static_cast<std::size_t>(id));
  std::cout << text << "\n";
  return 0;
}

double temperature_option(const CommandLine& cl) {
  const std::string text = string_option(cl, "temperature");
  if (text.empty()) return 0.8;
  double t = -1;
  if (!parse_finite_number(text, t) || t < 0 || t > 100)
    throw UsageError("blocklab generate: --temperature takes a number from 0 (greedy) to 100, not '" + printable(text) +
                     "'");
  return t;
}

int generate_command(const std::vector<std::string>& args) {
  po::options_description opts("Options");
  opts.add_options()("help,h", "show this help")("prompt", po::value<std::string>(),
                                                 "the text to continue (default: a newline, i.e. a new verse)")(
      "tokens", po::value<std::string>(), "characters to generate (default 300)")(
      "temperature", po::value<std::string>(), "softmax temperature; 0 = greedy (default 0.8)")(
      "top-k", po::value<std::string>(), "sample among the k most likely characters; 0 = all (default 0)")(
      "seed", po::value<std::string>(), "seed of the sampler (default 0)")("checkpoint", po::value<std::string>(),
                                                                           "best (default) or last");
  const auto cl = parse_command_line("generate", args, opts);
  if (cl.vars.count("help")) {
    std::cout << command_help(
        "generate", "<run-dir>",
        "Samples text from a trained language model (task lm): the prompt, then the continuation, on stdout.", opts,
        "Examples:\n  blocklab generate results/runs/lm_kjv/<id> --prompt \"In the beginning\" --tokens 300\n"
        "  blocklab generate <run> --prompt \"And Jesus said\" --temperature 0 --tokens 200\n");
    return 0;
  }
  if (cl.positional.size() != 1)
    throw UsageError("blocklab generate: give one run directory\n  see: blocklab generate --help");
  GenerateOptions o;
  o.run_dir = cl.positional[0];
  while (o.run_dir.size() > 1 && o.run_dir.back() == '/') o.run_dir.pop_back();
  if (cl.vars.count("prompt")) o.prompt = cl.vars["prompt"].as<std::string>();
  o.sampling.tokens = integer_option(cl, "generate", "tokens", 0, 1000000, 300);
  o.sampling.temperature = temperature_option(cl);
  o.sampling.top_k = integer_option(cl, "generate", "top-k", 0, 1000000, 0);
  o.sampling.seed = static_cast<std::uint64_t>(integer_option(cl, "generate", "seed", 0, INT64_MAX, 0));
  o.checkpoint = choice_option(cl, "generate", "checkpoint", {"best", "last"}, "best");
  return generate(o);
}

const bool BLOCKLAB_UNIQUE(registered_) = CommandRegistry::instance().add(
    {"generate", "sample text from a trained language model (task lm)", generate_command, 48});

}  // namespace
}  // namespace blocklab
