// The command-line override grammar (Hydra's, plus a zip form for sweeps).
//
//   key=value       set an existing key, or choose an option of a config group
//   +key=value      add a key (or append a config group) that is not there yet
//   ++key=value     set or add
//   ~key[=value]    delete a key (only when equal to value, if given) or a group entry
//   group@pkg=opt   choose an option of a group placed at another package
// Keys and values follow Hydra 1.3's override grammar (hydra/grammar/Override*.g4): a value
// of one number, bool or null token is typed as Hydra types it (3, 1_000, 3e-4, inf, +nan,
// TRUE, null); anything else is text ('quoted', "quoted", a\,b, c:\dir, ${interpolation});
// lists [1,2], dicts {a: 1} (string keys only: Hydra's int/float/bool/null keys and repeated
// keys are errors here). Parsing is linear in the length of the text. Sweeps (for `blocklab sweep`):
//   a=1,2,3   a=choice(1,2,3)   a=range(0,3)  range(0,1,0.25)   a=glob(attention/*)
//   zip(a,b)=[1,x],[2,y]          pairs values across keys instead of a product
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "registry/config_node.h"

namespace blocklab {

struct Sweep {
  enum class Kind { Choice, Range, Glob };
  Kind kind = Kind::Choice;
  std::vector<ConfigNode> choices;        // Choice: the values
  double start = 0, stop = 0, step = 1;   // Range: [start, stop) by step
  bool range_is_int = true;
  std::vector<std::string> patterns;      // Glob: over registry names (expanded by the caller)

  // Choice and Range as explicit values (Glob needs the registry: see sweep expansion).
  std::vector<ConfigNode> values(const Source& src) const;
};

struct Override {
  enum class Op { Set, Add, ForceAdd, Delete };
  Op op = Op::Set;
  std::string key;                 // "trainer.lr", "model/mixer", "" for zip
  std::string package;             // after '@', group overrides only
  std::vector<std::string> zip_keys;  // zip(a,b)=...
  bool has_value = false;          // false only for "~key"
  ConfigNode value;                // when has_value and !sweep
  std::optional<Sweep> sweep;      // when the value is a sweep
  std::string text;                // the override as typed

  bool is_sweep() const { return sweep.has_value(); }
  bool is_zip() const { return !zip_keys.empty(); }
  Source source() const { return Source::command_line(text); }
};

// Parses one override; throws ConfigError ("malformed override ...") with the column.
Override parse_override(const std::string& text);

// Parses a value alone (as after '='), e.g. for tests and for `--set` style options.
ConfigNode parse_override_value(const std::string& text);

// The inverse: a value's text that parse_override_value reads back as the same value (strings
// are quoted where the grammar would read them otherwise: "1_000", "tRuE", "a#b", "café").
// Throws ConfigError for a mapping key the grammar cannot write (e.g. "a#b", "1").
std::string override_value_text(const ConfigNode& value);

}  // namespace blocklab
