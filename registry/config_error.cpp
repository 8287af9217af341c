#include "registry/config_error.h"

namespace blocklab {

std::string Diagnostic::format() const {
  std::string out;
  if (where.known()) out += where.text() + ": ";
  if (!path.empty()) out += path + ": ";
  out += message + "\n";
  for (const auto& h : hints) out += "  " + h + "\n";
  return out;
}

std::string format_report(const std::vector<Diagnostic>& diagnostics) {
  std::string out;
  if (diagnostics.size() > 1)
    out += std::to_string(diagnostics.size()) + " errors in the configuration:\n";
  for (std::size_t i = 0; i < diagnostics.size(); ++i) {
    if (diagnostics.size() > 1) out += "[" + std::to_string(i + 1) + "] ";
    out += diagnostics[i].format();
  }
  return out;
}

ConfigError::ConfigError(std::vector<Diagnostic> diagnostics)
    : std::runtime_error(format_report(diagnostics)), diagnostics_(std::move(diagnostics)) {}

ConfigError::ConfigError(std::string message, Source where, std::string path,
                         std::vector<std::string> hints)
    : ConfigError(Diagnostic{std::move(where), std::move(path), std::move(message), std::move(hints)}) {}

void DiagnosticSink::add(const ConfigError& e) {
  for (const auto& d : e.diagnostics()) diagnostics_.push_back(d);
}

void DiagnosticSink::throw_if_any() const {
  if (!diagnostics_.empty()) throw ConfigError(diagnostics_);
}

}  // namespace blocklab
