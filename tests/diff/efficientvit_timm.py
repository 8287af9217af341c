#!/usr/bin/env python3
"""Differential test: blocklab's attention/cascaded-group against timm's EfficientViT (MSRA)
LocalWindowAttention (window padding and partition around CascadedGroupAttention), same weights.

Usage: efficientvit_timm.py <path to blocklab>

timm's LocalWindowAttention on a grid [B, C, H, W] (eval mode: BatchNorm with running
statistics), against `blocklab block attention/cascaded-group --grid HxW` on the same tokens in
row-major order: a grid equal to the window, grids of several windows, grids that need padding
(square and rectangular), and a grid smaller than the window.
  export  blocklab's own initial weights (zero_init false) -> timm (load_state_dict)
  import  random timm weights and BN running statistics -> torch.save -> blocklab --load-state-dict
The outputs must agree to 1e-5 (max abs error, float32); a float64 run is checked to 1e-12.

Weights: ours                                    timm LocalWindowAttention
  qkvs.{j}.conv.weight [2 d_k + C/h, C/h]     ->  attn.qkvs.{j}.conv.weight [.., .., 1, 1]
  qkvs.{j}.bn.*, dws.{j}.conv.weight, dws.{j}.bn.*  attn.qkvs.{j}.bn.*, attn.dws.{j}.*
  proj.conv.weight [C, C], proj.bn.*          ->  attn.proj.1.conv.weight [C, C, 1, 1], attn.proj.1.bn.*
  attention_biases [h, M^2] at |dy| M + |dx|  ->  attn.attention_biases [h, r^2] at |dy| r + |dx|,
                                                  r = min(M, resolution): on a grid smaller than
                                                  the window timm sizes its table to the grid
timm's val_dim is attn_ratio * key_dim: attn_ratio = (C / h) / d_k makes it C / h, as
EfficientViT's own models do. timm's window is min(window, resolution) on both sides; resolution
is the larger grid side here, which agrees with blocklab's per-side rule on these grids.
"""
import sys

import numpy as np
import torch

from common import TOLERANCE, grid_case, max_error_check, run_block, run_cases, same_state, skip_missing

try:
    from timm.models.efficientvit_msra import LocalWindowAttention
except ImportError as e:  # the test-only reference; scripts/install-deps.sh installs it
    skip_missing(e)

BLOCKLAB = sys.argv[1]
# (dim, heads, key_dim, kernel, window, height, width): one window; EfficientViT-M0's first
# stage (64, 4 heads, d_k 16, 5 x 5, window 7) on 14 x 14; padding to whole windows (square and
# rectangular); a grid smaller than the window.
CASES = [(32, 2, 8, 3, 4, 4, 4), (64, 4, 16, 5, 7, 14, 14), (32, 4, 4, 5, 4, 9, 9), (24, 3, 4, 3, 3, 5, 7),
         (32, 2, 8, 5, 7, 5, 5)]


def table_side(window, height, width):
    return min(window, max(height, width))


def ours_to_timm(state, window, side):
    out = {}
    for k, v in state.items():
        name = "attn." + k.replace("proj.", "proj.1.")
        if k.endswith("conv.weight") and v.dim() == 2:
            v = v[:, :, None, None]
        if k == "attention_biases" and side < window:
            v = v.view(-1, window, window)[:, :side, :side].reshape(v.shape[0], -1)
        out[name] = v.contiguous()
    return out


def timm_to_ours(state, window, side, gen):
    out = {}
    for k, v in state.items():
        name = k[len("attn."):].replace("proj.1.", "proj.")
        if k.endswith("conv.weight") and "dws." not in k:
            v = v[:, :, 0, 0]
        if name == "attention_biases" and side < window:  # timm's table in the corner of a random full one
            full = torch.randn(v.shape[0], window, window, generator=gen, dtype=v.dtype)
            full[:, :side, :side] = v.view(-1, side, side)
            v = full.reshape(v.shape[0], -1)
        out[name] = v.contiguous()
    return out


def timm_module(case, state, dtype):
    dim, heads, key_dim, kernel, window, height, width = case
    torch_dtype = torch.float64 if dtype == "float64" else torch.float32
    m = LocalWindowAttention(dim, key_dim, heads, attn_ratio=dim / heads / key_dim,
                             resolution=max(height, width), window_resolution=window, kernels=[kernel] * heads)
    m = m.to(torch_dtype).eval()
    m.load_state_dict({k: v.to(torch_dtype) if v.is_floating_point() else v for k, v in state.items()})
    return m


def timm_output(m, x, height, width):
    b, n, c = x.shape
    image = torch.from_numpy(x).view(b, height, width, c).permute(0, 3, 1, 2)
    with torch.no_grad():
        return m(image).permute(0, 2, 3, 1).reshape(b, n, c).numpy()


def random_timm_state(m, gen):
    """Weights and running statistics far from the init, so every term counts."""
    out = {}
    for k, v in m.state_dict().items():
        r = torch.randn(v.shape, generator=gen)
        if k.endswith("num_batches_tracked"):
            out[k] = v
        elif k.endswith("running_var"):
            out[k] = 0.5 + torch.rand(v.shape, generator=gen) * 1.5
        elif k.endswith("conv.weight"):
            out[k] = r * 1.5 / (v[0].numel()) ** 0.5
        else:
            out[k] = 0.5 * r
    return out


def run_case(case, seed, dtype, tmp, worst):
    dim, heads, key_dim, kernel, window, height, width = case
    name = f"{height}x{width} window {window} heads {heads} d_k {key_dim} kernel {kernel} seed {seed} {dtype}"
    options = {"heads": heads, "key_dim": key_dim, "kernel": kernel, "window": window, "zero_init": "false"}
    x, args = grid_case(options, height, width, dim, seed, dtype)
    check = max_error_check(name, dtype, worst, TOLERANCE)
    side = table_side(window, height, width)

    y, state = run_block(BLOCKLAB, "attention/cascaded-group", args + ["--seed", str(seed)], x, tmp)
    ok = check("export", y, timm_output(timm_module(case, ours_to_timm(state, window, side), dtype), x, height, width))
    gen = torch.Generator().manual_seed(seed)
    m = timm_module(case, ours_to_timm(state, window, side), "float64")
    theirs = random_timm_state(m, gen)
    torch.save(timm_to_ours(theirs, window, side, gen), tmp / "in.pt")
    y, state = run_block(BLOCKLAB, "attention/cascaded-group", args + ["--load-state-dict", str(tmp / "in.pt")], x,
                         tmp)
    ok &= check("import", y, timm_output(timm_module(case, theirs, dtype), x, height, width))
    return ok & same_state(f"import {name}", state, torch.load(tmp / "in.pt"), as_float=True)


def main():
    run_cases(run_case, CASES, CASES[2])


if __name__ == "__main__":
    main()
