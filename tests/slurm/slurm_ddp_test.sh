#!/usr/bin/env bash
# Data-parallel training under a real one-node Slurm cluster (one_node_slurm.sh):
#  1. `srun --ntasks=2 blocklab run` trains one run as 2 ranks (world_size 2 in summary.json),
#     bit for bit the run `blocklab run --nproc 2` makes of the same config: the same world size
#     and threads give the same run. Threads are pinned to 1 on both paths (threads: 0 gives
#     cores / ranks on the node, which the two paths learn from different places).
#  2. `blocklab sweep --launcher slurm --tasks-per-job 2`: each job of a 2-point array runs
#     under srun as 2 ranks; both finish, each is claimed once (by rank 0), each run has 2
#     ranks, and the seed-0 run has the weights of the run of step 1.
# Exit 77 (CTest: skipped) when this is not root, Slurm/munge are not installed
# (scripts/install-deps.sh installs them) or the machine has fewer than 2 CPUs.
#   usage: tests/slurm/slurm_ddp_test.sh <blocklab binary>
set -euo pipefail
BLOCKLAB=$(readlink -f "${1:?usage: $0 <blocklab binary>}")
say() { printf '[slurm-ddp-test] %s\n' "$*"; }
fail() { say "$*"; exit 1; }
[ "$(nproc)" -ge 2 ] || { say "skipped: 2 ranks need 2 CPUs"; exit 77; }
. "$(dirname "$0")/one_node_slurm.sh"
start_one_node_slurm srun

cd "$WORK"
export GLOO_SOCKET_IFNAME=lo  # the node's one address is loopback; both paths alike
TINY=(model.dim=16 model.depth=1 model.patch=7 dataset.limit_train=256 dataset.limit_test=100
      dataset.val_size=0 trainer.batch_size=32 trainer.epochs=1 trainer.eval_batch_size=100 threads=1)

# The one run directory under an output_dir, and a top-level value of a run's summary.json.
run_dir() { ls -d "$1"/vit_fmnist/*/ | head -n 1; }
summary_value() { sed -n "s/.*\"$2\": \"\{0,1\}\([^,}\"]*\).*/\1/p" "$1/summary.json" 2>/dev/null | head -n 1 || true; }
json_text() { sed -n "s/.*\"$2\": \"\([^\"]*\)\".*/\1/p" "$1" | head -n 1 || true; }  # a string field of a file

# 1. srun --ntasks=2 against --nproc 2, the same config
timeout 180 srun --ntasks=2 --cpus-per-task=1 "$BLOCKLAB" run vit_fmnist -q output_dir="$WORK/srun" "${TINY[@]}" \
  seed=0 >"$WORK/srun.log" 2>&1 || { cat "$WORK/srun.log"; fail "srun --ntasks=2 blocklab run failed"; }
"$BLOCKLAB" run vit_fmnist -q output_dir="$WORK/nproc" "${TINY[@]}" seed=0 --nproc 2 >"$WORK/nproc.log" 2>&1 ||
  { cat "$WORK/nproc.log"; fail "blocklab run --nproc 2 failed"; }
SRUN=$(run_dir "$WORK/srun")
NPROC=$(run_dir "$WORK/nproc")
[ "$(summary_value "$SRUN" status)" = finished ] || fail "the srun run did not finish: $(cat "$SRUN/summary.json")"
[ "$(summary_value "$SRUN" world_size)" = 2 ] || fail "the srun run was not on 2 ranks: $(cat "$SRUN/summary.json")"
grep -q '"threads": 1' "$SRUN/env.json" || fail "the srun run did not use 1 thread: $(cat "$SRUN/env.json")"
WEIGHTS=$(summary_value "$SRUN" weights_fnv1a64)
[ -n "$WEIGHTS" ] && [ "$WEIGHTS" = "$(summary_value "$NPROC" weights_fnv1a64)" ] ||
  fail "srun and --nproc runs differ: $WEIGHTS vs $(summary_value "$NPROC" weights_fnv1a64)"
[ "$(basename "$SRUN")" = "$(basename "$NPROC")" ] || fail "the same config has two run ids: $SRUN $NPROC"
say "srun --ntasks=2 run: world_size 2, weights $WEIGHTS, as with --nproc 2"

# 2. a sweep whose jobs run on 2 tasks each
"$BLOCKLAB" sweep vit_fmnist "${TINY[@]}" seed=0,1 --launcher slurm --tasks-per-job 2 --root "$WORK/sweeps" \
  >"$WORK/submit.out" 2>"$WORK/submit.err" || { cat "$WORK/submit.err"; fail "the sweep was not submitted"; }
JOB=$(tail -n 1 "$WORK/submit.out")
SWEEP=$(ls -d "$WORK"/sweeps/*)
grep -q '^#SBATCH --ntasks=2$' "$SWEEP/slurm/sweep.sbatch" || fail "no --ntasks=2 in the script"
grep -q '^srun --ntasks=2 ' "$SWEEP/slurm/sweep.sbatch" || fail "the script does not start the job under srun"
say "submitted array job $JOB (2 jobs x 2 tasks)"
wait_for_job "$JOB" 180
"$BLOCKLAB" status "$SWEEP" | tee "$WORK/status.txt"
grep -q "2 jobs: 2 done" "$WORK/status.txt" || fail "the sweep did not finish"
for state in "$SWEEP"/jobs/*/state.json; do
  grep -q '"attempts": 1' "$state" || fail "a job was claimed more than once: $(cat "$state")"
  run="$SWEEP/$(json_text "$state" run_dir)"
  [ "$(summary_value "$run" world_size)" = 2 ] || fail "a sweep run was not on 2 ranks: $run"
done
for out in "$SWEEP"/slurm/*.out; do  # rank 1 of each job followed rank 0's run
  grep -q "rank 1 of 2: exit status 0" "$out" || { cat "$out"; fail "no rank 1 in $out"; }
done
first_job=$(head -n 1 "$SWEEP/manifest.jsonl" | sed -n 's/.*"job": "\([0-9a-f]*\)".*/\1/p')  # index 0: seed=0
first_run="$SWEEP/$(json_text "$SWEEP/jobs/$first_job/state.json" run_dir)"
[ "$(summary_value "$first_run" weights_fnv1a64)" = "$WEIGHTS" ] ||
  fail "the sweep's seed-0 run differs from the srun run: $(summary_value "$first_run" weights_fnv1a64)"
[ -z "$(ls -A "$SWEEP/slurm/steps" 2>/dev/null)" ] || fail "the ranks' word files were left: $(ls "$SWEEP/slurm/steps")"
say "passed: 2 jobs x 2 ranks done, each claimed once, seed 0 equal to the srun run"
