#!/usr/bin/env python3
"""Differential test: blocklab's linear attention mixers around flash-linear-attention's cores.

Usage: linear_fla.py <path to blocklab>

The references are the pure-PyTorch ("naive") functions of flash-linear-attention (PyPI fla-core
0.6.0, test-only). fla/__init__.py and fla/ops/__init__.py import triton (GPU kernels, not
installed here), so the three files below are loaded by path; they need only torch and einops:
  fla/ops/linear_attn/naive.py  naive_recurrent_linear_attn(q, k, v, scale, normalize=True)
  fla/ops/retention/naive.py    naive_retention(q, k, v)  (gamma_h = 1 - 2^(-5-h), scale d^-1/2)
  fla/ops/simple_gla/naive.py   naive_recurrent_simple_gla / naive_chunk_simple_gla(q, k, v, g,
                                scale): S_t = exp(g_t) S_{t-1} + k_t v_t^T, o_t = scale q_t S_t
fla has these cores only, not our mixers' projections, norms and gates (its layers differ:
e.g. its MultiScaleRetention uses an RMSNorm where RetNet has a GroupNorm), so each mixer is
rebuilt here from plain torch ops around the fla core, from blocklab's state dict:

  linear/elu (causal; Katharopoulos et al. 2020)
    qkv.weight [3C, C], qkv.bias   rows q | k | v, heads contiguous in each (head h: rows h d..)
    proj.weight, proj.bias         the output projection W_O
    core: naive_recurrent_linear_attn(elu(q) + 1, elu(k) + 1, v, scale=1, normalize=True)
    Assumption: fla adds 1e-10 to the normaliser, blocklab its eps option (default 1e-6); the
    normaliser is a sum of positive terms of order 1 or more, so this is far below tolerance.
  linear/hedgehog (feature_map=joint_softmax; Zhang et al. 2024)
    qkv.weight, qkv.bias, proj.*   as linear/elu
    q_map_weight, k_map_weight [h, d, d], q_map_bias, k_map_bias [h, d]
                                   z = x W + b per head; fla's HedgehogFeatureMap
                                   (fla/modules/feature_map.py, its triton-backed imports stubbed)
                                   computes softmax([2 z' || -2 z']) with z' = x W_fla^T + b_fla,
                                   so W_fla = W^T / 2, b_fla = b / 2 (exact)
    core: naive_recurrent_linear_attn(phi(q), phi(k), v, scale=1, normalize=True); blocklab's
    eps option set to fla's 1e-10 (the normaliser phi(q).sum phi(k) can be ~1e-3 at t = 0)
  retention/retnet (Sun et al. 2023, eq. (8))
    q.weight, k.weight [C, C]      W_Q, W_K (no bias); q, k rotated (torchscale RetNetRelPos: channel
                                   pairs (2i, 2i+1) by t 10000^(-i/(d/2-1))) before the core
    v.weight, g.weight [2C, C]     W_V, W_G (value_factor 2)
    norm.weight, norm.bias [2C]    GroupNorm(heads groups, eps 1e-6) of each token's heads
    out.weight [C, 2C]             W_O;  y = (silu(x W_G) * GroupNorm(o)) W_O
    log_gammas [h] (buffer)        log(1 - 2^(-5-h)): fla's naive_retention hard-codes these
    cores: naive_retention(q, k, v) (q scaled by d^-1/2 inside), and
           naive_recurrent_simple_gla(q, k, v, g = log gamma_h, scale=d^-1/2)
  linear/lightning (TransNormerLLM's NormLinearAttention, variants tnl and tnl2)
    qkv.weight [3C, C]             rows q | k | v (no bias); q, k = silu(.), v = silu(.) for tnl2
    theta [h, 1, d] (lrpe=true)    LRPE: q' = [q cos(theta t) || q sin(theta t)], same for k
    u.weight [C, C] (tnl)          y = (x W_u * SRMSNorm(o)) W_o, SRMSNorm(o) = o / rms(o) (eps 1e-6)
    gate_down.weight [d, C], gate_up.weight [C, d], norm.weight, norm.bias (tnl2)
                                   y = (LayerNorm(o) * sigmoid(x W_down W_up)) W_o
    out.weight [C, C]              W_o
    log_decay [h] (buffer)         -s_h: decay alibi_layerwise (default; one layer: the ALiBi
                                   slopes 2^(-8h/H), h = 1..H, and ALiBi's rule for H not a power
                                   of 2) or paper_text ((8h/H)(1 - l/L), h = 1..H, layer 0 of 1)
    cores: naive_recurrent_simple_gla and naive_chunk_simple_gla(q, k, v, g = -s_h, scale=1)

Both directions are checked: export (blocklab's seeded initial weights into the rebuild) and
import (random weights, far from any init, saved with torch.save -> blocklab --load-state-dict;
the decay buffers get the formula's values, as fla's decays are fixed; the exported state dict
must be what was loaded). Every blocklab run is causal and compared with every fla core that
computes its function; imports run each of blocklab's forms (parallel, chunked by 64 and by 16).
blocklab's recurrent form (the step protocol, for generation) is not reachable through
`blocklab block`; fla's recurrent cores check the same function from the other side.
Inputs x [2, T, C] with T not a multiple of 64. The error is max |ours - ref| / max |ref|.
fla's naive functions compute in float32 whatever their input dtype, so the tolerance is 1e-5
for float32 and float64 runs alike (a float64 run still checks the float64 path end to end).
Exit 77 (skipped) only when the reference (fla-core, einops) is missing.
"""
import importlib.metadata
import importlib.util
import math
import sys
import types
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from common import check_relative, random_state, run_all, run_block, same_state, set_options


