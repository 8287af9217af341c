# A real one-node Slurm for the tests in this directory (sourced, not run): munge + slurmctld +
# slurmd started here in the foreground (their own sessions), loopback only, configured through
# $SLURM_CONF in a temp dir (no system file is touched). Recipe: ../shared/notes/slurm-one-node.md.
# The caller defines say() and runs under `set -euo pipefail`; ctest runs these tests one at a
# time (RESOURCE_LOCK slurm_daemons: fixed ports, a shared munged).
#
# start_one_node_slurm [more tools...]: exit 77 (CTest: skipped) when this is not root or Slurm,
# munge or a named tool is missing (scripts/install-deps.sh installs them). Sets WORK (a temp dir,
# removed at exit) and exports SLURM_CONF; the EXIT trap stops the daemons by their pids and, on
# failure, shows their logs and the tail of every Slurm output file under $WORK.

slurm_cleanup() {
  local status=$?
  for pidfile in "$WORK/slurmd.pid" "$WORK/slurmctld.pid"; do
    [ -s "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
  done
  [ -n "$STARTED_MUNGE" ] && kill "$STARTED_MUNGE" 2>/dev/null || true
  sleep 1
  if [ $status -ne 0 ]; then
    say "FAILED; daemon logs:"
    tail -n 20 "$WORK"/*.log 2>/dev/null || true
    find "$WORK" -mindepth 2 -name '*.out' -exec tail -n 20 {} + 2>/dev/null || true
  fi
  rm -rf "$WORK"
  exit $status
}

start_one_node_slurm() {
  for tool in slurmctld slurmd sbatch squeue sinfo munged munge unmunge "$@"; do
    command -v "$tool" >/dev/null || { say "skipped: $tool is not installed"; exit 77; }
  done
  [ "$(id -u)" -eq 0 ] || { say "skipped: needs root to run the Slurm daemons"; exit 77; }

  WORK=$(mktemp -d /tmp/blocklab-slurm.XXXXXX)
  HOST=$(hostname -s)
  STARTED_MUNGE=""
  trap slurm_cleanup EXIT

  # 1. munge (reuse a running one)
  if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    mkdir -p /etc/munge /run/munge /var/lib/munge /var/log/munge
    [ -s /etc/munge/munge.key ] || mungekey -c >/dev/null
    chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge
    chmod 400 /etc/munge/munge.key
    setsid runuser -u munge -- munged --foreground --force >"$WORK/munged.log" 2>&1 &
    STARTED_MUNGE=$!
    for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
  fi
  munge -n | unmunge | grep -q "STATUS: *Success" || { say "munge does not work"; exit 1; }

  # 2. slurm.conf in the temp dir
  mkdir -p "$WORK/state" "$WORK/spool"
  export SLURM_CONF="$WORK/slurm.conf"
  cat >"$SLURM_CONF" <<CONF
ClusterName=blocklabtest
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$WORK/state
SlurmdSpoolDir=$WORK/spool
SlurmctldPidFile=$WORK/slurmctld.pid
SlurmdPidFile=$WORK/slurmd.pid
SlurmctldPort=16817
SlurmdPort=16818
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$(nproc) State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF

  # 3. daemons in the foreground, their own sessions
  setsid slurmctld -D -i >"$WORK/slurmctld.log" 2>&1 &
  sleep 2
  setsid slurmd -D >"$WORK/slurmd.log" 2>&1 &
  for i in $(seq 60); do
    sinfo -h -o %T 2>/dev/null | grep -q idle && break
    [ "$i" -eq 60 ] && { say "the node never became idle"; exit 1; }
    sleep 0.5
  done
  say "slurm is up on $HOST"
}

# Waits until Slurm job $1 (an array: all its tasks) has left the queue; fails after $2 seconds.
wait_for_job() {
  local job=$1 limit=$2
  for i in $(seq $((limit * 2))); do
    [ -z "$(squeue -h -j "$job" 2>/dev/null)" ] && return 0
    sleep 0.5
  done
  say "job $job did not finish within $limit s"
  squeue
  exit 1
}
