#!/usr/bin/env python3
"""Differential test: blocklab's attention/gpsa against timm's ConViT GPSA, same weights.

Usage: gpsa_timm.py <path to blocklab>

`blocklab block` builds the block, runs it on a .npy input and writes its parameters as a dict
of tensors (torch.load). Both directions are checked, on several random inputs (a 7x7 grid of
49 tokens, no class token: timm's GPSA derives its 7x7 grid from N and ConViT adds the class
token only after its GPSA layers):
  export  blocklab's own initial weights -> timm (load_state_dict, strict)
  import  random timm weights -> torch.save -> blocklab --load-state-dict
The outputs must agree to 1e-5 (max abs error, float32); a float64 run is checked to 1e-12.
This is the pattern for every later differential test: one script per reference, the weight
mapping written out, exit 77 (skipped) only when the reference package is missing.

Weights: ours (MultiHeadAttention + GPSA)     timm GPSA
  qkv.weight [3C, C] rows q | k | v       ->  qk.weight [2C, C] (q | k), v.weight [C, C]
  qkv.bias (qkv_bias=true only)           ->  qk.bias, v.bias
  proj.weight, proj.bias                  ->  proj.weight, proj.bias
  pos_weight [h, 3] (dx, dy, dx^2+dy^2)   ->  pos_proj.weight
  pos_bias [h]                            ->  pos_proj.bias
  gating [h] (lambda_h)                   ->  gating_param
"""
import sys

import numpy as np
import torch

from common import report, run_all, run_block, same_state

try:
    from timm.models.convit import GPSA
except ImportError as e:  # the test-only reference; scripts/install-deps.sh installs it
    print(f"SKIP: timm is not installed ({e}); run scripts/install-deps.sh")
    sys.exit(77)

BLOCKLAB = sys.argv[1]
GRID = 7
TOLERANCE = {"float32": 1e-5, "float64": 1e-12}
CONFIGS = [(64, 4), (72, 9)]  # (dim, heads): 4 heads tile a 2x2 local init, 9 a 3x3


def ours_to_timm(state, dim):
    qkv = state["qkv.weight"]
    out = {"qk.weight": qkv[: 2 * dim], "v.weight": qkv[2 * dim :],
           "proj.weight": state["proj.weight"], "proj.bias": state["proj.bias"],
           "pos_proj.weight": state["pos_weight"], "pos_proj.bias": state["pos_bias"],
           "gating_param": state["gating"]}
    if "qkv.bias" in state:
        out["qk.bias"], out["v.bias"] = state["qkv.bias"][: 2 * dim], state["qkv.bias"][2 * dim :]
    return out


def timm_to_ours(state):
    out = {"qkv.weight": torch.cat([state["qk.weight"], state["v.weight"]]),
           "proj.weight": state["proj.weight"], "proj.bias": state["proj.bias"],
           "pos_weight": state["pos_proj.weight"], "pos_bias": state["pos_proj.bias"],
           "gating": state["gating_param"]}
    if "qk.bias" in state:
        out["qkv.bias"] = torch.cat([state["qk.bias"], state["v.bias"]])
    return {k: v.detach().clone().contiguous() for k, v in out.items()}


def blocklab_block(heads, x, tmp, dtype, extra):
    """Runs `blocklab block attention/gpsa` on x; returns its output and its state dict."""
    args = ["--set", f"heads={heads}", "--grid", f"{GRID}x{GRID}", "--dtype", dtype] + extra
    return run_block(BLOCKLAB, "attention/gpsa", args, x, tmp)


def timm_gpsa(dim, heads, state, dtype):
    torch_dtype = torch.float64 if dtype == "float64" else torch.float32
    m = GPSA(dim, num_heads=heads).to(torch_dtype).eval()
    m.load_state_dict({k: v.to(torch_dtype) for k, v in state.items()}, strict=True)
    return m


def random_timm_state(dim, heads, gen):
    """Weights far from any init, so every term counts: sharp content attention (the Linears at
    1.5 / sqrt(dim), outputs of order 1), peaked positional attention and gates either way."""
    m = GPSA(dim, num_heads=heads)
    scale = {k: 1.5 / dim ** 0.5 for k in ("qk.weight", "v.weight", "proj.weight")}
    return {k: torch.randn(v.shape, generator=gen) * scale.get(k, 1.0) for k, v in m.state_dict().items()}


def check(name, ours, theirs, dtype, worst):
    err = float(np.abs(ours - theirs).max())
    worst[dtype] = max(worst.get(dtype, 0.0), err)
    return report(name, err, TOLERANCE[dtype])


def run_case(dim, heads, seed, dtype, tmp, worst):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, GRID * GRID, dim)).astype(dtype)
    ok = True
    # export: blocklab's initial weights (seeded; with and without the local init) into timm.
    for init in (["--set", "local_init=true"], ["--set", "local_init=false"]):
        y, state = blocklab_block(heads, x, tmp, dtype, ["--seed", str(seed)] + init)
        with torch.no_grad():
            ref = timm_gpsa(dim, heads, ours_to_timm(state, dim), dtype)(torch.from_numpy(x)).numpy()
        ok &= check(f"export dim {dim} heads {heads} seed {seed} {init[1]} {dtype}", y, ref, dtype, worst)
    # import: random timm weights into blocklab; the exported state dict must be what was loaded.
    gen = torch.Generator().manual_seed(seed)
    theirs = random_timm_state(dim, heads, gen)
    torch.save(timm_to_ours(theirs), tmp / "in.pt")
    y, state = blocklab_block(heads, x, tmp, dtype, ["--load-state-dict", str(tmp / "in.pt")])
    with torch.no_grad():
        ref = timm_gpsa(dim, heads, theirs, dtype)(torch.from_numpy(x)).numpy()
    ok &= check(f"import dim {dim} heads {heads} seed {seed} {dtype}", y, ref, dtype, worst)
    ok &= same_state(f"import dim {dim} heads {heads} seed {seed}", state, torch.load(tmp / "in.pt"), as_float=True)
    return ok


def main():
    def cases(tmp, worst):
        ok = all([run_case(dim, heads, seed, "float32", tmp, worst) for dim, heads in CONFIGS for seed in range(3)])
        return run_case(64, 4, 7, "float64", tmp, worst) and ok

    run_all(cases)


if __name__ == "__main__":
    main()
