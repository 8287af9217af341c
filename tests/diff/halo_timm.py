#!/usr/bin/env python3
"""Differential test: blocklab's local/halo against timm's HaloAttn, same weights.

Usage: halo_timm.py <path to blocklab>

timm's HaloAttn (HaloNet has no official code; timm's is the reference in practice) on an image
[B, C, H, W], against `blocklab block local/halo --grid HxW` on the same pixels as row-major
tokens. timm has no output projection: blocklab's W_O is set to the identity.
  export  blocklab's own initial q/k/v and relative tables -> timm
  import  random timm weights -> torch.save -> blocklab --load-state-dict
The outputs must agree to 1e-5 (max abs error, float32); a float64 run is checked to 1e-12.

Weights: ours                                   timm HaloAttn
  qkv.weight [3C, C] rows q | k | v (heads     q.weight [C, C, 1, 1];
    contiguous in each)                    ->   kv.weight [2C, C, 1, 1], per head k then v
  height_rel, width_rel [2 W - 1, d]       ->   pos_embed.height_rel, pos_embed.width_rel
  proj.weight = I, proj.bias = 0                (none)
"""
import sys

import numpy as np
import torch

from common import TOLERANCE, grid_case, max_error_check, run_block, run_cases, same_state, skip_missing

try:
    from timm.layers.halo_attn import HaloAttn
except ImportError as e:  # the test-only reference; scripts/install-deps.sh installs it
    skip_missing(e)

BLOCKLAB = sys.argv[1]
CASES = [(32, 2, 8, 8, 4, 1), (32, 4, 12, 8, 4, 2), (48, 3, 14, 14, 7, 3)]  # (dim, heads, H, W, block, halo)


def ours_to_timm(state, dim, heads):
    d = dim // heads
    w = state["qkv.weight"]
    q, k, v = w[:dim], w[dim : 2 * dim], w[2 * dim :]
    kv = torch.cat([torch.cat([k[h * d : (h + 1) * d], v[h * d : (h + 1) * d]]) for h in range(heads)])
    return {"q.weight": q[:, :, None, None], "kv.weight": kv[:, :, None, None],
            "pos_embed.height_rel": state["height_rel"], "pos_embed.width_rel": state["width_rel"]}


def timm_to_ours(state, dim, heads):
    d = dim // heads
    kv = state["kv.weight"][:, :, 0, 0].view(heads, 2, d, dim)
    qkv = torch.cat([state["q.weight"][:, :, 0, 0], kv[:, 0].reshape(dim, dim), kv[:, 1].reshape(dim, dim)])
    return {"qkv.weight": qkv, "proj.weight": torch.eye(dim), "proj.bias": torch.zeros(dim),
            "height_rel": state["pos_embed.height_rel"], "width_rel": state["pos_embed.width_rel"]}


def timm_halo(dim, heads, block, halo, state, dtype):
    torch_dtype = torch.float64 if dtype == "float64" else torch.float32
    m = HaloAttn(dim, num_heads=heads, block_size=block, halo_size=halo).to(torch_dtype).eval()
    m.load_state_dict({k: v.to(torch_dtype) for k, v in state.items()}, strict=True)
    return m


def timm_output(m, x, height, width):
    b, n, c = x.shape
    image = torch.from_numpy(x).transpose(1, 2).reshape(b, c, height, width)
    with torch.no_grad():
        return m(image).reshape(b, c, n).transpose(1, 2).numpy()


def run_case(case, seed, dtype, tmp, worst):
    dim, heads, height, width, block, halo = case
    name = f"{height}x{width} block {block} halo {halo} heads {heads} seed {seed} {dtype}"
    x, args = grid_case({"heads": heads, "block": block, "halo": halo}, height, width, dim, seed, dtype)
    check = max_error_check(name, dtype, worst, TOLERANCE)

    # export: blocklab's initial weights with the identity as W_O (loaded back into blocklab).
    _, state = run_block(BLOCKLAB, "local/halo", args + ["--seed", str(seed)], x, tmp)
    state = dict(state, **{"proj.weight": torch.eye(dim), "proj.bias": torch.zeros(dim)})
    torch.save({k: v.contiguous() for k, v in state.items()}, tmp / "in.pt")
    y, _ = run_block(BLOCKLAB, "local/halo", args + ["--load-state-dict", str(tmp / "in.pt")], x, tmp)
    ok = check("export", y, timm_output(timm_halo(dim, heads, block, halo, ours_to_timm(state, dim, heads), dtype),
                                        x, height, width))
    # import: random timm weights (q, kv at 1.5 / sqrt(C), tables at 1) into blocklab.
    gen = torch.Generator().manual_seed(seed)
    theirs = {k: torch.randn(v.shape, generator=gen) * (1.5 / dim ** 0.5 if v.dim() == 4 else 1.0)
              for k, v in HaloAttn(dim, num_heads=heads, block_size=block, halo_size=halo).state_dict().items()}
    ours = {k: v.contiguous() for k, v in timm_to_ours(theirs, dim, heads).items()}
    torch.save(ours, tmp / "in.pt")
    y, state = run_block(BLOCKLAB, "local/halo", args + ["--load-state-dict", str(tmp / "in.pt")], x, tmp)
    ok &= check("import", y, timm_output(timm_halo(dim, heads, block, halo, theirs, dtype), x, height, width))
    return ok & same_state(f"import {name}", state, torch.load(tmp / "in.pt"), as_float=True)


def main():
    run_cases(run_case, CASES, CASES[2])


if __name__ == "__main__":
    main()
