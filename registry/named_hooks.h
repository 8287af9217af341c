// Functions by registry key, for hooks that only some entries of a registry have (a dataset's
// planner, a task's checks between values). Filled at static initialisation, next to the
// entry's registration; looked up by the entry's key.
#pragma once

#include <map>
#include <string>
#include <utility>

namespace blocklab {

template <class F>
class NamedHooks {
 public:
  bool add(const std::string& key, F hook) {
    hooks_[key] = std::move(hook);
    return true;
  }
  const F* find(const std::string& key) const {
    const auto it = hooks_.find(key);
    return it == hooks_.end() ? nullptr : &it->second;
  }

 private:
  std::map<std::string, F> hooks_;
};

}  // namespace blocklab
