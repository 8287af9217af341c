"""What the differential tests share: running `blocklab block`, comparing, reporting.

Each test rebuilds a block from a reference library (test-only) and compares it with blocklab's
`block` command on the same weights and inputs; see the scripts next to this file.
"""
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch


def run_block(blocklab, key, args, x, tmp):
    """`blocklab block key <args>` on x (saved as .npy in tmp): its output and its state dict."""
    np.save(tmp / "x.npy", x)
    cmd = [blocklab, "block", key, *args, "--input", str(tmp / "x.npy"), "--output", str(tmp / "y.npy"),
           "--state-dict", str(tmp / "w.pt")]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"FAIL: {' '.join(cmd)} exited {done.returncode}:\n{done.stderr}")
    return np.load(tmp / "y.npy"), torch.load(tmp / "w.pt")  # weights_only=True: a plain dict of tensors


def set_options(options):
    """{name: value} -> ["--set", "name=value", ...]."""
    return [a for name, value in options.items() for a in ("--set", f"{name}={value}")]


def random_state(shapes, buffers, gen, dtype):
    """Weights far from any init: Linears at 1.5 / sqrt(fan_in) (features of order 1), norm
    scales 1 + N(0, 0.3^2), other tensors (biases, LRPE angles, feature maps) N(0, 0.5^2);
    the buffers named in `buffers` as given."""
    out = {}
    for name, t in shapes.items():
        r = torch.randn(t.shape, generator=gen, dtype=torch.float64)
        if name in buffers:
            out[name] = buffers[name]
        elif name.endswith("norm.weight"):
            out[name] = 1 + 0.3 * r
        elif t.dim() == 2:
            out[name] = r * 1.5 / t.shape[1] ** 0.5
        else:
            out[name] = 0.5 * r
    return {k: v.to(dtype).contiguous() for k, v in out.items()}


def report(what, err, tolerance, kind="max abs error"):
    """Prints one comparison's line; True when it is within the tolerance."""
    status = "ok" if err <= tolerance else "FAIL"
    print(f"{status}: {what}: {kind} {err:.3g} (tolerance {tolerance:g})")
    return err <= tolerance


def check_relative(what, ours, references, tolerance, worst, worst_key):
    """ours (numpy) against each reference output {name: tensor}; the error is max |ours - ref|
    / max |ref|, the worst per worst_key kept in `worst`. True when every one is within tolerance."""
    ok = True
    for name, ref in references.items():
        ref = ref.numpy()
        err = float(np.abs(ours - ref).max() / np.abs(ref).max())
        worst[worst_key] = max(worst.get(worst_key, 0.0), err)
        ok &= report(f"{what} vs {name}", err, tolerance, "relative max error")
    return ok


def same_state(what, exported, loaded, as_float=False):
    """The state dict blocklab exported after --load-state-dict must be the one it was given."""
    convert = (lambda t: t.float()) if as_float else (lambda t: t)
    if exported.keys() == loaded.keys() and all(torch.equal(convert(exported[k]), convert(loaded[k])) for k in loaded):
        return True
    print(f"FAIL: {what}: the exported state dict differs from the loaded one")
    return False


def finish(ok, worst, kind="max abs error"):
    """The summary line and the exit status (0: every comparison passed)."""
    print(f"worst {kind}: " + ", ".join(f"{k} {v:.3g}" for k, v in sorted(worst.items())))
    sys.exit(0 if ok else 1)


def run_all(cases, kind="max abs error"):
    """cases(tmp, worst) -> ok, run in a temporary directory; then the summary and the exit."""
    worst = {}
    with tempfile.TemporaryDirectory() as d:
        ok = cases(Path(d), worst)
    finish(ok, worst, kind)


def max_error_check(name, dtype, worst, tolerance):
    """A check(what, ours, theirs) for one case: max abs error against tolerance[dtype], the worst
    per dtype kept in `worst`; True when within it."""
    def check(what, ours, theirs):
        err = float(np.abs(ours - theirs).max())
        worst[dtype] = max(worst.get(dtype, 0.0), err)
        return report(f"{what} {name}", err, tolerance[dtype])
    return check


def run_cases(run_case, cases, float64_case, seeds=2):
    """run_case(case, seed, dtype, tmp, worst) for every case and seed in float32, then one
    float64 case (seed 7); the summary and the exit status."""
    def all_cases(tmp, worst):
        ok = all([run_case(case, seed, "float32", tmp, worst) for case in cases for seed in range(seeds)])
        return run_case(float64_case, 7, "float64", tmp, worst) and ok
    run_all(all_cases)


def grid_case(options, height, width, dim, seed, dtype, batch=2):
    """The input (random tokens [batch, height * width, dim]) and the `blocklab block` arguments
    (options, the grid, the dtype) of a case on a grid."""
    x = np.random.default_rng(seed).standard_normal((batch, height * width, dim)).astype(dtype)
    return x, set_options(options) + ["--grid", f"{height}x{width}", "--dtype", dtype]


# Max abs error allowed against a reference with the same weights, per dtype.
TOLERANCE = {"float32": 1e-5, "float64": 1e-12}


def skip_missing(error, package="timm"):
    """Exit 77 (ctest: skipped) when the test-only reference package is not installed."""
    print(f"SKIP: {package} is not installed ({error}); run scripts/install-deps.sh")
    sys.exit(77)
