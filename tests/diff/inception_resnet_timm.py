#!/usr/bin/env python3
"""Differential test: blocklab's block/inception-resnet against timm's Inception-ResNet-v2 blocks
(timm.models.inception_resnet_v2: Block35, Block17, Block8) at the paper's widths, same weights.

Usage: inception_resnet_timm.py <path to blocklab>

timm's block on the image [B, C, H, W] in eval mode (BatchNorm with running statistics), built
with InceptionResnetV2's own conv_block (ConvNormAct: conv without bias, no padding unless given,
BatchNorm eps 1e-3, ReLU), against `blocklab block block/inception-resnet --grid HxW` on the same
tokens in row-major order (`blocklab block` taking entries of the block registry: tokens
[B, P + H W, C] with --grid and --prefix). The state dicts have the same names and shapes on both
sides (branch0.conv.weight [32, 320, 1, 1], branch1.1.conv.weight [160, 128, 1, 7],
branch2.0.bn.running_var, conv2d.weight [320, 128, 1, 1], conv2d.bias, num_batches_tracked, ...):
no mapping.
  export  blocklab's own initial weights -> timm (load_state_dict, strict)
  import  random timm weights and BN running statistics -> torch.save -> blocklab --load-state-dict
Cases: A (Block35) at 320 with s 0.17, B (Block17) at 1088 with s 0.10, C (Block8) at 2080 with
s 0.20 (blocklab's defaults for the variants, not passed), and the network's last Block8 (s 1, no
ReLU); square and rectangular grids (1x7 / 7x1 kernels cross the borders); prefix tokens, which
must come out unchanged.
The error is relative, max |ours - timm| / max |timm| (the 1x1 convolutions sum over up to 2080
channels): 1e-5 in float32, 1e-12 in float64.
"""
import sys
from functools import partial

import numpy as np
import torch

from common import grid_case, report, run_all, run_block, same_state, skip_missing

try:
    from timm.layers import ConvNormAct
    from timm.models.inception_resnet_v2 import Block8, Block17, Block35
except ImportError as e:  # the test-only reference; scripts/install-deps.sh installs it
    skip_missing(e)

BLOCKLAB = sys.argv[1]
KEY = "block/inception-resnet"
TOLERANCE = {"float32": 1e-5, "float64": 1e-12}
# InceptionResnetV2's conv_block: BasicConv2d = Conv (no bias) + BN (eps 1e-3) + ReLU.
CONV_BLOCK = partial(ConvNormAct, padding=0, norm_layer="batchnorm2d", act_layer="relu",
                     norm_kwargs=dict(eps=1e-3), act_kwargs=dict(inplace=True))
# (name, dim, blocklab options, timm block, its arguments, height, width, prefix tokens)
CASES = [("A", 320, {"variant": "a"}, Block35, dict(scale=0.17), 7, 6, 0),
         ("B", 1088, {"variant": "b"}, Block17, dict(scale=0.10), 9, 8, 1),
         ("C", 2080, {"variant": "c"}, Block8, dict(scale=0.20), 5, 5, 0),
         ("C last", 2080, {"variant": "c", "residual_scale": 1.0, "activation": "false"}, Block8,
          dict(scale=1.0, no_relu=True), 4, 6, 2)]


def torch_dtype(dtype):
    return torch.float64 if dtype == "float64" else torch.float32


def timm_module(case, state, dtype):
    _, _, _, block, kwargs, _, _, _ = case
    m = block(conv_block=CONV_BLOCK, **kwargs).to(torch_dtype(dtype)).eval()
    m.load_state_dict({k: v.to(torch_dtype(dtype)) if v.is_floating_point() else v for k, v in state.items()})
    return m


def timm_output(m, x, height, width, prefix):
    """timm's block on the grid tokens of x [B, P + H W, C] (row-major) -> [B, H W, C]."""
    b, _, c = x.shape
    grid = torch.from_numpy(np.ascontiguousarray(x[:, prefix:]))
    image = grid.view(b, height, width, c).permute(0, 3, 1, 2)
    with torch.no_grad():
        return m(image).permute(0, 2, 3, 1).reshape(b, height * width, c).numpy()


def random_timm_state(m, gen):
    """Weights and BN running statistics far from the init (float64), so every term counts:
    convolutions 1.5 / sqrt(fan_in), BN scales 1 + N(0, 0.3^2), running variances in [0.5, 2],
    biases and running means N(0, 0.5^2)."""
    out = {}
    for k, v in m.state_dict().items():
        r = torch.randn(v.shape, generator=gen, dtype=torch.float64)
        if k.endswith("num_batches_tracked"):
            out[k] = v.clone()
        elif k.endswith("running_var"):
            out[k] = 0.5 + 1.5 * torch.rand(v.shape, generator=gen, dtype=torch.float64)
        elif k.endswith("bn.weight"):
            out[k] = 1 + 0.3 * r
        elif v.dim() == 4:
            out[k] = r * 1.5 / v[0].numel() ** 0.5
        else:
            out[k] = 0.5 * r
    return out


def compare(what, ours, theirs, x, prefix, dtype, worst):
    """ours [B, P + H W, C] against timm's grid output: relative error on the grid, prefix unchanged."""
    err = float(np.abs(ours[:, prefix:] - theirs).max() / np.abs(theirs).max())
    worst[dtype] = max(worst.get(dtype, 0.0), err)
    ok = report(what, err, TOLERANCE[dtype], "relative max error")
    if prefix and not np.array_equal(ours[:, :prefix], x[:, :prefix]):
        print(f"FAIL: {what}: the prefix tokens changed")
        ok = False
    return ok


def run_case(case, seed, dtype, tmp, worst):
    name_, dim, options, _, _, height, width, prefix = case
    name = f"{name_} C {dim} {height}x{width} prefix {prefix} seed {seed} {dtype}"
    x, args = grid_case(options, height, width, dim, seed, dtype)
    if prefix:  # prefix tokens before the grid
        rng = np.random.default_rng(seed + 100)
        x = np.concatenate([rng.standard_normal((x.shape[0], prefix, dim)).astype(dtype), x], axis=1)
        args += ["--prefix", str(prefix)]

    y, state = run_block(BLOCKLAB, KEY, args + ["--seed", str(seed)], x, tmp)
    ok = compare(f"export {name}", y, timm_output(timm_module(case, state, dtype), x, height, width, prefix), x,
                 prefix, dtype, worst)
    theirs = random_timm_state(timm_module(case, state, "float64"), torch.Generator().manual_seed(seed))
    loaded = {k: (v.to(torch_dtype(dtype)) if v.is_floating_point() else v).contiguous() for k, v in theirs.items()}
    torch.save(loaded, tmp / "in.pt")
    y, exported = run_block(BLOCKLAB, KEY, args + ["--load-state-dict", str(tmp / "in.pt")], x, tmp)
    ok &= compare(f"import {name}", y, timm_output(timm_module(case, loaded, dtype), x, height, width, prefix), x,
                  prefix, dtype, worst)
    return ok & same_state(f"import {name}", exported, loaded, as_float=True)


def all_cases(tmp, worst):
    ok = all([run_case(case, seed, "float32", tmp, worst) for case in CASES for seed in range(2)])
    return ok & all([run_case(case, 7, "float64", tmp, worst) for case in (CASES[1], CASES[3])])


if __name__ == "__main__":
    run_all(all_cases, "relative max error")
