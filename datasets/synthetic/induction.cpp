// synthetic/induction: the induction-head task.
//
// Papers: "In-context Learning and Induction Heads" (Olsson et al. 2022, arXiv:2209.11895: an
// induction head completes [A][B] ... [A] -> [B]) as a synthetic task in "Hungry Hungry Hippos"
// (Fu, Dao, Saab, Thomas, Rudra, Ré 2023, arXiv:2212.14052, §3.1 "Induction Head") and Mamba
// (Gu & Dao 2023, arXiv:2312.00752, §4.1.2), generator of HazyResearch/safari
// (src/dataloaders/synthetics.py, generate_induction_head with induction_len = 1, one trigger):
//   - ids [0, V-1) are data tokens, V-1 is the special (trigger) token;
//   - positions 0 .. L-2 hold uniform data tokens; the trigger replaces the token at one
//     uniform position p in [0, L-3], so the token after it, x[p+1], is a data token;
//   - position L-1 holds the trigger again; its target is x[p+1], the only scored position.
// The trigger appears exactly twice. H3 and safari score only the answer at test time (safari
// trains on every next token); here training scores the answer too (recall task).
//
// Splits: train, val, test at seq_len, and test/L<n> for each test length (length
// generalisation, Mamba Table 2), right-padded to the longest.
#include "datasets/synthetic/token_task.h"

namespace blocklab {
namespace {

struct InductionOptions : LengthTaskOptions {
  TORCH_ARG(std::int64_t, vocabulary) = 16;
};

constexpr std::uint64_t kInductionSalt = 0x1d7c;  // derive_seed label of this generator

const OptionsSchema<InductionOptions>& induction_schema() {
  static const OptionsSchema<InductionOptions> schema = [] {
    OptionsSchema<InductionOptions> s;
    BLOCKLAB_OPTION(s, vocabulary, "V: data tokens [0, V-1) and the trigger V-1 (Mamba: 16)").min = 3;
    add_length_options(s, 3);
    return s;
  }();
  return schema;
}

ExampleWriter induction_writer(std::int64_t length, std::int64_t vocabulary) {
  const std::int64_t trigger = vocabulary - 1;
  return [length, trigger](TokenRng& rng, std::int64_t* inputs, std::int64_t* targets) {
    for (std::int64_t t = 0; t + 1 < length; ++t) inputs[t] = rng.below(trigger);
    const std::int64_t p = rng.below(length - 2);
    inputs[p] = trigger;
    inputs[length - 1] = trigger;
    targets[length - 1] = inputs[p + 1];
  };
}

LengthTask induction_task(const InductionOptions& o) {
  return {o, [v = o.vocabulary()](std::int64_t length) { return induction_writer(length, v); }};
}

DatasetInfo induction_info(const InductionOptions& o) {
  DatasetInfo info;
  info.task = "recall";
  info.vocabulary = o.vocabulary();
  for (std::int64_t id = 0; id + 1 < o.vocabulary(); ++id) info.token_names.push_back("t" + std::to_string(id));
  info.token_names.push_back("<trigger>");
  return info;
}

const LengthGenerator<InductionOptions> kInductionGenerator{"synthetic/induction", kInductionSalt, induction_schema,
                                                            induction_info, induction_task};

[[maybe_unused]] const bool BLOCKLAB_UNIQUE(planner_registered_) = register_dataset_planner(
    kInductionGenerator.name, [](const ConfigNode& params) { return kInductionGenerator.plan(params); });

BLOCKLAB_REGISTER(dataset_registry(),
                  BLOCKLAB_ENTRY("synthetic/induction")
                      .summary("induction heads: after a random sequence, the trigger token again; predict the "
                               "token that followed its first occurrence")
                      .paper("Hungry Hungry Hippos: Towards Language Modeling with State Space Models (Fu et al. "
                             "2023), arXiv:2212.14052, §3.1; Olsson et al. 2022, arXiv:2209.11895")
                      .equation("x = u_0 .. u_{p-1} T u_{p+1} .. u_{L-2} T, u ~ U[0, V-1); target at L-1 = u_{p+1}")
                      .schema(induction_schema().schema())
                      .example("{vocabulary: 8, seq_len: 12, test_seq_len: [20], train_examples: 8, val_examples: 4, "
                               "test_examples: 4}"),
                  [](const ConfigNode& params, const DatasetArgs&) { return kInductionGenerator.make(params); });

}  // namespace
}  // namespace blocklab
