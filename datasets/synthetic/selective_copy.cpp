// synthetic/selective-copy: selective copying.
//
// Paper: "Mamba: Linear-Time Sequence Modeling with Selective State Spaces" (Gu & Dao 2023,
// arXiv:2312.00752), §4.1.1 and Appendix E.1: M = 16 data tokens of an alphabet of 16 are
// spread over random positions of a noise sequence; the model must output them in order
// after the sequence. Generator of state-spaces/s4 (src/dataloaders/datasets/copying.py,
// torch_copying_data with variable=True), with the alphabet given without its special ids:
//   - id 0 is noise, ids 1..A the data tokens (A = alphabet), id A+1 the marker; V = A+2;
//   - an input of length L: its first L-M positions hold noise except at M positions drawn
//     uniformly without replacement, which hold the M data tokens (uniform in 1..A), in order
//     of position; the last M positions hold the marker;
//   - the target at the i-th marker (position L-M+i) is the i-th data token: the M scored
//     positions. (The paper's "sequence length 4096" counts the noise and data positions,
//     L - M here.)
//
// Splits: train, val, test at seq_len, and test/L<n> for each test length, right-padded.
#include <algorithm>

#include "datasets/synthetic/token_task.h"

namespace blocklab {
namespace {

struct SelectiveCopyOptions : LengthTaskOptions {
  TORCH_ARG(std::int64_t, alphabet) = 16;
  TORCH_ARG(std::int64_t, copy_tokens) = 16;
};

constexpr std::uint64_t kSelectiveCopySalt = 0x5c0b;  // derive_seed label of this generator

const OptionsSchema<SelectiveCopyOptions>& selective_copy_schema() {
  static const OptionsSchema<SelectiveCopyOptions> schema = [] {
    OptionsSchema<SelectiveCopyOptions> s;
    BLOCKLAB_OPTION(s, alphabet, "A: data token kinds, ids 1..A (noise 0, marker A+1; Mamba: 16)").min = 1;
    BLOCKLAB_OPTION(s, copy_tokens, "M: data tokens to copy, and markers at the end (Mamba: 16)").min = 1;
    add_length_options(s, 2);
    return s;
  }();
  return schema;
}

ExampleWriter selective_copy_writer(std::int64_t length, std::int64_t alphabet, std::int64_t copies) {
  return [length, alphabet, copies](TokenRng& rng, std::int64_t* inputs, std::int64_t* targets) {
    const std::int64_t region = length - copies;
    std::vector<std::int64_t> at = rng.distinct(copies, 0, region);
    std::sort(at.begin(), at.end());
    for (std::int64_t t = 0; t < region; ++t) inputs[t] = 0;
    for (std::int64_t i = 0; i < copies; ++i) {
      const std::int64_t token = 1 + rng.below(alphabet);
      inputs[at[static_cast<std::size_t>(i)]] = token;
      inputs[region + i] = alphabet + 1;
      targets[region + i] = token;
    }
  };
}

LengthTask selective_copy_task(const SelectiveCopyOptions& o) {
  std::vector<std::int64_t> lengths = o.test_seq_len();
  lengths.push_back(o.seq_len());
  for (std::int64_t n : lengths)
    if (n < 2 * o.copy_tokens())
      token_option_error(n == o.seq_len() ? "seq_len" : "test_seq_len",
                         "length " + std::to_string(n) + " has no room for " + std::to_string(o.copy_tokens()) +
                             " data tokens and their markers",
                         "use lengths >= 2 * copy_tokens = " + std::to_string(2 * o.copy_tokens()));
  return {o,
          [a = o.alphabet(), m = o.copy_tokens()](std::int64_t length) { return selective_copy_writer(length, a, m); }};
}

DatasetInfo selective_copy_info(const SelectiveCopyOptions& o) {
  DatasetInfo info;
  info.task = "recall";
  info.vocabulary = o.alphabet() + 2;
  info.token_names.push_back("<noise>");
  for (std::int64_t id = 1; id <= o.alphabet(); ++id) info.token_names.push_back("d" + std::to_string(id));
  info.token_names.push_back("<copy>");
  return info;
}

const LengthGenerator<SelectiveCopyOptions> kSelectiveCopyGenerator{
    "synthetic/selective-copy", kSelectiveCopySalt, selective_copy_schema, selective_copy_info, selective_copy_task};

[[maybe_unused]] const bool BLOCKLAB_UNIQUE(planner_registered_) = register_dataset_planner(
    kSelectiveCopyGenerator.name, [](const ConfigNode& params) { return kSelectiveCopyGenerator.plan(params); });

BLOCKLAB_REGISTER(dataset_registry(),
                  BLOCKLAB_ENTRY("synthetic/selective-copy")
                      .summary("selective copying (Mamba): copy the data tokens scattered in noise, in order, at "
                               "the markers after the sequence")
                      .paper("Mamba: Linear-Time Sequence Modeling with Selective State Spaces (Gu & Dao 2023), "
                             "arXiv:2312.00752, §4.1.1, App. E.1")
                      .equation("x = noise with d_1..d_M at sorted random positions, then M markers; target at "
                                "marker i = d_i")
                      .schema(selective_copy_schema().schema())
                      .example("{alphabet: 4, copy_tokens: 3, seq_len: 12, test_seq_len: [20], train_examples: 8, "
                               "val_examples: 4, test_examples: 4}"),
                  [](const ConfigNode& params, const DatasetArgs&) { return kSelectiveCopyGenerator.make(params); });

}  // namespace
}  // namespace blocklab
