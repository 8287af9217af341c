// text/kjv: character-level language modelling on the King James Bible.
//
// Data: Debian's bible-kjv-text (/usr/lib/bible.data, compressed in the `bible` program's own
// format), decoded by the `bible` program of package bible-kjv: `bible -l100000
// "Gen1:1-Rev22:21"` prints the 66 books as chapter headers ("Genesis 1") and verse lines
// ("  1 In the beginning ..."). The corpus keeps the verse texts only (no numbers, no headers),
// one verse per line ("...\n"), book after book: 4,137,850 characters.
// Character-level modelling of text as in "Generating Sequences With Recurrent Neural Networks"
// (Graves 2013, arXiv:1308.0850), scored in bits per character.
//
// Vocabulary (fixed, 63 characters, sorted by byte value; id = index): kKjvAlphabet below:
// newline, space, ! ' ( ) , - . : ; ?, the capitals without X, and a-z. Every character of
// the text is in it (checked when the text is read).
//
// Split by book (deterministic; the defaults give 90.7 / 4.2 / 5.0 % of the characters):
//   test  the last test_books books (default 16: Colossians .. Revelation, 208,167 characters)
//   val   the val_books books before them (default 6: Romans .. Philippians, 175,230 characters)
//   train every book before those (Genesis .. Acts, 3,754,453 characters)
// Examples are windows of context + 1 characters: inputs = the first `context` ids, targets =
// the next character at every position (inputs shifted by one). Train windows start every
// `stride` characters (0 = context: non-overlapping); a tail shorter than a window is unused.
// val and test windows start every `context` characters and the last one is padded (input id
// 0, target kIgnoreTarget), so every character of the split after its first is predicted
// exactly once.
//
// Shapes: inputs uint8 [N, context] (prepare: int64 ids), targets int64 [N, context].
#pragma once

#include <torch/torch.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "datasets/dataset.h"
#include "registry/options_schema.h"

namespace blocklab {

// The vocabulary: every character of the KJV text, sorted by byte value (id = position).
inline constexpr char kKjvAlphabet[] = "\n !'(),-.:;?ABCDEFGHIJKLMNOPQRSTUVWYZabcdefghijklmnopqrstuvwxyz";
inline constexpr std::int64_t kKjvVocabulary = sizeof(kKjvAlphabet) - 1;  // 63
inline constexpr std::int64_t kKjvBooks = 66;

struct KjvOptions {
  TORCH_ARG(std::string, program) = "bible";             // the decoder (package bible-kjv)
  TORCH_ARG(std::string, data) = "/usr/lib/bible.data";  // the text (package bible-kjv-text)
  TORCH_ARG(std::int64_t, context) = 256;
  TORCH_ARG(std::int64_t, stride) = 0;  // 0 = context
  TORCH_ARG(std::int64_t, val_books) = 6;
  TORCH_ARG(std::int64_t, test_books) = 16;
  TORCH_ARG(std::int64_t, limit_train) = 0;
  TORCH_ARG(std::int64_t, limit_val) = 0;
  TORCH_ARG(std::int64_t, limit_test) = 0;
};

const OptionsSchema<KjvOptions>& kjv_schema();

// One book of the corpus: its name ("1 Samuel") and its verses, each followed by '\n'.
struct KjvBook {
  std::string name;
  std::string text;
};

// Where dataset.program and dataset.data were configured, for messages.
struct KjvSources {
  Source program, data;
};

// Runs `program` on `data` and parses its output into the 66 books. Throws ConfigError naming
// the missing program or file and the package that installs it.
std::vector<KjvBook> read_kjv_books(const std::string& program, const std::string& data, const KjvSources& where = {});

// The characters of each book in the corpus of bible-kjv-text 4.38 (what the planner sizes the
// splits from, without reading the text; a test checks them against the installed text).
const std::array<std::int64_t, kKjvBooks>& kjv_book_chars();

// Windows in a split of `chars` characters: train (every `stride`, full windows only) or
// evaluation (every `context`, the last one padded).
std::int64_t kjv_train_windows(std::int64_t chars, std::int64_t context, std::int64_t stride);
std::int64_t kjv_eval_windows(std::int64_t chars, std::int64_t context);

DatasetInfo kjv_info(std::int64_t context);

class KjvText : public Dataset {
 public:
  // Reads the books (once per process for the same program and data) and cuts the windows.
  explicit KjvText(KjvOptions options, const KjvSources& sources = {});

  DatasetInfo info() const override { return kjv_info(options_.context()); }
  const Split& split(const std::string& name) const override;
  torch::Tensor prepare(const torch::Tensor& raw, torch::Generator* augment_generator) const override;
  std::string fingerprint() const override { return fingerprint_; }

  // The characters of a split (its books' texts, concatenated) and the books it holds.
  const std::string& text(const std::string& split) const;
  const std::vector<std::string>& books(const std::string& split) const;
  const KjvOptions& options() const { return options_; }

 private:
  struct Part {
    Split split;
    std::string text;
    std::vector<std::string> books;
  };
  const Part& part(const std::string& name) const;

  KjvOptions options_;
  Part train_, val_, test_;
  std::string fingerprint_;
};

// Character ids of `text` ([n] int64); throws ConfigError naming characters outside the alphabet.
torch::Tensor kjv_encode(const std::string& text);

}  // namespace blocklab
