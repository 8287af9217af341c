// synthetic/listops: the ListOps task of Long Range Arena ("Long Range Arena: A Benchmark for
// Efficient Transformers", Tay et al. 2021, arXiv:2011.04006, §3.1), after "ListOps: A
// Diagnostic Dataset for Latent Tree Learning" (Nangia & Bowman 2018, arXiv:1804.06028).
//
// An example is a nested expression in prefix form, e.g. [MAX 4 3 [MIN 2 3 ] 1 0 ] (= 4), and
// its label is the expression's value, a digit 0-9 (10 classes). Operators: MIN, MAX, MED
// (median; for an even count the mean of the two middle values, truncated: int(np.median)), SM (sum
// modulo 10). The generator is LRA's (lra_benchmarks/data/listops.py, our own code): a node
// at depth d < max_depth is an operator with probability 1/4 (else a digit; at max_depth
// always a digit), an operator takes 2..max_args arguments, the root is at depth 1; a tree is
// kept when its token count lies in [min_length, max_length] and it is new (no expression
// appears twice, in a split or across splits). Tokens: "[MIN" "[MAX" "[MED" "[SM", "]" and the
// digits; LRA's "(" and ")" are not tokens. (LRA's input pipeline tokenised with tfds'
// Tokenizer, which keeps alphanumeric runs only and so dropped "]" too, a known bug that makes
// expressions ambiguous; here "]" is a token.)
//
// Splits: "test", "val" and "train" are generated in this order, each from its own seed
// derived from `seed`, so the test set does not depend on the train size. Inputs: uint8
// [N, max_length] token ids right-padded with 0 (<pad>), lengths int64 [N], targets int64 [N].
// prepare() gives int64 ids.
//
// Generation is LRA's rejection sampling made cheap: a tree is abandoned as soon as it passes
// max_length (so a rejected long tree costs at most max_length tokens), and the value is
// computed while the tokens are written. The conditional distribution is LRA's exactly. LRA's
// 100,000 expressions of 500..2,000 tokens: 3.1 s, 12 trees drawn per tree kept (measured on
// the shared 2-core machine; tests/datasets/listops.cpp "[seqcls-bench]").
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>

#include "datasets/dataset.h"
#include "registry/options_schema.h"

namespace blocklab {

struct ListOpsOptions {
  TORCH_ARG(std::int64_t, train_size) = 96000;  // LRA: 96,000 / 2,000 / 2,000
  TORCH_ARG(std::int64_t, val_size) = 2000;
  TORCH_ARG(std::int64_t, test_size) = 2000;
  TORCH_ARG(std::int64_t, min_length) = 500;  // tokens; LRA keeps 500 < length < 2000
  TORCH_ARG(std::int64_t, max_length) = 2000;
  TORCH_ARG(std::int64_t, max_depth) = 10;  // levels of the tree, the root's level 1 (LRA: 10)
  TORCH_ARG(std::int64_t, max_args) = 10;   // arguments of an operator (LRA: 10)
  TORCH_ARG(std::int64_t, seed) = 0;
};

const OptionsSchema<ListOpsOptions>& listops_schema();

// The token ids: 0 <pad>, 1..10 the digits 0..9, then the operators and the closing bracket.
enum ListOpsToken : std::uint8_t {
  kListOpsPad = 0,
  kListOpsDigit0 = 1,
  kListOpsMin = 11,
  kListOpsMax,
  kListOpsMed,
  kListOpsSumMod,
  kListOpsClose,
  kListOpsVocabulary
};

// Vocabulary, token names, length (max_length) and the 10 classes.
DatasetInfo listops_info(const ListOpsOptions& options);

class ListOps : public Dataset {
 public:
  // Generates the three splits. Throws ConfigError for options out of range, for lengths that
  // no tree of max_depth and max_args reaches, and when almost no tree fits the lengths.
  explicit ListOps(ListOpsOptions options);

  DatasetInfo info() const override { return listops_info(options_); }
  const Split& split(const std::string& name) const override;
  torch::Tensor prepare(const torch::Tensor& raw, torch::Generator*) const override { return raw.to(torch::kLong); }
  std::string fingerprint() const override { return fingerprint_; }

  // Trees drawn per tree kept, over the three splits (rejection sampling's cost).
  double attempts_per_example() const { return attempts_per_example_; }

 private:
  ListOpsOptions options_;
  Split train_, val_, test_;
  std::string fingerprint_;
  double attempts_per_example_ = 0;
};

}  // namespace blocklab
