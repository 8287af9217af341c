#!/usr/bin/env python3
"""Differential test: blocklab's local/maxvit-block and local/maxvit-grid against timm's MaxViT
partition attention (window_partition / grid_partition, AttentionCl with RelPosBias, the
reverse partition), same weights.

Usage: maxvit_timm.py <path to blocklab>

  export  blocklab's own initial weights -> timm's AttentionCl (load_state_dict)
  import  random timm weights -> torch.save -> blocklab --load-state-dict
The outputs must agree to 1e-5 (max abs error, float32); a float64 run is checked to 1e-12.

Weights: ours                                       timm AttentionCl (head_first)
  qkv.weight [3C, C], rows q | k | v, heads     ->  qkv.weight [3C, C], rows per head: q, k, v
    contiguous in each (and qkv.bias)               (and qkv.bias)
  proj.weight, proj.bias                        ->  proj.weight, proj.bias
  relative_position_bias_table [(2P - 1)^2, h]  ->  rel_pos.relative_position_bias_table
"""
import sys
from functools import partial

import torch

from common import TOLERANCE, grid_case, max_error_check, run_block, run_cases, same_state, skip_missing

try:
    from timm.layers import RelPosBias
    from timm.models.maxxvit import AttentionCl, grid_partition, grid_reverse, window_partition, window_reverse
except ImportError as e:  # the test-only reference; scripts/install-deps.sh installs it
    skip_missing(e)

BLOCKLAB = sys.argv[1]
# (key, dim, heads, height, width, side): block and grid attention, MaxViT's 7 on 14 x 14.
CASES = [("local/maxvit-block", 32, 2, 8, 8, 4), ("local/maxvit-grid", 32, 2, 8, 12, 4),
         ("local/maxvit-grid", 48, 3, 14, 14, 7), ("local/maxvit-block", 48, 3, 14, 14, 7)]


def head_order(dim, heads):
    """Row permutation: timm's row r (head h, part p, channel i) is our row p C + h d + i."""
    d = dim // heads
    return torch.tensor([p * dim + h * d + i for h in range(heads) for p in range(3) for i in range(d)])


def ours_to_timm(state, dim, heads):
    order = head_order(dim, heads)
    out = {"qkv.weight": state["qkv.weight"][order], "qkv.bias": state["qkv.bias"][order],
           "proj.weight": state["proj.weight"], "proj.bias": state["proj.bias"],
           "rel_pos.relative_position_bias_table": state["relative_position_bias_table"]}
    return {k: v.contiguous() for k, v in out.items()}


def timm_to_ours(state, dim, heads):
    inverse = torch.argsort(head_order(dim, heads))
    out = {"qkv.weight": state["qkv.weight"][inverse], "qkv.bias": state["qkv.bias"][inverse],
           "proj.weight": state["proj.weight"], "proj.bias": state["proj.bias"],
           "relative_position_bias_table": state["rel_pos.relative_position_bias_table"]}
    return {k: v.contiguous() for k, v in out.items()}


def timm_attention(dim, heads, side, state, dtype):
    torch_dtype = torch.float64 if dtype == "float64" else torch.float32
    m = AttentionCl(dim, dim_head=dim // heads, rel_pos_cls=partial(RelPosBias, window_size=(side, side)))
    m = m.to(torch_dtype).eval()
    missing, unexpected = m.load_state_dict({k: v.to(torch_dtype) for k, v in state.items()}, strict=False)
    assert not unexpected and set(missing) <= {"rel_pos.relative_position_index"}, (missing, unexpected)
    return m


def timm_output(key, m, x, height, width, side):
    b, n, c = x.shape
    image = torch.from_numpy(x).view(b, height, width, c)
    split, merge = (window_partition, window_reverse) if key.endswith("block") else (grid_partition, grid_reverse)
    with torch.no_grad():
        return merge(m(split(image, (side, side))), (side, side), (height, width)).reshape(b, n, c).numpy()


def run_case(case, seed, dtype, tmp, worst):
    key, dim, heads, height, width, side = case
    name = f"{key} {height}x{width} side {side} heads {heads} seed {seed} {dtype}"
    option = "window" if key.endswith("block") else "grid"
    x, args = grid_case({"heads": heads, option: side}, height, width, dim, seed, dtype)
    check = max_error_check(name, dtype, worst, TOLERANCE)
    y, state = run_block(BLOCKLAB, key, args + ["--seed", str(seed)], x, tmp)
    ok = check("export", y, timm_output(key, timm_attention(dim, heads, side, ours_to_timm(state, dim, heads), dtype),
                                        x, height, width, side))
    gen = torch.Generator().manual_seed(seed)
    shapes = AttentionCl(dim, dim_head=dim // heads, rel_pos_cls=partial(RelPosBias, window_size=(side, side)))
    theirs = {k: torch.randn(v.shape, generator=gen) * (1.5 / dim ** 0.5 if k.endswith("weight") else 1.0)
              for k, v in shapes.state_dict().items() if k != "rel_pos.relative_position_index"}
    torch.save(timm_to_ours(theirs, dim, heads), tmp / "in.pt")
    y, state = run_block(BLOCKLAB, key, args + ["--load-state-dict", str(tmp / "in.pt")], x, tmp)
    ok &= check("import", y, timm_output(key, timm_attention(dim, heads, side, theirs, dtype), x, height, width, side))
    return ok & same_state(f"import {name}", state, torch.load(tmp / "in.pt"), as_float=True)


def main():
    run_cases(run_case, CASES, CASES[2])


if __name__ == "__main__":
    main()
