// The timing discipline shared by the `bench` commands (bench_mixers.cpp, bench_scan.cpp,
// bench_vit.cpp): every case is timed in each of a few rounds and the median over rounds is
// reported. Each round runs every case in turn, so that machine noise and a drift of its speed
// (other load, clocks) hit them alike. One measurement repeats the call until it has taken
// --min-time seconds and takes the mean (the count is fixed in an untimed warm-up round, as
// Python's timeit.autorange does): a call of a few ms alone is at the mercy of the scheduler's
// hiccups, while a call longer than --min-time is measured once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace blocklab {

// The middle value (the upper one of an even count); v not empty.
double median(std::vector<double> v);

// Seconds per call of each case in each timed round: [case][round]. `run(i, timed)` runs case i
// once and returns its seconds (`timed` is false in the warm-up round). After each round a
// progress line "<label>: round r of R done" goes to stderr.
std::vector<std::vector<double>> time_rounds(std::size_t cases, std::int64_t rounds, double min_time,
                                             const std::function<double(std::size_t, bool)>& run,
                                             const std::string& label);

// "N: median (min-max)  " of the ratios a[r] / b[r] within each round over the rounds (e.g. the
// time at N over the time at N/4), so that a slow drift of the machine cancels; "" without rounds.
std::string ratio_over_rounds(std::int64_t n, const std::vector<double>& a, const std::vector<double>& b);

}  // namespace blocklab
