"""Data-parallel training (`blocklab run --nproc 2`, Gloo over loopback) against one process:
the same global batch gives the same final weights within 1e-5, a rerun is bit-identical, the
run id records the world size, a kill -9 of rank 1 stops the run as a whole, and --resume then
finishes with the uninterrupted run's weights, bit for bit.

Usage: data_parallel.py <blocklab binary>"""
import os
import signal
import sys
import tempfile
import time

import torch

from run_support import check, run, run_dir, summary


def weights(out):
    return torch.load(os.path.join(run_dir(out), "weights", "final.pt"), weights_only=True)


def ranks_of(launcher_pid):
    """{rank: pid} of the launcher's children, from their environment."""
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = open("/proc/%s/stat" % pid).read()
            if int(stat.rsplit(")", 1)[1].split()[1]) != launcher_pid:
                continue
            env = open("/proc/%s/environ" % pid, "rb").read().split(b"\0")
        except OSError:
            continue
        for entry in env:
            if entry.startswith(b"BLOCKLAB_RANK="):
                found[int(entry.split(b"=")[1])] = int(pid)
    return found


def main(binary):
    tmp = tempfile.mkdtemp(prefix="blocklab-dp-")
    one, two, again = (os.path.join(tmp, n) for n in ("one", "two", "again"))
    run(binary, one, "trainer.epochs=2", "threads=1")
    run(binary, two, "trainer.epochs=2", "--nproc", "2")
    a, b = weights(one), weights(two)
    diff = max((a[k] - b[k]).abs().max().item() for k in a)
    check(list(a) == list(b) and diff < 1e-5, "2 ranks equal 1 process with the same global batch (max |diff| %.2e)" % diff)
    check(summary(two)["final"]["test/acc"] == summary(one)["final"]["test/acc"], "and the same test accuracy")
    check(summary(two)["world_size"] == 2 and summary(two)["run_id"] != summary(one)["run_id"],
          "the run id records the world size")
    run(binary, again, "trainer.epochs=2", "--nproc", "2")
    check(summary(again)["weights_fnv1a64"] == summary(two)["weights_fnv1a64"], "a 2-rank rerun is bit-identical")

    # kill -9 of rank 1 mid-run, then --resume: the uninterrupted run's weights.
    long_run = ["trainer.epochs=12", "trainer.checkpoint_every=4"]
    whole, killed = os.path.join(tmp, "whole"), os.path.join(tmp, "killed")
    run(binary, whole, *long_run, "--nproc", "2")
    p = run(binary, killed, *long_run, "--nproc", "2", background=True)
    deadline = time.time() + 120
    while time.time() < deadline and not os.path.exists(os.path.join(killed, "vit_fmnist")):
        time.sleep(0.005)
    ckpt = None
    while time.time() < deadline and p.poll() is None:
        dirs = os.listdir(os.path.join(killed, "vit_fmnist"))
        ckpt = dirs and os.path.join(killed, "vit_fmnist", dirs[0], "checkpoints", "last.ckpt")
        if ckpt and os.path.exists(ckpt):
            break
        time.sleep(0.005)
    pids = ranks_of(p.pid)
    check(p.poll() is None and sorted(pids) == [0, 1], "a checkpoint exists while both ranks run")
    os.kill(pids[1], signal.SIGKILL)
    _, err = p.communicate(timeout=120)
    check(p.returncode != 0 and "rank 1 was killed by Killed" in err and "--resume" in err,
          "kill -9 of rank 1 stops the run (exit %d): %s" % (p.returncode, err.strip().splitlines()[0]))
    # Rank 0 may notice the broken group before the launcher kills it: it then records the failure.
    status = summary(killed)["status"] if os.path.exists(os.path.join(run_dir(killed), "summary.json")) else "none"
    check(status in ("none", "failed"), "the killed run is not finished (summary: %s)" % status)
    for rank, pid in pids.items():
        check(not os.path.exists("/proc/%d" % pid) or "zombie" in open("/proc/%d/status" % pid).read().lower()
              or open("/proc/%d/stat" % pid).read().split()[2] == "Z", "rank %d is gone" % rank)
    run(binary, killed, *long_run, "--nproc", "2", "--resume")
    check(summary(killed)["weights_fnv1a64"] == summary(whole)["weights_fnv1a64"],
          "--resume after the kill ends with the uninterrupted run's weights (%s)" % summary(whole)["weights_fnv1a64"])
    steps = [l for l in open(os.path.join(run_dir(killed), "metrics.jsonl")) if '"loss"' in l and '"lr"' in l]
    check(len(steps) == len(set(steps)), "metrics.jsonl has each training line once after the resume")

    # A global batch that does not split evenly is refused before any rank starts.
    p = run(binary, os.path.join(tmp, "odd"), "trainer.batch_size=33", "--nproc", "2", expect=2)
    check("does not split into 2 equal shards" in p.stderr, "an odd batch is refused: " + p.stderr.strip().splitlines()[0])


if __name__ == "__main__":
    main(sys.argv[1])
