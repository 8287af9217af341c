// The one training loop. A task supplies hooks (task_hooks.h); the loop does the rest, the
// same for every task:
//   - run directory (content-addressed), config, env, log.txt, metrics.jsonl, summary.json;
//   - seeds: the model from (seed, 0x1417), dropout of step k from (seed, 0xd7, k), data from
//     the task's hooks (deterministic in seed, epoch and batch index);
//   - optimizer (no weight decay where the model's blocks declare it) and learning-rate
//     schedule from the `optimizer`, `scheduler` and `trainer` sections;
//   - checkpoints: last (each epoch end, every trainer.checkpoint_every steps, on a stop
//     signal), best (by the task's Selection) and, with trainer.keep_checkpoints K, those of
//     the last K epochs (mmengine's max_keep_ckpts); exact resume with --resume;
//   - weights/final.pt and weights/best.pt, the state dicts Python's torch.load reads;
//   - SIGTERM/SIGUSR1/SIGINT: checkpoint and exit kExitRequeue (75);
//   - a loss that is not finite: the run ends as diverged (exit 3), the last good checkpoint
//     is kept;
//   - evaluation every trainer.val_every epochs, after the last epoch, and when
//     trainer.max_steps stops a run inside an epoch;
//   - progress (steps, rate, ETA) and failures recorded in one line (failure.h).
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "experiments/task.h"
#include "experiments/training/task_hooks.h"
#include "registry/schema.h"

namespace blocklab {

// The `trainer` section the loop reads. `examples` names what a batch holds ("images", for
// the docs); `task_keys` adds the task's own trainer keys (they follow trainer.warmup).
Schema loop_trainer_schema(const std::string& examples, const std::function<void(Schema&)>& task_keys = {});

// Adds the sections the loop reads to a task's schema: optimizer, scheduler and `trainer`.
void add_loop_sections(Schema& task_schema, Schema trainer);

// The loop's settings from an experiment config, with `task_schema`'s trainer section.
LoopSettings read_loop_settings(const ConfigNode& config, const Schema& task_schema);

// The task-registry factory of a task that trains on the loop with the hooks `make_hooks`
// builds. `task_schema` must outlive the factory (a function-local static).
TaskRegistry::Factory loop_task_factory(const Schema& task_schema, HooksFactory make_hooks);

}  // namespace blocklab
