#include "datasets/text_kjv.h"

#include "datasets/dataset_options.h"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <iomanip>
#include <map>
#include <mutex>
#include <sstream>

#include "datasets/idx_file.h"
#include "registry/suggest.h"

namespace blocklab {

namespace {

const char* const kProgramPackage = "bible-kjv";
const char* const kTextPackage = "bible-kjv-text";
const char* const kAllVerses = "Gen1:1-Rev22:21";

std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

// `program` as the shell would find it: a path, or a name on $PATH; "" when there is none.
std::string find_program(const std::string& program) {
  if (program.find('/') != std::string::npos) return ::access(program.c_str(), X_OK) == 0 ? program : "";
  const char* path = std::getenv("PATH");
  std::istringstream dirs(path ? path : "/usr/bin:/bin");
  for (std::string dir; std::getline(dirs, dir, ':');) {
    const std::string candidate = (dir.empty() ? "." : dir) + "/" + program;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

// The program's standard output (and error), with its exit status.
std::pair<std::string, int> run_program(const std::string& command) {
  FILE* pipe = ::popen(command.c_str(), "r");
  if (!pipe) return {"", -1};
  std::string out;
  char buffer[1 << 16];
  for (std::size_t n; (n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0;) out.append(buffer, n);
  const int status = ::pclose(pipe);
  return {out, WIFEXITED(status) ? WEXITSTATUS(status) : -1};
}

std::string last_line(const std::string& text) {
  std::string t = text;
  while (!t.empty() && t.back() == '\n') t.pop_back();
  const auto at = t.rfind('\n');
  return at == std::string::npos ? t : t.substr(at + 1);
}

// Chapter headers ("1 Samuel 3") open a book when the name changes; verse lines ("  3 text")
// add "text\n" to it; blank lines separate them.
std::vector<KjvBook> parse_books(const std::string& output, const std::string& origin, const Source& where) {
  std::vector<KjvBook> books;
  std::istringstream in(output);
  std::int64_t number = 0;
  for (std::string line; std::getline(in, line);) {
    ++number;
    if (line.empty()) continue;
    const auto fail = [&](const std::string& what) {
      throw ConfigError(
          origin + " printed " + what + " at line " + std::to_string(number) + ": '" + line.substr(0, 80) + "'", where,
          "dataset.data",
          {std::string("reinstall it with: apt-get install --reinstall ") + kTextPackage + " " + kProgramPackage});
    };
    if (line.rfind("  ", 0) == 0) {
      const auto text = line.find(' ', line.find_first_not_of(' '));
      if (books.empty() || text == std::string::npos) fail("a verse outside a book");
      books.back().text += line.substr(text + 1) + "\n";
      continue;
    }
    const auto space = line.rfind(' ');
    if (space == std::string::npos || space == 0) fail("an unexpected line");
    const std::string name = line.substr(0, space);
    if (books.empty() || books.back().name != name) books.push_back({name, ""});
  }
  if (static_cast<std::int64_t>(books.size()) != kKjvBooks)
    throw ConfigError(origin + " printed " + std::to_string(books.size()) + " books, not the 66 of the KJV", where,
                      "dataset.data", {std::string("reinstall it with: apt-get install --reinstall ") + kTextPackage});
  return books;
}

std::string file_part(const std::string& path, bool directory) {
  const auto slash = path.rfind('/');
  if (slash == std::string::npos) return directory ? "." : path;
  return directory ? (slash == 0 ? "/" : path.substr(0, slash)) : path.substr(slash + 1);
}

void check_options(const KjvOptions& o) {
  for (const auto& [name, value] : std::vector<std::pair<std::string, std::int64_t>>{{"context", o.context()},
                                                                                     {"stride", o.stride()},
                                                                                     {"val_books", o.val_books()},
                                                                                     {"test_books", o.test_books()},
                                                                                     {"limit_train", o.limit_train()},
                                                                                     {"limit_val", o.limit_val()},
                                                                                     {"limit_test", o.limit_test()}})
    check_dataset_option_range(kjv_schema().schema(), name, value);
  if (o.val_books() + o.test_books() >= kKjvBooks)
    throw ConfigError("val_books + test_books = " + std::to_string(o.val_books() + o.test_books()) +
                          " leaves no book for training (the KJV has 66)",
                      {}, "dataset.test_books", {"keep val_books + test_books <= 65"});
}

// The books of each split: [0, train_end) train, [train_end, test_begin) val, the rest test.
struct BookRanges {
  std::int64_t train_end, test_begin;
};
BookRanges book_ranges(const KjvOptions& o) {
  return {kKjvBooks - o.test_books() - o.val_books(), kKjvBooks - o.test_books()};
}

std::int64_t limited(std::int64_t windows, std::int64_t limit) {
  return limit > 0 ? std::min(windows, limit) : windows;
}

std::int64_t stride_of(const KjvOptions& o) { return o.stride() > 0 ? o.stride() : o.context(); }

// `n` windows of context + 1 ids of `ids` starting every `stride`: inputs (uint8, padding as
// id 0) and targets (the next ids, padding as kIgnoreTarget).
Split windows_split(const torch::Tensor& ids, std::int64_t n, std::int64_t context, std::int64_t stride) {
  if (n == 0) return Split{torch::zeros({0, context}, torch::kUInt8), torch::zeros({0, context}, torch::kLong), {}};
  const torch::Tensor windows = ids.slice(0, 0, (n - 1) * stride + context + 1).unfold(0, context + 1, stride);
  return Split{
      windows.slice(1, 0, context).clamp_min(0).to(torch::kUInt8).contiguous(), windows.slice(1, 1).contiguous(), {}};
}

// Windows of context + 1 ids starting every `stride` (full windows only).
Split train_split(const torch::Tensor& ids, std::int64_t context, std::int64_t stride, std::int64_t limit) {
  return windows_split(ids, limited(kjv_train_windows(ids.size(0), context, stride), limit), context, stride);
}

// Windows every `context` ids, overlapping by one; the last one padded: every id after the
// first is a target exactly once.
Split eval_split(const torch::Tensor& ids, std::int64_t context, std::int64_t limit) {
  const std::int64_t all = kjv_eval_windows(ids.size(0), context), n = limited(all, limit);
  const torch::Tensor padded = torch::full({std::max(all * context + 1, ids.size(0))}, kIgnoreTarget, torch::kLong);
  padded.slice(0, 0, ids.size(0)).copy_(ids);
  return windows_split(padded, n, context, context);
}

}  // namespace

const OptionsSchema<KjvOptions>& kjv_schema() {
  static const OptionsSchema<KjvOptions> schema = [] {
    OptionsSchema<KjvOptions> s;
    BLOCKLAB_OPTION(s, program, "the program that decodes the text (package bible-kjv), a name on $PATH or a path");
    BLOCKLAB_OPTION(s, data, "the compressed text (package bible-kjv-text)");
    auto& context = BLOCKLAB_OPTION(s, context, "characters a model reads per window (default 256)");
    context.min = 1, context.max = 1 << 20;
    auto& stride = BLOCKLAB_OPTION(s, stride, "characters between train window starts; 0 = context (default)");
    stride.min = 0, stride.max = 1 << 20;
    auto& val = BLOCKLAB_OPTION(s, val_books, "books before the test books held out as val (default 6: Romans..)");
    val.min = 0, val.max = kKjvBooks - 1;
    auto& test = BLOCKLAB_OPTION(s, test_books, "last books held out as test (default 16: Colossians..Revelation)");
    test.min = 1, test.max = kKjvBooks - 1;
    BLOCKLAB_OPTION(s, limit_train, "keep the first N train windows; 0 = all").min = 0;
    BLOCKLAB_OPTION(s, limit_val, "keep the first N val windows; 0 = all").min = 0;
    BLOCKLAB_OPTION(s, limit_test, "keep the first N test windows; 0 = all").min = 0;
    return s;
  }();
  return schema;
}

std::vector<KjvBook> read_kjv_books(const std::string& program, const std::string& data, const KjvSources& where) {
  static std::mutex mutex;
  static std::map<std::string, std::vector<KjvBook>> cache;
  const std::lock_guard<std::mutex> lock(mutex);
  const std::string key = program + '\n' + data;
  if (auto found = cache.find(key); found != cache.end()) return found->second;

  const std::string path = find_program(program);
  if (path.empty())
    throw ConfigError(
        "cannot run '" + program + "': no such program", where.program, "dataset.program",
        {std::string("install it with: apt-get install ") + kProgramPackage + " (or set dataset.program)"});
  if (::access(data.c_str(), R_OK) != 0)
    throw ConfigError("cannot read " + data + ": file is missing", where.data, "dataset.data",
                      {std::string("install it with: apt-get install ") + kTextPackage + " (or set dataset.data)"});
  const std::string command = shell_quote(path) + " -p " + shell_quote(file_part(data, true)) + " -d " +
                              shell_quote(file_part(data, false)) + " -l100000 " + kAllVerses + " 2>&1 </dev/null";
  const auto [output, status] = run_program(command);
  const std::string origin = "'" + program + "' on " + data;
  if (status != 0)
    throw ConfigError(
        origin + " failed (exit status " + std::to_string(status) + "): " + last_line(output), where.data,
        "dataset.data",
        {std::string("reinstall them with: apt-get install --reinstall ") + kProgramPackage + " " + kTextPackage});
  return cache.emplace(key, parse_books(output, origin, where.data)).first->second;
}

const std::array<std::int64_t, kKjvBooks>& kjv_book_chars() {
  static const std::array<std::int64_t, kKjvBooks> chars{
      196818, 169376, 126862, 175611, 146434, 100133, 98683, 13004, 129263, 106382, 126979, 120724, 110963, 139056,
      40388,  57117,  30231,  94234,  223732, 79971,  28364, 13687, 193989, 223707, 18084,  205264, 61869,  27116,
      10716,  21859,  3578,   6629,   16329,  6912,   7923,  8501,  5734,   32954,  9193,   124420, 79121,  134674,
      98033,  129836, 50227,  48927,  32003,  16233,  16282, 11558, 10720,  9663,   5442,   12698,  9189,   5130,
      2320,   37208,  12137,  13463,  8700,   12753,  1553,  1593,  3523,   62075};
  return chars;
}

std::int64_t kjv_train_windows(std::int64_t chars, std::int64_t context, std::int64_t stride) {
  return chars < context + 1 ? 0 : (chars - context - 1) / stride + 1;
}

std::int64_t kjv_eval_windows(std::int64_t chars, std::int64_t context) {
  return chars < 2 ? 0 : (chars - 1 + context - 1) / context;
}

DatasetInfo kjv_info(std::int64_t context) {
  DatasetInfo info;
  info.task = "language";
  info.length = context;
  info.vocabulary = kKjvVocabulary;
  for (std::int64_t i = 0; i < kKjvVocabulary; ++i) info.token_names.emplace_back(1, kKjvAlphabet[i]);
  return info;
}

torch::Tensor kjv_encode(const std::string& text) {
  std::array<std::int16_t, 256> id;
  id.fill(-1);
  for (std::int64_t i = 0; i < kKjvVocabulary; ++i)
    id[static_cast<unsigned char>(kKjvAlphabet[i])] = static_cast<std::int16_t>(i);
  torch::Tensor ids = torch::empty({static_cast<std::int64_t>(text.size())}, torch::kLong);
  auto* out = ids.data_ptr<std::int64_t>();
  std::string unknown;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    out[i] = id[c];
    if (id[c] < 0 && unknown.find(text[i]) == std::string::npos) unknown += text[i];
  }
  if (!unknown.empty()) {
    std::vector<std::string> shown;
    for (char c : unknown) shown.push_back(c == '\n' ? "'\\n'" : "'" + std::string(1, c) + "'");
    throw ConfigError("characters outside the KJV alphabet: " + join_names(shown), {}, "",
                      {"the vocabulary is kKjvAlphabet (datasets/text_kjv.h): newline, space, !'(),-.:;? and letters"});
  }
  return ids;
}

KjvText::KjvText(KjvOptions options, const KjvSources& sources) : options_(std::move(options)) {
  check_options(options_);
  const std::vector<KjvBook> books = read_kjv_books(options_.program(), options_.data(), sources);
  const BookRanges r = book_ranges(options_);
  std::uint64_t hash = kFnv1aOffset;
  for (std::int64_t b = 0; b < kKjvBooks; ++b) {
    const KjvBook& book = books[static_cast<std::size_t>(b)];
    Part& p = b < r.train_end ? train_ : b < r.test_begin ? val_ : test_;
    p.text += book.text;
    p.books.push_back(book.name);
    hash = fnv1a(book.text.data(), book.text.size(), hash);
  }
  const std::int64_t context = options_.context();
  train_.split = train_split(kjv_encode(train_.text), context, stride_of(options_), options_.limit_train());
  val_.split = eval_split(kjv_encode(val_.text), context, options_.limit_val());
  test_.split = eval_split(kjv_encode(test_.text), context, options_.limit_test());

  std::ostringstream split_text;
  split_text << "context=" << context << ";stride=" << stride_of(options_) << ";val_books=" << options_.val_books()
             << ";test_books=" << options_.test_books() << ";limit_train=" << options_.limit_train()
             << ";limit_val=" << options_.limit_val() << ";limit_test=" << options_.limit_test();
  const std::string s = split_text.str();
  std::ostringstream hex;
  hex << std::hex << std::setw(16) << std::setfill('0') << fnv1a(s.data(), s.size(), hash);
  fingerprint_ = hex.str();
}

const KjvText::Part& KjvText::part(const std::string& name) const {
  return part_by_name("text/kjv", name, train_, val_, test_);
}

const Split& KjvText::split(const std::string& name) const { return part(name).split; }
const std::string& KjvText::text(const std::string& name) const { return part(name).text; }
const std::vector<std::string>& KjvText::books(const std::string& name) const { return part(name).books; }

torch::Tensor KjvText::prepare(const torch::Tensor& raw, torch::Generator*) const { return raw.to(torch::kLong); }

namespace {

KjvOptions bind_kjv(const ConfigNode& params) {
  KjvOptions o = bind_dataset_options(kjv_schema(), params);
  check_options(o);
  return o;
}

std::shared_ptr<Dataset> make_kjv(const ConfigNode& params, const DatasetArgs&) {
  const auto source = [&](const char* key) {
    const ConfigNode* node = params.find(key);
    return node ? node->source() : Source{};
  };
  return std::make_shared<KjvText>(bind_kjv(params), KjvSources{source("program"), source("data")});
}

// The split sizes from the options and the book sizes of bible-kjv-text.
DatasetPlan plan_kjv(const ConfigNode& params) {
  const KjvOptions o = bind_kjv(params);
  const BookRanges r = book_ranges(o);
  std::int64_t chars[3] = {0, 0, 0};
  for (std::int64_t b = 0; b < kKjvBooks; ++b)
    chars[b < r.train_end ? 0 : b < r.test_begin ? 1 : 2] += kjv_book_chars()[static_cast<std::size_t>(b)];
  DatasetPlan plan{kjv_info(o.context()), {}};
  plan.more_data_hint = "more training windows: dataset.limit_train (0 = all), a smaller dataset.stride or context";
  plan.split_sizes["train"] = limited(kjv_train_windows(chars[0], o.context(), stride_of(o)), o.limit_train());
  plan.split_sizes["val"] = limited(kjv_eval_windows(chars[1], o.context()), o.limit_val());
  plan.split_sizes["test"] = limited(kjv_eval_windows(chars[2], o.context()), o.limit_test());
  return plan;
}
[[maybe_unused]] const bool BLOCKLAB_UNIQUE(planner_registered_) = register_dataset_planner("text/kjv", plan_kjv);

BLOCKLAB_REGISTER(dataset_registry(),
                  BLOCKLAB_ENTRY("text/kjv")
                      .summary("King James Bible, character level: windows of context+1 characters, split by book "
                               "(test: Colossians..Revelation, val: Romans..Philippians)")
                      .paper("Generating Sequences With Recurrent Neural Networks (Graves, 2013), arXiv:1308.0850 "
                             "(character-level language modelling, bits per character); text: Debian bible-kjv-text")
                      .equation("inputs = text[s : s+context], targets = text[s+1 : s+context+1]")
                      .schema(kjv_schema().schema())
                      .example("{context: 32, limit_train: 64, limit_val: 8, limit_test: 8}"),
                  make_kjv);

}  // namespace
}  // namespace blocklab
