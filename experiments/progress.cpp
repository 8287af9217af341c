#include "experiments/progress.h"

#include <unistd.h>

#include <cstdio>

namespace blocklab {

Progress::Progress(std::string label, std::int64_t total, bool quiet)
    : label_(std::move(label)), total_(total), quiet_(quiet), tty_(::isatty(STDERR_FILENO) != 0) {
  start_ = last_print_ = std::chrono::steady_clock::now();
}

std::string Progress::format_duration(double seconds) {
  if (seconds < 0 || seconds > 1e7) return "--:--";
  const long s = static_cast<long>(seconds + 0.5);
  char buf[32];
  if (s >= 3600) std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", s / 3600, (s / 60) % 60, s % 60);
  else std::snprintf(buf, sizeof buf, "%ld:%02ld", s / 60, s % 60);
  return buf;
}

std::string Progress::format_rate(double per_second) {
  char buf[32];
  if (per_second >= 10) std::snprintf(buf, sizeof buf, "%.0f/s", per_second);
  else if (per_second >= 1) std::snprintf(buf, sizeof buf, "%.1f/s", per_second);
  else if (per_second * 60 >= 1) std::snprintf(buf, sizeof buf, "%.1f/min", per_second * 60);
  else std::snprintf(buf, sizeof buf, "%.2f/h", per_second * 3600);
  return buf;
}

void Progress::update(std::int64_t done, const std::string& status, double items_per_second) {
  if (quiet_) return;
  const auto now = std::chrono::steady_clock::now();
  if (start_done_ < 0) start_done_ = done, start_ = now;
  const double since_print = std::chrono::duration<double>(now - last_print_).count();
  const bool last = done >= total_;
  if (!last && since_print < (tty_ ? 0.2 : 10.0)) return;
  last_print_ = now;
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  const double rate_steps = elapsed > 0 ? static_cast<double>(done - start_done_) / elapsed : 0;
  const double eta = rate_steps > 0 ? static_cast<double>(total_ - done) / rate_steps : -1;
  char line[512];
  std::snprintf(line, sizeof line, "%s %lld/%lld %3.0f%% | %s | %s | elapsed %s ETA %s", label_.c_str(),
                static_cast<long long>(done), static_cast<long long>(total_),
                total_ > 0 ? 100.0 * static_cast<double>(done) / static_cast<double>(total_) : 0.0, status.c_str(),
                format_rate(items_per_second).c_str(), format_duration(elapsed).c_str(), format_duration(eta).c_str());
  if (tty_) {
    std::fprintf(stderr, "\r\033[K%s", line);
    open_line_ = true;
  } else {
    std::fprintf(stderr, "%s\n", line);
  }
  std::fflush(stderr);
}

void Progress::finish() {
  if (open_line_) std::fprintf(stderr, "\n");
  open_line_ = false;
}

}  // namespace blocklab
