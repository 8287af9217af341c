// Did-you-mean suggestions and glob matching for keys and registry names.
#pragma once

#include <string>
#include <vector>

namespace blocklab {

// Optimal string alignment distance (Damerau-Levenshtein with adjacent transpositions).
std::size_t edit_distance(const std::string& a, const std::string& b);

// The candidates closest to `word`, best first: within a distance that grows with the word's
// length, plus candidates that contain `word` or whose last path segment equals it.
std::vector<std::string> nearest(const std::string& word, const std::vector<std::string>& candidates,
                                 std::size_t max_results = 3);

// "did you mean 'a'?" / "did you mean one of 'a', 'b'?"; empty when there is nothing close.
std::string did_you_mean(const std::string& word, const std::vector<std::string>& candidates);

// Joins names as "a, b, c" (sorted as given).
std::string join_names(const std::vector<std::string>& names, const std::string& sep = ", ");

// Shell-style glob: '*' any run (also across '/'), '?' one character, '[abc]' / '[!a-z]' sets.
bool glob_match(const std::string& pattern, const std::string& text);

}  // namespace blocklab
