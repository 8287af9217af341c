#include "analysis/bench_timing.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace blocklab {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

std::vector<std::vector<double>> time_rounds(std::size_t cases, std::int64_t rounds, double min_time,
                                             const std::function<double(std::size_t, bool)>& run,
                                             const std::string& label) {
  std::vector<std::vector<double>> seconds(cases);
  std::vector<std::int64_t> calls(cases, 1);
  for (std::int64_t r = -1; r < rounds; ++r) {  // round -1: warm-up, not counted; it sets the calls
    for (std::size_t i = 0; i < cases; ++i) {
      const double first = run(i, r >= 0);
      double total = first;
      for (std::int64_t c = 1; c < calls[i]; ++c) total += run(i, r >= 0);
      if (r < 0) calls[i] = std::clamp<std::int64_t>(std::llround(std::ceil(min_time / first)), 1, 1000);
      if (r >= 0) seconds[i].push_back(total / static_cast<double>(calls[i]));
    }
    std::fprintf(stderr, "%s: round %lld of %lld done\n", label.c_str(), static_cast<long long>(r + 1),
                 static_cast<long long>(rounds));
  }
  return seconds;
}

std::string ratio_over_rounds(std::int64_t n, const std::vector<double>& a, const std::vector<double>& b) {
  std::vector<double> ratios;
  for (std::size_t r = 0; r < a.size() && r < b.size(); ++r) ratios.push_back(a[r] / b[r]);
  if (ratios.empty()) return "";
  const auto [low, high] = std::minmax_element(ratios.begin(), ratios.end());
  char text[64];
  std::snprintf(text, sizeof text, "%lld: %.2f (%.2f-%.2f)  ", static_cast<long long>(n), median(ratios), *low, *high);
  return text;
}

}  // namespace blocklab
