// ConfigError: every user-facing configuration error, with location, rule and a way out.
//
// An error holds one or more diagnostics; each names where the offending value came from
// (file:line or the command-line override), its YAML path, what is wrong, and hints (a
// did-you-mean, the valid keys or options). `main` prints what() and exits with status 2.
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

#include "registry/config_node.h"

namespace blocklab {

struct Diagnostic {
  Source where;              // origin of the offending value (may be unknown)
  std::string path;          // YAML path, e.g. "model.mixer.heads"; may be empty
  std::string message;       // what is wrong, one line
  std::vector<std::string> hints;  // "did you mean 'lr'?", "valid keys: ..."

  // "conf/x.yaml:3: trainer.lr: expected a float, got string 'abc'\n  did you mean ...\n"
  std::string format() const;
};

class ConfigError : public std::runtime_error {
 public:
  explicit ConfigError(std::vector<Diagnostic> diagnostics);
  explicit ConfigError(Diagnostic d) : ConfigError(std::vector<Diagnostic>{std::move(d)}) {}
  // Convenience: message plus optional location and hints.
  ConfigError(std::string message, Source where = {}, std::string path = {},
               std::vector<std::string> hints = {});

  const std::vector<Diagnostic>& diagnostics() const { return diagnostics_; }

 private:
  std::vector<Diagnostic> diagnostics_;
};

// Collects diagnostics so that one report shows every error; throw_if_any() raises them.
class DiagnosticSink {
 public:
  void add(Diagnostic d) { diagnostics_.push_back(std::move(d)); }
  void add(const ConfigError& e);
  bool empty() const { return diagnostics_.empty(); }
  std::size_t size() const { return diagnostics_.size(); }
  void throw_if_any() const;

 private:
  std::vector<Diagnostic> diagnostics_;
};

// Formats several diagnostics as one report (what ConfigError::what() returns).
std::string format_report(const std::vector<Diagnostic>& diagnostics);

}  // namespace blocklab
