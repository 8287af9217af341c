// Progress on the terminal for long work: step/total, loss, rate, ETA. On a terminal one
// line is redrawn in place; otherwise (logs, pipes) a line is printed every few seconds.
// Quiet mode (sweeps) prints nothing.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace blocklab {

class Progress {
 public:
  Progress(std::string label, std::int64_t total, bool quiet);
  // Reports `done` of total with a free-form status ("loss 0.41 lr 1.2e-03") and a rate.
  void update(std::int64_t done, const std::string& status, double items_per_second);
  // Ends the in-place line (if any) before other output.
  void finish();
  static std::string format_duration(double seconds);  // "4:05", "1:02:03"
  static std::string format_rate(double per_second);   // "1459/s", "2.5/s", "1.3/min"

 private:
  std::string label_;
  std::int64_t total_;
  bool quiet_;
  bool tty_;
  bool open_line_ = false;
  std::chrono::steady_clock::time_point start_, last_print_;
  std::int64_t start_done_ = -1;
};

}  // namespace blocklab
