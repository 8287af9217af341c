#!/usr/bin/env python3
"""Differential test: blocklab's channel/se and channel/eca against timm's SEModule and EcaModule
(timm.layers), same weights, on feature maps [B, C, H, W].

Usage: channel_attention_timm.py <path to blocklab>

  channel/se   SEModule(C, rd_channels=h): fc1, fc2 are 1 x 1 convolutions with bias ([h, C, 1, 1]),
               ours Linears (reduce.weight [h, C], expand.weight [C, h]): the same numbers reshaped.
  channel/eca  EcaModule(C) (kernel from C as the paper's psi; timm keeps k >= 3) and
               EcaModule(kernel_size=k): conv.weight [1, 1, k], ours weight [1, k].
  export  blocklab's own initial weights -> timm;  import  random timm weights -> blocklab.
The outputs must agree to 1e-5 (max abs error, float32) and 1e-12 in float64.
"""
import sys

import numpy as np
import torch

from common import TOLERANCE, max_error_check, run_all, run_block, same_state, set_options, skip_missing

try:
    from timm.layers import EcaModule, SEModule
except ImportError as e:  # the test-only reference; scripts/install-deps.sh installs it
    skip_missing(e)

BLOCKLAB = sys.argv[1]
# (key, channels, height, width, blocklab options)
CASES = [("channel/se", 32, 5, 7, {"hidden": 8}), ("channel/se", 48, 6, 6, {"reduction": 16}),
         ("channel/eca", 32, 5, 7, {}), ("channel/eca", 64, 4, 9, {"kernel": 5})]


def dtype_of(dtype):
    return torch.float64 if dtype == "float64" else torch.float32


def timm_module(key, channels, options, ours_state):
    """timm's module for a case, and the map from our state dict to its state dict."""
    if key == "channel/se":
        hidden = ours_state["reduce.weight"].shape[0]
        module = SEModule(channels, rd_channels=hidden)
        to_timm = lambda s: {"fc1.weight": s["reduce.weight"][:, :, None, None], "fc1.bias": s["reduce.bias"],
                             "fc2.weight": s["expand.weight"][:, :, None, None], "fc2.bias": s["expand.bias"]}
    else:
        module = EcaModule(kernel_size=options["kernel"]) if "kernel" in options else EcaModule(channels)
        to_timm = lambda s: {"conv.weight": s["weight"][:, None, :]}
    return module.eval(), to_timm


def to_ours(key, timm_state):
    if key == "channel/se":
        return {"reduce.weight": timm_state["fc1.weight"][:, :, 0, 0], "reduce.bias": timm_state["fc1.bias"],
                "expand.weight": timm_state["fc2.weight"][:, :, 0, 0], "expand.bias": timm_state["fc2.bias"]}
    return {"weight": timm_state["conv.weight"][:, 0, :]}


def run_timm(module, state, x, dtype):
    module = module.to(dtype_of(dtype))
    module.load_state_dict({k: v.to(dtype_of(dtype)).contiguous() for k, v in state.items()})
    with torch.no_grad():
        return module(torch.from_numpy(x)).numpy()


def case(c, seed, dtype, tmp, worst):
    key, channels, height, width, options = c
    name = f"{key} {options} C {channels} {height}x{width} seed {seed} {dtype}"
    x = np.random.default_rng(seed).standard_normal((2, channels, height, width)).astype(dtype)
    args = set_options(options) + ["--dtype", dtype]
    check = max_error_check(name, dtype, worst, TOLERANCE)
    y, state = run_block(BLOCKLAB, key, args + ["--seed", str(seed)], x, tmp)
    module, to_timm = timm_module(key, channels, options, state)
    ok = check("export", y, run_timm(module, to_timm(state), x, dtype))
    gen = torch.Generator().manual_seed(seed)
    theirs = {k: (torch.randn(v.shape, generator=gen) * 0.7).to(dtype_of(dtype)) for k, v in module.state_dict().items()}
    torch.save({k: v.contiguous() for k, v in to_ours(key, theirs).items()}, tmp / "in.pt")
    y, exported = run_block(BLOCKLAB, key, args + ["--load-state-dict", str(tmp / "in.pt")], x, tmp)
    ok &= check("import", y, run_timm(module, theirs, x, dtype))
    return ok & same_state(f"import {name}", exported, to_ours(key, theirs), as_float=True)


def all_cases(tmp, worst):
    ok = all([case(c, seed, "float32", tmp, worst) for c in CASES for seed in range(2)])
    return ok & all([case(c, 7, "float64", tmp, worst) for c in CASES])


if __name__ == "__main__":
    run_all(all_cases)
