"""Tiny runs of the blocklab binary for the interop tests (a ViT on a slice of Fashion-MNIST,
seconds each), and readers for what they leave behind."""
import glob
import json
import os
import subprocess
import sys

TINY = ["model.dim=16", "model.depth=1", "model.patch=7", "model.mixer.heads=2", "dataset.limit_train=512",
        "dataset.limit_test=200", "dataset.val_size=0", "trainer.batch_size=32", "trainer.log_every=4",
        "trainer.eval_batch_size=100"]


def run(binary, out, *extra, expect=0, background=False):
    """`blocklab run vit_fmnist -q output_dir=<out>` with the tiny overrides and `extra`."""
    args = [binary, "run", "vit_fmnist", "-q", "output_dir=" + out] + TINY + list(extra)
    if background:
        return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    p = subprocess.run(args, capture_output=True, text=True)
    if p.returncode != expect:
        sys.exit("FAIL: %s exited %d (expected %d)\n%s%s" % (" ".join(args), p.returncode, expect, p.stdout, p.stderr))
    return p


def run_dir(out):
    dirs = glob.glob(os.path.join(out, "vit_fmnist", "*"))
    if len(dirs) != 1:
        sys.exit("FAIL: expected one run directory under %s, found %s" % (out, dirs))
    return dirs[0]


def summary(out):
    with open(os.path.join(run_dir(out), "summary.json")) as f:
        return json.load(f)


def check(condition, message):
    if not condition:
        sys.exit("FAIL: " + message)
    print("ok: " + message)
