// Test-only registries: a component kind and a task whose schemas exercise validation
// without depending on which real blocks exist.
#pragma once

#include "registry/registry.h"

namespace blocklab::testing {

struct Widget {
  std::string key;
  std::int64_t width = 0;
};
using WidgetRegistry = Registry<Widget, int>;
WidgetRegistry& widget_registry();  // kind "testwidget": mix/dense, mix/sparse

}  // namespace blocklab::testing
