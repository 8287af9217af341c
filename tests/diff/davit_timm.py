#!/usr/bin/env python3
"""Differential test: blocklab's attention/davit-channel and local/davit-window against timm's
DaViT (timm.models.davit), same weights.

Usage: davit_timm.py <path to blocklab>

  attention/davit-channel  against ChannelAttention (the official code: softmax(k^T v / sqrt(d))
                           applied to q; roles official, scale head) and ChannelAttentionV2
                           (softmax(q^T k s) applied to v; roles paper, scale tokens with its
                           dynamic_scale, scale head without), on plain sequences [B, N, C].
  local/davit-window       against timm's SpatialBlock with its other parts made the identity
                           (both ConvPosEnc convolutions zero, norm1 the identity, no FFN): its
                           output minus its input is the padded window attention. Grids that are
                           multiples of the window and grids that are not (both zero-pad after
                           the norm, before qkv; the padded tokens take part); grids no smaller
                           than the window (timm does not shrink the window, blocklab does).
  export  blocklab's own initial weights -> timm (load_state_dict)
  import  random timm weights -> torch.save -> blocklab --load-state-dict
The outputs must agree to 1e-5 (max abs error, float32) and 1e-12 in float64 (ChannelAttention,
ChannelAttentionV2 with dynamic_scale, a padded window grid). The weight names and layouts are the same on both sides (qkv.weight [3C, C], rows
q | k | v with the heads contiguous in each, qkv.bias, proj.weight, proj.bias).
"""
import sys

import numpy as np
import torch

from common import TOLERANCE, grid_case, max_error_check, run_all, run_block, same_state, set_options, skip_missing

try:
    from timm.models.davit import ChannelAttention, ChannelAttentionV2, SpatialBlock
except ImportError as e:  # the test-only reference; scripts/install-deps.sh installs it
    skip_missing(e)

BLOCKLAB = sys.argv[1]
# Channel attention: (dim, heads, tokens, timm class, blocklab options).
OFFICIAL = {"roles": "official", "scale": "head"}
V2_DYNAMIC = {"roles": "paper", "scale": "tokens"}
V2_STATIC = {"roles": "paper", "scale": "head"}
CHANNEL_CASES = [(48, 3, 50, "v1", OFFICIAL), (32, 2, 9, "v2", V2_DYNAMIC), (32, 4, 30, "v2", V2_STATIC)]
# Window attention: (dim, heads, height, width, window): DaViT's 7 on 14 x 14, non-multiples.
WINDOW_CASES = [(48, 3, 14, 14, 7), (32, 4, 9, 10, 4), (32, 2, 7, 11, 5)]


def torch_dtype(dtype):
    return torch.float64 if dtype == "float64" else torch.float32


def timm_channel(dim, heads, kind, options, state, dtype):
    if kind == "v1":
        module = ChannelAttention(dim, num_heads=heads, qkv_bias=True)
    else:
        module = ChannelAttentionV2(dim, num_heads=heads, qkv_bias=True, dynamic_scale=options["scale"] == "tokens")
    module = module.to(torch_dtype(dtype)).eval()
    module.load_state_dict({k: v.to(torch_dtype(dtype)) for k, v in state.items()})
    return lambda x: module(torch.from_numpy(x))


def timm_window(dim, heads, height, width, window, state, dtype):
    block = SpatialBlock(dim, heads, window_size=window, qkv_bias=True, ffn=False).to(torch_dtype(dtype)).eval()
    block.norm1 = torch.nn.Identity()
    block.drop_path1 = torch.nn.Identity()  # timm 1.0 sets it to None when ffn=False (meant drop_path2)
    with torch.no_grad():
        for cpe in (block.cpe1, block.cpe2):
            cpe.proj.weight.zero_()
            cpe.proj.bias.zero_()
    block.attn.load_state_dict({k: v.to(torch_dtype(dtype)) for k, v in state.items()})

    def run(x):
        b, n, c = x.shape
        image = torch.from_numpy(x).transpose(1, 2).reshape(b, c, height, width)
        return (block(image) - image).flatten(2).transpose(1, 2)
    return run


def random_timm_state(shapes, gen):
    """Weights far from the init, so every bias and head counts."""
    out = {}
    for k, v in shapes.items():
        r = torch.randn(v.shape, generator=gen)
        out[k] = (r * 1.5 / v.shape[1] ** 0.5 if v.dim() == 2 else 0.5 * r).contiguous()
    return out


def both_ways(name, key, args, x, seed, build, check, tmp):
    """export: our init into timm; import: random timm weights into ours."""
    y, state = run_block(BLOCKLAB, key, args + ["--seed", str(seed)], x, tmp)
    with torch.no_grad():
        ok = check("export", y, build(state)(x).numpy())
    theirs = random_timm_state(state, torch.Generator().manual_seed(seed))
    torch.save(theirs, tmp / "in.pt")
    y, state = run_block(BLOCKLAB, key, args + ["--load-state-dict", str(tmp / "in.pt")], x, tmp)
    with torch.no_grad():
        ok &= check("import", y, build(theirs)(x).numpy())
    return ok & same_state(f"import {name}", state, theirs, as_float=True)


def channel_case(case, seed, dtype, tmp, worst):
    dim, heads, tokens, kind, options = case
    name = f"channel {kind} {options} N {tokens} heads {heads} seed {seed} {dtype}"
    x = np.random.default_rng(seed).standard_normal((2, tokens, dim)).astype(dtype)
    args = set_options({"heads": heads, **options}) + ["--dtype", dtype]
    check = max_error_check(name, dtype, worst, TOLERANCE)
    build = lambda state: timm_channel(dim, heads, kind, options, state, dtype)
    return both_ways(name, "attention/davit-channel", args, x, seed, build, check, tmp)


def window_case(case, seed, dtype, tmp, worst):
    dim, heads, height, width, window = case
    name = f"window {height}x{width} window {window} heads {heads} seed {seed} {dtype}"
    x, args = grid_case({"heads": heads, "window": window}, height, width, dim, seed, dtype)
    check = max_error_check(name, dtype, worst, TOLERANCE)
    build = lambda state: timm_window(dim, heads, height, width, window, state, dtype)
    return both_ways(name, "local/davit-window", args, x, seed, build, check, tmp)


def all_cases(tmp, worst):
    ok = True
    for seed in range(2):
        ok &= all([channel_case(c, seed, "float32", tmp, worst) for c in CHANNEL_CASES])
        ok &= all([window_case(c, seed, "float32", tmp, worst) for c in WINDOW_CASES])
    ok &= channel_case(CHANNEL_CASES[0], 7, "float64", tmp, worst)
    ok &= channel_case(CHANNEL_CASES[1], 7, "float64", tmp, worst)
    ok &= window_case(WINDOW_CASES[1], 7, "float64", tmp, worst)
    return ok


def main():
    run_all(all_cases)


if __name__ == "__main__":
    main()
