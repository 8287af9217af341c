#include "registry/suggest.h"

#include <algorithm>
#include <tuple>

namespace blocklab {

std::size_t edit_distance(const std::string& a, const std::string& b) {
  const std::size_t n = a.size(), m = b.size();
  std::vector<std::vector<std::size_t>> d(n + 1, std::vector<std::size_t>(m + 1));
  for (std::size_t i = 0; i <= n; ++i) d[i][0] = i;
  for (std::size_t j = 0; j <= m; ++j) d[0][j] = j;
  for (std::size_t i = 1; i <= n; ++i) {
    for (std::size_t j = 1; j <= m; ++j) {
      const std::size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[n][m];
}

static std::string last_segment(const std::string& s) {
  const auto p = s.rfind('/');
  return p == std::string::npos ? s : s.substr(p + 1);
}

std::vector<std::string> nearest(const std::string& word, const std::vector<std::string>& candidates,
                                 std::size_t max_results) {
  const std::size_t limit = std::max<std::size_t>(1, (word.size() + 2) / 3);
  std::vector<std::tuple<std::size_t, std::string>> scored;
  for (const auto& c : candidates) {
    std::size_t dist = std::min(edit_distance(word, c), edit_distance(word, last_segment(c)));
    const bool related = !word.empty() && (c.find(word) != std::string::npos || last_segment(c) == word);
    if (dist <= limit || related) scored.emplace_back(related ? std::min<std::size_t>(dist, 1) : dist, c);
  }
  std::stable_sort(scored.begin(), scored.end());
  std::vector<std::string> out;
  for (const auto& [dist, c] : scored) {
    if (out.size() == max_results) break;
    // A clear near miss hides the far ones ("sofmax": softmax, not sigmoid).
    if (dist > std::get<0>(scored.front()) + 2) break;
    if (c != word) out.push_back(c);
  }
  return out;
}

std::string join_names(const std::vector<std::string>& names, const std::string& sep) {
  std::string out;
  for (std::size_t i = 0; i < names.size(); ++i) out += (i ? sep : "") + names[i];
  return out;
}

std::string did_you_mean(const std::string& word, const std::vector<std::string>& candidates) {
  const auto near = nearest(word, candidates);
  if (near.empty()) return {};
  if (near.size() == 1) return "did you mean '" + near[0] + "'?";
  std::vector<std::string> quoted;
  for (const auto& n : near) quoted.push_back("'" + n + "'");
  return "did you mean one of " + join_names(quoted) + "?";
}

static bool glob_at(const char* p, const char* t) {
  for (; *p; ++p, ++t) {
    if (*p == '*') {
      while (p[1] == '*') ++p;
      for (const char* s = t;; ++s) {
        if (glob_at(p + 1, s)) return true;
        if (!*s) return false;
      }
    }
    if (!*t) return false;
    if (*p == '?') continue;
    if (*p == '[') {
      const char* q = p + 1;
      const bool negate = *q == '!' || *q == '^';
      if (negate) ++q;
      bool matched = false;
      bool first = true;
      for (; *q && (*q != ']' || first); ++q, first = false) {
        if (q[1] == '-' && q[2] && q[2] != ']') {
          if (*t >= *q && *t <= q[2]) matched = true;
          q += 2;
        } else if (*q == *t) {
          matched = true;
        }
      }
      if (!*q) return *t == '[' && glob_at(p + 1, t + 1);  // unterminated: literal '['
      if (matched == negate) return false;
      p = q;
      continue;
    }
    if (*p != *t) return false;
  }
  return *t == '\0';
}

bool glob_match(const std::string& pattern, const std::string& text) {
  return glob_at(pattern.c_str(), text.c_str());
}

}  // namespace blocklab
