#!/usr/bin/env python3
"""Differential test: blocklab's ssm/mamba and ssm/mamba2 against pure-PyTorch references.

Usage: mamba_ref.py <path to blocklab>

ssm/mamba: mambapy 1.2.0 (PyPI, alxndrTL/mamba.py, pure PyTorch, test-only). Its mambapy/mamba.py
MambaBlock is Mamba's block as the official mamba_simple.py defines it (in_proj -> causal
depthwise conv -> SiLU -> x_proj -> dt_proj, softplus -> selective scan + D skip -> SiLU(z) gate ->
out_proj), with three ways to run the scan, all compared:
  pscan=True    its Blelloch parallel scan (mambapy/pscan.py)
  pscan=False   its sequential loop (selective_scan_seq)
  step          its recurrent step (MambaBlock.step, the cache (h, last d_conv - 1 inputs))
Parameter names map one to one, except the convolution: blocklab's conv.{weight,bias} is
mamba.py's conv1d.{weight,bias} ([E, 1, d_conv], [E]); in_proj.weight [2E, C] (rows u | z),
x_proj.weight [R + 2N, E] (rows dt | B | C), dt_proj.{weight,bias}, A_log [E, N], D [E] and
out_proj.weight are the same. mamba.py computes A = -exp(A_log.float()) and D.float() in float32
whatever the block's dtype, so its tolerance is 1e-5 (relative to the output's scale) for float32
and float64 runs alike.

ssm/mamba2: mambapy's Mamba2 needs mamba_ssm's triton kernels, so the reference is the official
ssd_minimal_discrete (mamba_ssm/modules/ssd_minimal.py: the paper's Listing 1, pure torch + einops),
read from the mamba-ssm 2.3.2.post1 sdist (mamba-ssm cannot be installed without CUDA; its sdist
downloads without building, see MAMBA_SSM_SDIST below), its module-level import of the triton
kernels stubbed. Around it, mamba2_simple.py's unfused forward is rebuilt here from plain torch ops
and blocklab's state dict (one group, ngroups = 1):
  in_proj.weight [E + (E + 2N) + H, C]   rows z | xBC | dt (no bias)
  conv.weight [E + 2N, 1, k], conv.bias  causal depthwise conv1d on xBC (padding k - 1, first T), SiLU
  dt_bias [H], A_log [H], D [H]          dt = softplus(dt + dt_bias), A = -exp(A_log)
  core: ssd_minimal_discrete(x dt, A dt, B, C (repeated over the heads), block_len), + D x
        (T padded with zeros to a multiple of block_len: causal, so the first T outputs stand)
  norm.weight [E]                        RMSNormGated(norm_before_gate=False, eps 1e-5):
                                         rmsnorm(y * SiLU(z)) * w over all E channels (group = E)
  out_proj.weight [C, E]
Its tolerance is 1e-5 in float32 and 1e-10 in float64 (ssd_minimal computes in the input's dtype).
MAMBA_SSM_SDIST (default <repo>/.venv/share/blocklab-references/mamba_ssm-2.3.2.post1.tar.gz):
  pip install --target /tmp/w wheel
  PYTHONPATH=/tmp/w MAMBA_SKIP_CUDA_BUILD=TRUE pip download mamba-ssm==2.3.2.post1 --no-deps \
      --no-binary :all: --no-build-isolation -d .venv/share/blocklab-references

Both directions are checked for each block: export (blocklab's seeded initial weights into the
reference) and import (random weights, far from any init -> blocklab --load-state-dict, by each of
its scans or forms; the exported state dict must be what was loaded). A block whose reference is
missing is skipped with a line; exit 77 (skipped) when both are missing.
"""
import os
import sys
import tarfile
import types
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from common import check_relative, random_state, run_all, run_block, same_state, set_options

BLOCKLAB = sys.argv[1]
REPO = Path(__file__).resolve().parents[2]
SDIST = Path(os.environ.get("MAMBA_SSM_SDIST",
                            REPO / ".venv/share/blocklab-references/mamba_ssm-2.3.2.post1.tar.gz"))


def load_mambapy():
    try:
        from mambapy.mamba import MambaBlock, MambaConfig
        return MambaBlock, MambaConfig
    except ImportError as e:  # the test-only reference; scripts/install-deps.sh installs it
        print(f"SKIP: ssm/mamba: mamba.py (mambapy) is not usable ({e}); run scripts/install-deps.sh")
        return None


