// Reading one numeric column of a CSV file with a header row (the vega-datasets series files:
// "date,temp" or "temp,date"), with a 64-bit FNV-1a hash of the file's bytes.
//
// Every problem with a file (missing, unreadable, no such column, a cell that is not a number,
// a row with too few cells) becomes a ConfigError naming the file (and line) and the fix.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

#include "registry/config_error.h"

namespace blocklab {

// Where a file was configured and how to get it back, for error messages.
struct SeriesFileContext {
  Source where;                      // the origin of the setting that chose the file
  std::string path;                  // e.g. "dataset.root"
  std::vector<std::string> missing;  // hints when the file does not exist
  std::vector<std::string> damaged;  // hints when it exists but is unusable
};

struct CsvColumn {
  std::vector<double> values;       // one per data row, in file order
  std::vector<std::string> labels;  // the `label_column` cell of every row (empty when not asked)
  std::uint64_t fnv1a = 0;          // of the whole file
};

// Reads column `value_column` (numbers) and, when `label_column` is not empty, the text of
// that column (e.g. the timestamps) of every data row of `file`.
CsvColumn read_csv_column(const std::string& file, const std::string& value_column, const std::string& label_column,
                          const SeriesFileContext& context);

}  // namespace blocklab