def load_fla(relative):
    """One fla file as a module, loaded by path (fla's package __init__ needs triton)."""
    try:
        path = Path(importlib.metadata.distribution("fla-core").locate_file(relative))
        spec = importlib.util.spec_from_file_location("fla_naive_" + relative.split("/")[-2], path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    except (importlib.metadata.PackageNotFoundError, FileNotFoundError, ImportError) as e:
        # the test-only reference; scripts/install-deps.sh installs it
        print(f"SKIP: flash-linear-attention (fla-core) is not usable ({e}); run scripts/install-deps.sh")
        sys.exit(77)


def load_fla_feature_maps():
    """fla/modules/feature_map.py. Its imports (fla.modules.activations and .layernorm: triton
    kernels; fla.utils.checkpoint) serve other maps than HedgehogFeatureMap: stubbed for the load."""
    stubs = {"fla": {}, "fla.modules": {}, "fla.utils": {"checkpoint": lambda f: f},
             "fla.modules.activations": dict.fromkeys(["fast_gelu_impl", "sigmoid", "sqrelu", "swish"]),
             "fla.modules.layernorm": {"layer_norm": None}}
    saved = {name: sys.modules.get(name) for name in stubs}
    for name, attributes in stubs.items():
        sys.modules[name] = types.ModuleType(name)
        sys.modules[name].__dict__.update(attributes)
    try:
        return load_fla("fla/modules/feature_map.py")
    finally:
        for name, module in saved.items():
            sys.modules.pop(name) if module is None else sys.modules.__setitem__(name, module)


fla_feature_map = load_fla_feature_maps()
fla_linear = load_fla("fla/ops/linear_attn/naive.py")
fla_retention = load_fla("fla/ops/retention/naive.py")
fla_simple_gla = load_fla("fla/ops/simple_gla/naive.py")

BLOCKLAB = sys.argv[1]
TOLERANCE = 1e-5
SHAPES = [(100, 64, 4), (37, 64, 4), (70, 48, 3)]  # (T, dim, heads)
FORMS = [["--set", "form=parallel"], ["--set", "form=chunked"], ["--set", "form=chunked", "--set", "chunk=16"]]


# ---- Formulas the rebuilds share -----------------------------------------------------------

def split_heads(t, heads):
    """[B, T, h d] -> [B, T, h, d] (fla's layout)."""
    return t.unflatten(-1, (heads, t.shape[-1] // heads))


def rotary(x):
    """torchscale's RetNetRelPos on x [B, T, h, d]: pairs (2i, 2i+1) rotated by t theta_i,
    theta_i = 1 / 10000^linspace(0, 1, d/2)[i] (RoFormer's exponents would be 2i/d)."""
    t, d = x.shape[1], x.shape[-1]
    theta = 1.0 / 10000.0 ** torch.linspace(0, 1, d // 2, dtype=torch.float64)
    angle = (torch.arange(t, dtype=torch.float64)[:, None] * theta)[:, None, :]  # [T, 1, d/2]
    cos, sin = angle.cos().to(x.dtype), angle.sin().to(x.dtype)
    even, odd = x[..., 0::2], x[..., 1::2]
    return torch.stack([even * cos - odd * sin, even * sin + odd * cos], -1).flatten(-2)


def alibi_slopes(heads):
    """ALiBi's slopes (Press et al. 2022; ofirpress/attention_with_linear_biases, get_slopes)."""
    def power_of_2(n):
        start = 2.0 ** (-(2.0 ** -(math.log2(n) - 3)))
        return [start * start ** i for i in range(n)]
    if math.log2(heads).is_integer():
        return power_of_2(heads)
    closest = 2 ** math.floor(math.log2(heads))
    return power_of_2(closest) + alibi_slopes(2 * closest)[0::2][: heads - closest]


def retnet_log_gammas(heads):
    return torch.tensor([math.log(1.0 - 2.0 ** (-5 - h)) for h in range(heads)], dtype=torch.float64)


def lightning_log_decay(heads, decay):
    rates = alibi_slopes(heads) if decay == "alibi_layerwise" else [8.0 * h / heads for h in range(1, heads + 1)]
    return -torch.tensor(rates, dtype=torch.float64)


def decayed_cores(q, k, v, log_decay, scale):
    """fla's recurrent and chunked simple GLA with a constant per-head decay; [B, T, h, d]."""
    g = log_decay.to(q.dtype).expand(q.shape[0], q.shape[1], -1)  # [B, T, h]
    recurrent, _ = fla_simple_gla.naive_recurrent_simple_gla(q, k, v, g, scale=scale)
    chunked, _ = fla_simple_gla.naive_chunk_simple_gla(q, k, v, g, scale=scale)
    return {"fla naive_recurrent_simple_gla": recurrent, "fla naive_chunk_simple_gla": chunked.to(q.dtype)}


# ---- The mixers, rebuilt around fla's cores: each maps (state, x, heads, options) to {core: y}

def elu_linear(state, x, heads, options):
    q, k, v = (split_heads(t, heads) for t in F.linear(x, state["qkv.weight"], state["qkv.bias"]).chunk(3, -1))
    o, _ = fla_linear.naive_recurrent_linear_attn(F.elu(q) + 1, F.elu(k) + 1, v, scale=1.0, normalize=True)
    return {"fla naive_recurrent_linear_attn": F.linear(o.flatten(-2), state["proj.weight"], state["proj.bias"])}


def retnet(state, x, heads, options):
    q, k, v = (split_heads(F.linear(x, state[f"{n}.weight"]), heads) for n in "qkv")
    q, k = rotary(q), rotary(k)
    scale = q.shape[-1] ** -0.5

    def output(o):  # o [B, T, h, e]
        b, t = o.shape[:2]
        normed = F.group_norm(o.reshape(b * t, -1), heads, state["norm.weight"], state["norm.bias"], eps=1e-6)
        return F.linear(F.silu(F.linear(x, state["g.weight"])) * normed.view(b, t, -1), state["out.weight"])

    heads_first = [t.transpose(1, 2) for t in (q, k, v)]
    cores = {"fla naive_retention": fla_retention.naive_retention(*heads_first).transpose(1, 2)}
    cores.update(decayed_cores(q, k, v, retnet_log_gammas(heads), scale))
    return {name: output(o) for name, o in cores.items()}


def lightning(state, x, heads, options):
    q, k, v = (split_heads(t, heads) for t in F.linear(x, state["qkv.weight"]).chunk(3, -1))
    q, k = F.silu(q), F.silu(k)
    if options.get("variant") == "tnl2":
        v = F.silu(v)
    if options.get("lrpe") == "true":  # theta [h, 1, d] -> angles [T, h, d]
        angle = torch.arange(x.shape[1], dtype=x.dtype)[:, None, None] * state["theta"].transpose(0, 1)
        q, k = (torch.cat([t * angle.cos(), t * angle.sin()], -1) for t in (q, k))

    def output(o):  # o [B, T, h, e]
        o = o.flatten(-2)
        if options.get("variant") == "tnl2":
            gate = torch.sigmoid(F.linear(F.linear(x, state["gate_down.weight"]), state["gate_up.weight"]))
            return F.linear(F.layer_norm(o, o.shape[-1:], state["norm.weight"], state["norm.bias"], eps=1e-6) * gate,
                            state["out.weight"])
        srms = o * torch.rsqrt(o.pow(2).mean(-1, keepdim=True) + 1e-6)
        return F.linear(F.linear(x, state["u.weight"]) * srms, state["out.weight"])

    log_decay = lightning_log_decay(heads, options.get("decay", "alibi_layerwise"))
    return {name: output(o) for name, o in decayed_cores(q, k, v, log_decay, 1.0).items()}


def hedgehog(state, x, heads, options):
    """fla's HedgehogFeatureMap: phi(x) = softmax([2z || -2z]), z = x W^T + b (identity init), one
    map for all heads where blocklab has one per head, so one fla map is built per head. This is
    blocklab's feature_map=joint_softmax with W = 2 W_fla^T, b = 2 b_fla (factors of 2: exact)."""
    q, k, v = (split_heads(t, heads) for t in F.linear(x, state["qkv.weight"], state["qkv.bias"]).chunk(3, -1))

    def features(t, name):  # t [B, T, h, d] -> [B, T, h, 2d]
        per_head = []
        for h in range(heads):
            fla_map = fla_feature_map.HedgehogFeatureMap(t.shape[-1]).to(t.dtype)
            fla_map.layer.weight.copy_(state[f"{name}_map_weight"][h].T / 2)
            fla_map.layer.bias.copy_(state[f"{name}_map_bias"][h] / 2)
            per_head.append(fla_map(t[:, :, h]))
        return torch.stack(per_head, 2)

    o, _ = fla_linear.naive_recurrent_linear_attn(features(q, "q"), features(k, "k"), v, scale=1.0, normalize=True)
    core = "fla HedgehogFeatureMap + naive_recurrent_linear_attn"
    return {core: F.linear(o.flatten(-2), state["proj.weight"], state["proj.bias"])}


def lightning_case(options):
    decay = options.get("decay", "alibi_layerwise")
    return ("linear/lightning", options, lightning, ("log_decay", lambda heads: lightning_log_decay(heads, decay)))


# (blocklab key, options, rebuild, (decay buffer, its formula of heads) or None)
CASES = [("linear/elu", {}, elu_linear, None),
         ("retention/retnet", {}, retnet, ("log_gammas", retnet_log_gammas)),
         # eps as fla's (1e-10): Hedgehog's normaliser can be small (products of two distributions)
         ("linear/hedgehog", {"feature_map": "joint_softmax", "eps": "1e-10"}, hedgehog, None),
         *map(lightning_case, [{}, {"lrpe": "true"}, {"variant": "tnl2"}, {"decay": "paper_text"}])]


# ---- Running blocklab and comparing --------------------------------------------------------

def blocklab_block(key, heads, options, x, tmp, dtype, extra):
    """Runs `blocklab block key` causally on x; returns its output and its state dict."""
    args = set_options({"heads": heads, **options}) + ["--causal", "--dtype", dtype] + extra
    return run_block(BLOCKLAB, key, args, x, tmp)


def check(key, what, ours, references, worst):
    """ours against each fla core's rebuild; the error is relative to the output's scale."""
    return check_relative(what, ours, references, TOLERANCE, worst, key)


def run_case(case, shape, seed, dtype, forms, tmp, worst):
    key, options, rebuild, buffer = case
    tokens, dim, heads = shape
    label = " ".join([key] + [f"{k}={v}" for k, v in options.items()])
    torch_dtype = torch.float64 if dtype == "float64" else torch.float32
    x = np.random.default_rng(seed).standard_normal((2, tokens, dim)).astype(dtype)

    def reference(state):
        with torch.no_grad():
            return rebuild({k: v.to(torch_dtype) for k, v in state.items()}, torch.from_numpy(x), heads, options)

    where = f"T {tokens} dim {dim} heads {heads} seed {seed} {dtype}"
    # export: blocklab's initial weights (seeded) into the rebuild.
    y, state = blocklab_block(key, heads, options, x, tmp, dtype, ["--seed", str(seed)])
    ok = check(f"{key} {dtype}", f"export {label} {where}", y, reference(state), worst)
    # import: random weights into blocklab, by each of its forms.
    buffers = {buffer[0]: buffer[1](heads)} if buffer else {}
    theirs = random_state(state, buffers, torch.Generator().manual_seed(seed), torch_dtype)
    torch.save(theirs, tmp / "in.pt")
    expected = reference(theirs)
    for form in forms:
        y, state = blocklab_block(key, heads, options, x, tmp, dtype, ["--load-state-dict", str(tmp / "in.pt")] + form)
        ok &= check(f"{key} {dtype}", f"import {label} {' '.join(form[1::2])} {where}", y, expected, worst)
    ok &= same_state(f"import {label} {where}", state, theirs)
    return ok


def main():
    def cases(tmp, worst):
        ok = True
        for case in CASES:
            for seed, shape in enumerate(SHAPES):
                ok &= run_case(case, shape, seed, "float32", FORMS, tmp, worst)
            ok &= run_case(case, SHAPES[0], 7, "float64", FORMS[1:2], tmp, worst)
        return ok

    run_all(cases, "relative max error")


if __name__ == "__main__":
    main()