def load_ssd_minimal():
    """mamba_ssm/modules/ssd_minimal.py from the sdist, with mamba_ssm.ops.triton.ssd_combined stubbed."""
    try:
        with tarfile.open(SDIST) as tar:
            source = tar.extractfile("mamba_ssm-2.3.2.post1/mamba_ssm/modules/ssd_minimal.py").read().decode()
        import einops  # noqa: F401  (ssd_minimal's one dependency besides torch)
    except (OSError, KeyError, ImportError) as e:
        print(f"SKIP: ssm/mamba2: the mamba-ssm sdist's ssd_minimal.py is not usable ({e}); see this file's doc")
        return None
    stubs = ["mamba_ssm", "mamba_ssm.ops", "mamba_ssm.ops.triton", "mamba_ssm.ops.triton.ssd_combined"]
    saved = {name: sys.modules.get(name) for name in stubs}
    for name in stubs:
        sys.modules[name] = types.ModuleType(name)
    sys.modules[stubs[-1]].mamba_chunk_scan_combined = None  # the triton kernel, unused by the minimal form
    try:
        module = types.ModuleType("ssd_minimal")
        exec(compile(source, "mamba_ssm/modules/ssd_minimal.py", "exec"), module.__dict__)
        return module
    finally:
        for name, m in saved.items():
            sys.modules.pop(name) if m is None else sys.modules.__setitem__(name, m)


# ---- ssm/mamba around mamba.py ---------------------------------------------------------------

MAMBA_SHAPES = [(37, 32, {}), (100, 48, {"d_state": 8, "d_conv": 3}), (21, 16, {"expand": 3, "dt_rank": 5})]
MAMBA_VARIANTS = [["--set", "scan=fused"], ["--set", "scan=reference"]]
RENAMES = {"conv.weight": "conv1d.weight", "conv.bias": "conv1d.bias"}


def mamba_references(mambapy, state, x, dim, options):
    """mamba.py's outputs on x [B, T, C]: {scan: y}."""
    MambaBlock, MambaConfig = mambapy
    config = MambaConfig(d_model=dim, n_layers=1, d_state=int(options.get("d_state", 16)),
                         expand_factor=int(options.get("expand", 2)), d_conv=int(options.get("d_conv", 4)),
                         dt_rank=int(options["dt_rank"]) if "dt_rank" in options else "auto")
    block = MambaBlock(config).to(x.dtype)
    block.load_state_dict({RENAMES.get(k, k): v for k, v in state.items()})
    block.eval()
    out = {}
    with torch.no_grad():
        block.config.pscan = True
        out["mambapy pscan"] = block(x)
        block.config.pscan = False
        out["mambapy selective_scan_seq"] = block(x)
        cache = (None, torch.zeros(x.shape[0], block.config.d_inner, block.config.d_conv - 1, dtype=x.dtype))
        steps = []
        for t in range(x.shape[1]):
            y, cache = block.step(x[:, t], cache)
            steps.append(y)
        out["mambapy step"] = torch.stack(steps, 1)
    return out


# ---- ssm/mamba2 around ssd_minimal -----------------------------------------------------------

MAMBA2_SHAPES = [(37, 32, {"d_state": 8, "headdim": 16, "chunk": 16}), (70, 24, {"d_state": 5, "headdim": 12}),
                 (9, 16, {"d_state": 4, "headdim": 8, "d_conv": 2, "expand": 3})]
MAMBA2_VARIANTS = [["--set", "form=chunked"], ["--set", "form=parallel"], ["--set", "form=chunked", "--set", "chunk=5"]]
BLOCK_LEN = 8  # ssd_minimal's chunk, unrelated to blocklab's


