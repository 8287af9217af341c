#!/usr/bin/env python3
"""Differential test: blocklab's mixer/pooling against timm's PoolFormer token mixer
(timm.models.metaformer.Pooling), which has no weights.

Usage: pooling_timm.py <path to blocklab>

timm's Pooling on an image [B, C, H, W] (average pooling, stride 1, padding K // 2, the padding
not counted, minus the input) against `blocklab block mixer/pooling --grid HxW` on the same pixels
as row-major tokens, with and without a class token (ours leaves prefix tokens at 0).
The outputs must agree to 1e-5 (max abs error, float32) and 1e-12 in float64.
"""
import sys

import numpy as np
import torch

from common import TOLERANCE, grid_case, max_error_check, run_block, run_cases, skip_missing

try:
    from timm.models.metaformer import Pooling
except ImportError as e:  # the test-only reference; scripts/install-deps.sh installs it
    skip_missing(e)

BLOCKLAB = sys.argv[1]
CASES = [(3, 7, 7, 8, 0), (3, 5, 9, 16, 1), (5, 6, 4, 8, 0), (7, 14, 14, 4, 2)]  # (K, H, W, dim, prefix)


def timm_output(pool_size, x, height, width):
    """timm's Pooling on the tokens x [B, H W, C] as an image, back as tokens."""
    b, n, c = x.shape
    image = torch.from_numpy(x).transpose(1, 2).reshape(b, c, height, width)
    with torch.no_grad():
        y = Pooling(pool_size=pool_size).eval()(image)
    return y.reshape(b, c, n).transpose(1, 2).numpy()


def case(c, seed, dtype, tmp, worst):
    pool_size, height, width, dim, prefix = c
    name = f"K {pool_size} {height}x{width} C {dim} prefix {prefix} seed {seed} {dtype}"
    x, args = grid_case({"pool_size": pool_size}, height, width, dim, seed, dtype)
    check = max_error_check(name, dtype, worst, TOLERANCE)
    if prefix:
        cls = np.random.default_rng(seed + 100).standard_normal((x.shape[0], prefix, dim)).astype(dtype)
        y, state = run_block(BLOCKLAB, "mixer/pooling", args + ["--prefix", str(prefix)], np.concatenate([cls, x], 1), tmp)
        ok = check("prefix tokens", y[:, :prefix], np.zeros_like(cls))
        y = y[:, prefix:]
    else:
        y, state = run_block(BLOCKLAB, "mixer/pooling", args, x, tmp)
        ok = True
    if state:
        print(f"FAIL: {name}: mixer/pooling exported weights {sorted(state)}; it has none")
        ok = False
    return check("output", y, timm_output(pool_size, x, height, width)) and ok


if __name__ == "__main__":
    run_cases(case, CASES, (3, 9, 6, 8, 1))
