// JSON files through nlohmann-json: everything blocklab writes as JSON (metrics.jsonl,
// summary.json, env.json, sweep.json, manifest.jsonl, state.json, search ledgers) is written by
// json_text() and read back by parse_json(), so that strict readers (Python's json, pandas,
// polars, jq) read every file.
//
// Layout: one line per value, keys in insertion order, ", " and ": " separators:
//   {"step": 40, "epoch": 1, "loss": 0.6931, "lr": 0.001}
// Integers are written as integers; doubles in the shortest text that reads back as the same
// double, as Python's repr() and json.dumps() write them (format_double: 0.1, 1e-05, -0.0,
// 1e+16, 5e-324), the text blocklab wrote before nlohmann, so that files (and the sweep
// manifests compared byte for byte) do not change.
//
// Non-finite numbers: JSON has none, so a non-finite double at key K of an object is written as
// null with a sibling string key "K_nonfinite" holding "nan", "inf" or "-inf":
//   {"step": 5, "loss": null, "loss_nonfinite": "nan", "diverged": true}
// parse_json() turns such a pair back into the number (and drops the flag key), so code reading a
// Json value sees a double NaN or +-inf. In an array (no key for a flag) one is written as a bare
// null. Files written before this convention hold bare NaN / Infinity / -Infinity: parse_json()
// still reads them, as the numbers.
#pragma once

#include <nlohmann/json.hpp>

#include <cstddef>
#include <string>

#include "registry/config_node.h"

namespace blocklab {

using Json = nlohmann::ordered_json;

// The suffix of the flag key that marks a null as a non-finite number.
inline constexpr const char* kNonFiniteSuffix = "_nonfinite";

// `value` as one line of JSON text (no newline); strings that are not valid UTF-8 get U+FFFD
// for the bad bytes.
std::string json_text(const Json& value);

// Parses one JSON value strictly. `file` names the text in messages; `line` > 0 says the text is
// that line of a .jsonl file (messages give "file:line" and the column), 0 a whole file (messages
// give its line and column). Throws ConfigError: "not valid JSON at line 1, column 18: ...".
Json parse_json(const std::string& text, const std::string& file, int line = 0);
// The same, quietly: false (and `out` untouched) when `text` is not valid JSON.
bool try_parse_json(const std::string& text, Json& out);
// parse_json() of a whole file; a missing or unreadable file throws ConfigError naming it.
Json read_json_file(const std::string& path);

// A JSON value as a ConfigNode, for code that reads ConfigNodes: strings become quoted scalars,
// numbers, booleans and null typed scalars (a non-finite double ".nan"/".inf"), arrays lists and
// objects mappings, each node with `source`.
ConfigNode json_to_config(const Json& value, const Source& source = {});
// parse_json() of an object as a ConfigNode; anything else than an object throws ConfigError
// "not a JSON object" at `file` (and `line`).
ConfigNode parse_json_object(const std::string& text, const std::string& file, int line = 0);

}  // namespace blocklab
