#!/usr/bin/env python3
"""Differential test: retention/retnet against Microsoft's official RetNet code (torchscale).

Usage: retnet_torchscale.py <path to blocklab>

The reference is torchscale 0.3.0 (PyPI, test-only): MultiScaleRetention
(torchscale/component/multiscale_retention.py) with its position and decay module RetNetRelPos
(torchscale/architecture/retnet.py; that file imports fairscale for wrappers RetNetRelPos does
not use, so fairscale.nn is stubbed for the import). torchscale's current code normalises each
head with an RMSNorm without parameters where the paper (eq. (8)) has a GroupNorm, so blocklab
runs with `norm=rms`. torchscale also rescales each row of the retention (by its absolute sum,
and the decay mask by the root of its row sum); the per-head RMSNorm cancels these up to its
epsilon, so both sides use eps 1e-12.

Weights: ours (retention/retnet)        torchscale MultiScaleRetention
  q.weight, k.weight [C, C]         ->  q_proj.weight, k_proj.weight   (no bias; k scaled d^-1/2)
  v.weight, g.weight [2C, C]        ->  v_proj.weight, g_proj.weight   (value_dim = 2C)
  out.weight [C, 2C]                ->  out_proj.weight
  log_gammas [h] (buffer)           ->  RetNetRelPos.decay = log(1 - 2^(-5-h)) (fixed)
Rotary: RetNetRelPos's angles 10000^-linspace(0, 1, d/2) on channel pairs (2i, 2i+1).

Every blocklab form (parallel, chunked by 64 and by 16) is compared with all three of
torchscale's: parallel, chunkwise recurrent (lengths that are multiples of its chunk) and
recurrent (one token at a time with its incremental state). Both directions: export (blocklab's
seeded weights) and import (random weights -> torch.save -> blocklab --load-state-dict). The
error is max |ours - ref| / max |ref|; torchscale's RMSNorm computes in float32 whatever the
input, so the tolerance is 1e-5 for float32 and float64 runs alike.
Exit 77 (skipped) only when torchscale is missing.
"""
import math
import sys
import types

import numpy as np
import torch

from common import check_relative, random_state, run_all, run_block, same_state, set_options


def import_torchscale():
    stub = types.ModuleType("fairscale.nn")
    stub.checkpoint_wrapper = stub.wrap = lambda module, *args, **kwargs: module
    sys.modules.setdefault("fairscale", types.ModuleType("fairscale"))
    sys.modules.setdefault("fairscale.nn", stub)
    try:
        from torchscale.architecture.retnet import RetNetRelPos
        from torchscale.component.multiscale_retention import MultiScaleRetention
    except ImportError as e:  # the test-only reference; scripts/install-deps.sh installs it
        print(f"SKIP: torchscale is not usable ({e}); run scripts/install-deps.sh")
        sys.exit(77)
    return RetNetRelPos, MultiScaleRetention


RetNetRelPos, MultiScaleRetention = import_torchscale()

BLOCKLAB = sys.argv[1]
TOLERANCE = 1e-5
EPS = 1e-12
TORCHSCALE_CHUNK = 16
SHAPES = [(96, 64, 4), (48, 48, 3), (64, 32, 2)]  # (T, dim, heads): T a multiple of 16 for chunkwise
FORMS = [["--set", "form=parallel"], ["--set", "form=chunked"], ["--set", "form=chunked", "--set", "chunk=16"]]


def torchscale_outputs(state, x, dim, heads):
    """torchscale's parallel, chunkwise and recurrent outputs of MultiScaleRetention on x."""
    args = types.SimpleNamespace(multiway=False, layernorm_eps=EPS, decoder_embed_dim=dim,
                                 decoder_retention_heads=heads, recurrent_chunk_size=TORCHSCALE_CHUNK)
    dtype = x.dtype
    msr = MultiScaleRetention(args, dim, 2 * dim, heads).to(dtype)
    names = {"q_proj": "q", "k_proj": "k", "v_proj": "v", "g_proj": "g", "out_proj": "out"}
    msr.load_state_dict({f"{theirs}.weight": state[f"{ours}.weight"].to(dtype) for theirs, ours in names.items()})
    rel_pos = RetNetRelPos(args)
    t = x.shape[1]
    with torch.no_grad():
        parallel = msr(x, rel_pos(t))
        chunkwise = msr(x, rel_pos(t, chunkwise_recurrent=True), chunkwise_recurrent=True)
        incremental = {}
        steps = [msr(x[:, i : i + 1], rel_pos(i + 1, activate_recurrent=True), incremental_state=incremental)
                 for i in range(t)]
    return {"torchscale parallel": parallel, "torchscale chunkwise": chunkwise,
            "torchscale recurrent": torch.cat(steps, 1)}


def log_gammas(heads):
    return torch.tensor([math.log(1.0 - 2.0 ** (-5 - h)) for h in range(heads)], dtype=torch.float64)


def check(what, ours, references, dtype, worst):
    return check_relative(what, ours, references, TOLERANCE, worst, dtype)


def run_case(shape, seed, dtype, forms, tmp, worst):
    tokens, dim, heads = shape
    torch_dtype = torch.float64 if dtype == "float64" else torch.float32
    x = np.random.default_rng(seed).standard_normal((2, tokens, dim)).astype(dtype)
    options = set_options({"heads": heads, "norm": "rms", "norm_eps": EPS}) + ["--causal", "--dtype", dtype]
    where = f"T {tokens} dim {dim} heads {heads} seed {seed} {dtype}"
    # export: blocklab's seeded initial weights into torchscale.
    y, state = run_block(BLOCKLAB, "retention/retnet", options + ["--seed", str(seed)], x, tmp)
    ok = check(f"export {where}", y, torchscale_outputs(state, torch.from_numpy(x), dim, heads), dtype, worst)
    # import: random weights into blocklab, by each of its forms.
    theirs = random_state(state, {"log_gammas": log_gammas(heads)}, torch.Generator().manual_seed(seed), torch_dtype)
    torch.save(theirs, tmp / "in.pt")
    expected = torchscale_outputs(theirs, torch.from_numpy(x), dim, heads)
    for form in forms:
        y, state = run_block(BLOCKLAB, "retention/retnet", options + ["--load-state-dict", str(tmp / "in.pt")] + form,
                             x, tmp)
        ok &= check(f"import {' '.join(form[1::2])} {where}", y, expected, dtype, worst)
    ok &= same_state(f"import {where}", state, theirs)
    return ok


def main():
    def cases(tmp, worst):
        ok = all([run_case(shape, seed, "float32", FORMS, tmp, worst) for seed, shape in enumerate(SHAPES)])
        return run_case(SHAPES[0], 7, "float64", FORMS[1:2], tmp, worst) and ok

    run_all(cases, "relative max error")


if __name__ == "__main__":
    main()
