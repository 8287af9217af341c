#!/usr/bin/env bash
# End-to-end test of `blocklab sweep --launcher slurm` on a real one-node Slurm cluster
# (one_node_slurm.sh). A 4-task job array runs a tiny sweep; every task must finish, the ledger
# must say done, and the table must have its cells; then a task stopped by USR1 requeues itself
# and resumes. Exit 77 (CTest: skipped) when this is not root or Slurm/munge are not installed
# (scripts/install-deps.sh installs them).
#   usage: tests/slurm/slurm_sweep_test.sh <blocklab binary>
set -euo pipefail
BLOCKLAB=$(readlink -f "${1:?usage: $0 <blocklab binary>}")
say() { printf '[slurm-test] %s\n' "$*"; }
. "$(dirname "$0")/one_node_slurm.sh"
start_one_node_slurm

# 1. the sweep: 2 channel mixers x 2 seeds = a 4-task array, at most 2 at a time
cd "$WORK"
TINY=(model.dim=16 model.depth=1 model.patch=7 dataset.limit_train=256 dataset.limit_test=100
      dataset.val_size=0 trainer.batch_size=32 trainer.epochs=1 trainer.eval_batch_size=100)
"$BLOCKLAB" sweep vit_fmnist "${TINY[@]}" model.channel.type=mlp,glu seed=0,1 \
  --launcher slurm --parallel 2 --root "$WORK/sweeps" >"$WORK/submit.out" 2>"$WORK/submit.err"
cat "$WORK/submit.err"
JOB=$(tail -n 1 "$WORK/submit.out")
SWEEP=$(ls -d "$WORK"/sweeps/*)
grep -q "^#SBATCH --array=0-3%2$" "$SWEEP/slurm/sweep.sbatch"
say "submitted array job $JOB"
wait_for_job "$JOB" 120

# 2. every task ran its job; the ledger and the table agree
"$BLOCKLAB" status "$SWEEP" | tee "$WORK/status.txt"
grep -q "4 jobs: 4 done" "$WORK/status.txt"
[ "$(ls "$SWEEP"/slurm/*.out | wc -l)" -eq 4 ]
"$BLOCKLAB" table "$SWEEP" --rows model.channel.type --cols trainer.lr --metric test/acc --format csv \
  >"$WORK/table.csv"
cat "$WORK/table.csv"
[ "$(grep -c ',2,0,0' "$WORK/table.csv")" -eq 2 ]  # two cells, n=2 each, nothing failed
ls "$SWEEP"/tables/*.md "$SWEEP"/plots/*.png >/dev/null
say "4 array tasks done, table with 2 cells of n=2"

# 3. Requeue: SIGUSR1 to the batch shell (what --signal=B:USR1@120 sends before the time limit)
# reaches the run, which checkpoints and exits 75; the task requeues itself and the job
# finishes on its second attempt, resumed from the checkpoint.
"$BLOCKLAB" sweep vit_fmnist "${TINY[@]}" dataset.limit_train=8192 trainer.log_every=4 seed=7 \
  --launcher slurm --root "$WORK/sweeps2" >"$WORK/submit2.out" 2>/dev/null
JOB2=$(tail -n 1 "$WORK/submit2.out")
SWEEP2=$(ls -d "$WORK"/sweeps2/*)
for i in $(seq 400); do
  run=$(cat "$SWEEP2"/jobs/*/run_dir.txt 2>/dev/null || true)
  [ -n "$run" ] && grep -q '"step": 12,' "$run/metrics.jsonl" 2>/dev/null && break
  [ "$i" -eq 400 ] && { say "the second sweep's run never started"; exit 1; }
  sleep 0.1
done
scancel --batch --signal=USR1 "${JOB2}_0"
for i in $(seq 600); do
  [ -z "$(squeue -h -j "$JOB2" 2>/dev/null)" ] && grep -q '"state": "done"' "$SWEEP2"/jobs/*/state.json && break
  # Slurm holds a requeued job back for a while (BeginTime); let it start in 2 s. Not at once:
  # slurmd refuses a job started in the same second its old credential was revoked ("Job
  # credential revoked"), which a busy machine makes likely.
  squeue -h -j "$JOB2" -o %r 2>/dev/null | grep -q BeginTime && scontrol update JobId="${JOB2}_0" StartTime=now+2
  [ "$i" -eq 600 ] && { say "the requeued task did not finish within 120 s"; squeue; exit 1; }
  sleep 0.2
done
grep -q '"attempts": 2' "$SWEEP2"/jobs/*/state.json
grep -q "resumed at step" "$run/log.txt"
say "passed: USR1 -> checkpoint, exit 75, requeue, resumed and done on attempt 2"