def mamba2_references(ssd_minimal, state, x, dim, options):
    """mamba2_simple.py's unfused forward on x [B, T, C] with ssd_minimal_discrete as the scan."""
    d_state, headdim = int(options.get("d_state", 128)), int(options.get("headdim", 64))
    inner = int(options.get("expand", 2)) * dim
    heads = inner // headdim
    batch, tokens = x.shape[:2]
    z, xbc, dt = torch.split(F.linear(x, state["in_proj.weight"]), [inner, inner + 2 * d_state, heads], -1)
    taps = state["conv.weight"].shape[-1]
    xbc = F.silu(F.conv1d(xbc.transpose(1, 2), state["conv.weight"], state["conv.bias"], padding=taps - 1,
                          groups=xbc.shape[-1])[..., :tokens].transpose(1, 2))
    u, B, C = torch.split(xbc, [inner, d_state, d_state], -1)
    dt = F.softplus(dt + state["dt_bias"])
    A = -torch.exp(state["A_log"])
    u = u.unflatten(-1, (heads, headdim))
    pad = (-tokens) % BLOCK_LEN

    def padded(t):  # zeros after the end along T
        return F.pad(t, [0, 0] * (t.dim() - 2) + [0, pad])

    per_head = [t.unsqueeze(2).expand(-1, -1, heads, -1) for t in (B, C)]
    y, _ = ssd_minimal.ssd_minimal_discrete(padded(u * dt.unsqueeze(-1)), padded(A * dt), padded(per_head[0]),
                                            padded(per_head[1]), BLOCK_LEN)
    y = (y[:, :tokens] + u * state["D"].unsqueeze(-1)).reshape(batch, tokens, inner)
    gated = y * F.silu(z)
    normed = gated * torch.rsqrt(gated.pow(2).mean(-1, keepdim=True) + 1e-5) * state["norm.weight"]
    return {"mamba_ssm ssd_minimal_discrete": F.linear(normed, state["out_proj.weight"])}


# ---- Running blocklab and comparing ----------------------------------------------------------

def run_case(key, rebuild, variants, tolerance, shape, seed, dtype, tmp, worst):
    tokens, dim, options = shape
    label = " ".join(f"{k}={v}" for k, v in options.items()) or "defaults"
    where = f"T {tokens} dim {dim} {label} seed {seed} {dtype}"
    torch_dtype = torch.float64 if dtype == "float64" else torch.float32
    x = np.random.default_rng(seed).standard_normal((2, tokens, dim)).astype(dtype)

    def block(extra):
        return run_block(BLOCKLAB, key, set_options(options) + ["--causal", "--dtype", dtype] + extra, x, tmp)

    def reference(state):
        with torch.no_grad():
            return rebuild({k: v.to(torch_dtype) for k, v in state.items()}, torch.from_numpy(x), dim, options)

    def check(what, ours, refs):
        return check_relative(f"{key} {what} {where}", ours, refs, tolerance[dtype], worst, f"{key} {dtype}")

    # export: blocklab's initial weights (seeded) into the reference.
    y, state = block(["--seed", str(seed)])
    ok = check("export", y, reference(state))
    # import: random weights into blocklab, by each of its scans / forms.
    theirs = random_state(state, {}, torch.Generator().manual_seed(seed), torch_dtype)
    torch.save(theirs, tmp / "in.pt")
    expected = reference(theirs)
    for variant in variants:
        y, state = block(["--load-state-dict", str(tmp / "in.pt")] + variant)
        ok &= check("import " + " ".join(variant[1::2]), y, expected)
    ok &= same_state(f"{key} import {where}", state, theirs)
    return ok


def main():
    mambapy, ssd_minimal = load_mambapy(), load_ssd_minimal()
    if mambapy is None and ssd_minimal is None:
        sys.exit(77)
    suites = []
    if mambapy is not None:
        rebuild = lambda state, x, dim, options: mamba_references(mambapy, state, x, dim, options)  # noqa: E731
        suites.append(("ssm/mamba", rebuild, MAMBA_VARIANTS, {"float32": 1e-5, "float64": 1e-5}, MAMBA_SHAPES))
    if ssd_minimal is not None:
        rebuild = lambda state, x, dim, options: mamba2_references(ssd_minimal, state, x, dim, options)  # noqa: E731
        suites.append(("ssm/mamba2", rebuild, MAMBA2_VARIANTS, {"float32": 1e-5, "float64": 1e-10}, MAMBA2_SHAPES))

    def cases(tmp, worst):
        ok = True
        for key, rebuild, variants, tolerance, shapes in suites:
            for seed, shape in enumerate(shapes):
                ok &= run_case(key, rebuild, variants, tolerance, shape, seed, "float32", tmp, worst)
            ok &= run_case(key, rebuild, variants, tolerance, shapes[0], 7, "float64", tmp, worst)
        return ok

    run_all(cases, "relative max error")


if __name__ == "__main__":
    main()
