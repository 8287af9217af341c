#include "support_registries.h"

#include "experiments/task.h"

namespace blocklab::testing {

WidgetRegistry& widget_registry() {
  static WidgetRegistry r("testwidget", "test-only components");
  return r;
}

namespace {

Schema widget_schema() {
  Schema s;
  auto& width = s.add_int("width", 64, "channels");
  width.min = 1;
  width.max = 4096;
  auto& heads = s.add_int("heads", 4, "attention heads");
  heads.min = 1;
  heads.max = 64;
  auto& p = s.add_float("dropout", 0.0, "dropout probability");
  p.min = 0.0;
  p.max = 1.0;
  return s;
}

Widget make_widget(const ConfigNode& params, int) {
  ParamReader r(params, widget_registry().info(component_key(params)).schema, "");
  return Widget{component_key(params), r.get_int("width")};
}

BLOCKLAB_REGISTER(widget_registry(), EntryInfo{"mix/dense", "dense test widget", "", "", widget_schema(), "{width: 8}", __FILE__},
                  make_widget);
BLOCKLAB_REGISTER(widget_registry(), EntryInfo{"mix/sparse", "sparse test widget", "", "", widget_schema(), "{}", __FILE__},
                  make_widget);

Schema probe_task_schema() {
  Schema trainer;
  auto& lr = trainer.add_float("lr", 1e-3, "learning rate");
  lr.min = 0.0;
  lr.max = 10.0;
  trainer.add_int("epochs", 10, "passes over the data").min = 1;
  trainer.add_int("warmup", 0, "warm-up steps").min = 0;
  trainer.add_int("batch_size", 128, "examples per step").min = 1;
  Schema s;
  s.add_section("trainer", trainer, "training loop settings");
  s.add_component("model", "testwidget", "mix/dense", "the model");
  s.add_string("tag", "", "free text");
  return s;
}

class ProbeTask : public Task {
 public:
  int run() override { return 0; }
};

BLOCKLAB_REGISTER(task_registry(),
                  EntryInfo{"test/probe", "test-only task", "", "", probe_task_schema(), "{}", __FILE__},
                  [](const ConfigNode&, const RunRequest&) -> std::unique_ptr<Task> {
                    return std::make_unique<ProbeTask>();
                  });

}  // namespace
}  // namespace blocklab::testing
