#include "datasets/series/csv_series.h"

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "datasets/idx_file.h"

namespace blocklab {

namespace {

std::vector<std::string> split_cells(const std::string& line) {
  std::vector<std::string> cells;
  std::stringstream in(line);
  for (std::string cell; std::getline(in, cell, ',');) cells.push_back(cell);
  if (!line.empty() && line.back() == ',') cells.emplace_back();
  return cells;
}

std::string without_cr(std::string line) {
  if (!line.empty() && line.back() == '\r') line.pop_back();
  return line;
}

[[noreturn]] void fail(const SeriesFileContext& context, const std::string& message, bool missing) {
  throw ConfigError(message, context.where, context.path, missing ? context.missing : context.damaged);
}

std::size_t column_index(const std::vector<std::string>& header, const std::string& name, const std::string& file,
                         const SeriesFileContext& context) {
  const auto at = std::find(header.begin(), header.end(), name);
  if (at == header.end()) fail(context, file + " has no column '" + name + "' in its header line", false);
  return static_cast<std::size_t>(at - header.begin());
}

}  // namespace

CsvColumn read_csv_column(const std::string& file, const std::string& value_column, const std::string& label_column,
                          const SeriesFileContext& context) {
  std::ifstream in(file, std::ios::binary);
  if (!in) fail(context, "cannot read " + file + ": file is missing", true);
  std::stringstream bytes;
  bytes << in.rdbuf();
  const std::string text = bytes.str();
  CsvColumn out;
  out.fnv1a = fnv1a(text.data(), text.size());

  std::stringstream lines(text);
  std::string line;
  if (!std::getline(lines, line)) fail(context, file + " is empty: expected a header line", false);
  const std::vector<std::string> header = split_cells(without_cr(line));
  const std::size_t value_at = column_index(header, value_column, file, context);
  const std::size_t label_at = label_column.empty() ? 0 : column_index(header, label_column, file, context);
  for (int number = 2; std::getline(lines, line); ++number) {
    line = without_cr(line);
    if (line.empty()) continue;
    const std::vector<std::string> cells = split_cells(line);
    const std::string where = file + ":" + std::to_string(number);
    if (cells.size() != header.size())
      fail(context,
           where + ": " + std::to_string(cells.size()) + " cells, the header has " + std::to_string(header.size()),
           false);
    char* end = nullptr;
    const double v = std::strtod(cells[value_at].c_str(), &end);
    if (cells[value_at].empty() || *end != '\0')
      fail(context, where + ": '" + cells[value_at] + "' in column '" + value_column + "' is not a number", false);
    out.values.push_back(v);
    if (!label_column.empty()) out.labels.push_back(cells[label_at]);
  }
  if (out.values.empty()) fail(context, file + " holds no data rows", false);
  return out;
}

}  // namespace blocklab
