#!/usr/bin/env python3
"""Differential test: blocklab's local/window against timm's Swin window attention, same weights.

Usage: swin_timm.py <path to blocklab>

timm's SwinTransformerBlock._attn (cyclic shift, window partition, WindowAttention with the
relative position bias and the shifted-window mask, window reverse, reverse shift) on a grid
[B, H, W, C], against `blocklab block local/window --grid HxW` on the same tokens in row-major
order. Grids that are multiples of the window: for other grids timm pads after the shift and
Swin's detection code (which blocklab follows) before it.
  export  blocklab's own initial weights -> timm's WindowAttention (load_state_dict)
  import  random timm weights -> torch.save -> blocklab --load-state-dict
The outputs must agree to 1e-5 (max abs error, float32); a float64 run is checked to 1e-12
(timm masks with -100 rather than -inf: exp(-100) is far below either tolerance).

Weights: the names are the same on both sides (qkv.weight [3C, C] rows q | k | v, qkv.bias,
proj.weight, proj.bias, relative_position_bias_table [(2M - 1)^2, h]); timm's
relative_position_index is a buffer it computes itself. On a grid smaller than the window timm
sizes the table to the grid, blocklab reads the centre of its full table: the centre is mapped.
"""
import sys

import numpy as np
import torch

from common import TOLERANCE, grid_case, max_error_check, run_block, run_cases, same_state, skip_missing

try:
    from timm.models.swin_transformer import SwinTransformerBlock
except ImportError as e:  # the test-only reference; scripts/install-deps.sh installs it
    skip_missing(e)

BLOCKLAB = sys.argv[1]
# (dim, heads, height, width, window, shift): Swin's W-MSA and SW-MSA, a 14 x 14 grid of 7 x 7
# windows (Swin's own window), a rectangular grid, and a grid no larger than the window.
CASES = [(32, 2, 8, 8, 4, 0), (32, 2, 8, 8, 4, 2), (48, 3, 14, 14, 7, 3), (32, 4, 6, 9, 3, 1), (32, 2, 5, 5, 7, 3)]
TIMM_BUFFERS = {"relative_position_index"}


def table_centre(table, window, side):
    """Our (2 window - 1)^2 table -> the (2 side - 1)^2 offsets of a grid of `side` <= window
    (timm sizes its table to the clamped window; blocklab keeps the configured one and reads its
    centre)."""
    span, inner, heads = 2 * window - 1, 2 * side - 1, table.shape[1]
    start = window - side
    return table.view(span, span, heads)[start : start + inner, start : start + inner].reshape(inner * inner, heads)


def table_embed(table, window, side, gen):
    """The inverse of table_centre: timm's smaller table in the centre of a random full-size one."""
    span, inner, heads = 2 * window - 1, 2 * side - 1, table.shape[1]
    start = window - side
    full = torch.randn(span, span, heads, generator=gen, dtype=table.dtype)
    full[start : start + inner, start : start + inner] = table.view(inner, inner, heads)
    return full.reshape(span * span, heads)


def timm_block(dim, heads, height, width, window, shift, state, dtype):
    torch_dtype = torch.float64 if dtype == "float64" else torch.float32
    block = SwinTransformerBlock(dim, (height, width), num_heads=heads, window_size=window, shift_size=shift)
    block = block.to(torch_dtype).eval()
    side = min(window, height, width)
    if side < window and state["relative_position_bias_table"].shape[0] == (2 * window - 1) ** 2:
        state = dict(state, relative_position_bias_table=table_centre(state["relative_position_bias_table"], window, side))
    missing, unexpected = block.attn.load_state_dict({k: v.to(torch_dtype) for k, v in state.items()}, strict=False)
    assert not unexpected and set(missing) <= TIMM_BUFFERS, (missing, unexpected)
    return block


def timm_attention(block, x, height, width):
    b, n, c = x.shape
    with torch.no_grad():
        return block._attn(torch.from_numpy(x).view(b, height, width, c)).reshape(b, n, c).numpy()


def random_timm_state(block, gen):
    """Weights far from the init, so the bias and every head count."""
    out = {}
    for k, v in block.attn.state_dict().items():
        if k in TIMM_BUFFERS:
            continue
        r = torch.randn(v.shape, generator=gen)
        out[k] = r * (1.5 / v.shape[1] ** 0.5 if v.dim() == 2 and k != "relative_position_bias_table" else 1.0)
    return out


def run_case(case, seed, dtype, tmp, worst):
    dim, heads, height, width, window, shift = case
    name = f"{height}x{width} window {window} shift {shift} heads {heads} seed {seed} {dtype}"
    x, args = grid_case({"heads": heads, "window": window, "shift": shift}, height, width, dim, seed, dtype)
    check = max_error_check(name, dtype, worst, TOLERANCE)

    y, state = run_block(BLOCKLAB, "local/window", args + ["--seed", str(seed)], x, tmp)
    block = timm_block(dim, heads, height, width, window, shift, state, dtype)
    ok = check("export", y, timm_attention(block, x, height, width))
    gen = torch.Generator().manual_seed(seed)
    theirs = random_timm_state(block, gen)
    ours = dict(theirs)
    side = min(window, height, width)
    if side < window:
        ours["relative_position_bias_table"] = table_embed(theirs["relative_position_bias_table"], window, side, gen)
    torch.save({k: v.contiguous() for k, v in ours.items()}, tmp / "in.pt")
    y, state = run_block(BLOCKLAB, "local/window", args + ["--load-state-dict", str(tmp / "in.pt")], x, tmp)
    block = timm_block(dim, heads, height, width, window, shift, theirs, dtype)
    ok &= check("import", y, timm_attention(block, x, height, width))
    return ok & same_state(f"import {name}", state, torch.load(tmp / "in.pt"), as_float=True)


def main():
    run_cases(run_case, CASES, CASES[2])


if __name__ == "__main__":
    main()
