#!/usr/bin/env python3
"""Differential test: blocklab's conv/hyena and mixer/monarch against the official computations.

Usage: hyena_official.py <path to blocklab>

No PyPI package ships Hyena's implicit-filter operator for CPU (stripedhyena is a different,
modal-filter model that needs flash-attn), so the reference here is the official code's
computation rebuilt from plain torch ops, step by step as HazyResearch/safari
src/models/sequence/hyena.py (HyenaOperator, HyenaFilter, PositionalEmbedding,
ExponentialModulation, fftconv_ref) and HazyResearch/m2 bert/src/mm/hyena_utils.py +
monarch_mixer_sequence_mixer.py (the bidirectional kernel) compute it. It deliberately follows
their conventions, not blocklab's: the FFT of size 2L with the kernel scaled by 1/(2L) and
irfft(norm='forward'); the bidirectional kernel pad(h, (0, L)) + pad(flip(h_rev), (L, 0));
einops layouts '(v o)' of the filter channels and skips; the positional table, time and decay
rates recomputed from their formulas (and checked against blocklab's buffers).

Checked in float64 (tolerance 1e-10, relative to the output's scale): conv/hyena of orders 2 and 3;
mixer/monarch bidirectional with the residual long convolution, and causal (--causal) without it.
"""
import math
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import finish, report, run_block, set_options  # noqa: E402

TOLERANCE = 1e-10


def positional_table(seq_len, emb_dim):
    """PositionalEmbedding: z = [t, Re, Im of exp(-i f w)], t = linspace(0, 1, L)."""
    t = torch.linspace(0, 1, seq_len, dtype=torch.float64)[:, None]
    bands = (emb_dim - 1) // 2
    w = 2 * math.pi * torch.linspace(0, seq_len - 1, seq_len, dtype=torch.float64)[:, None] / seq_len
    f = torch.linspace(1e-4, bands - 1, bands, dtype=torch.float64)[None]
    z = torch.exp(-1j * f * w)
    return torch.cat([t, z.real, z.imag], dim=-1), t


def decay_rates(channels, fast=0.3, slow=1.5, target=1e-2):
    return torch.linspace(math.log(target) / slow, math.log(target) / fast, channels, dtype=torch.float64).abs()


def implicit_filter(w, prefix, z, t, deltas, layers=2):
    """Linear -> Sin (shared frequency) x (1 + layers) -> Linear (no bias), times the window."""
    h = z
    for i in range(layers + 1):
        h = torch.sin(w[f"{prefix}.frequency"] * F.linear(h, w[f"{prefix}.layers.{i}.weight"],
                                                        w[f"{prefix}.layers.{i}.bias"]))
    h = F.linear(h, w[f"{prefix}.layers.{layers + 1}.weight"])
    return h * torch.exp(-t * deltas)


def fftconv_ref(u, k, skip):
    """The official fftconv_ref without gelu: u [B, D, L], k [D, L or 2L], skip [D]."""
    seqlen = u.shape[-1]
    fft_size = 2 * seqlen
    k_f = torch.fft.rfft(k, n=fft_size) / fft_size
    u_f = torch.fft.rfft(u, n=fft_size)
    y = torch.fft.irfft(u_f * k_f, n=fft_size, norm="forward")[..., :seqlen]
    return y + u * skip[:, None]


def short_conv(w, prefix, u):
    """Depthwise Conv1d, padding k - 1, the first L outputs: u [B, E, L]."""
    weight = w[f"{prefix}.weight"]
    return F.conv1d(u, weight, w[f"{prefix}.bias"], padding=weight.shape[-1] - 1, groups=weight.shape[0])[
        ..., : u.shape[-1]]


def check_tables(w, prefix, seq_len, emb_dim, channels):
    z, t = positional_table(seq_len, emb_dim)
    ok = report(f"{prefix}.positions vs PositionalEmbedding", float((w[f"{prefix}.positions"] - z).abs().max()), 1e-6)
    ok &= report(f"{prefix}.time vs t", float((w[f"{prefix}.time"] - t[:, 0]).abs().max()), 1e-6)
    ok &= report(f"{prefix}.decay vs |deltas|", float((w[f"{prefix}.decay"] - decay_rates(channels)).abs().max()),
                 1e-6)
    return ok


def hyena_reference(w, x, order, dim):
    """HyenaOperator.forward (num_heads = num_blocks = 1, no outer mixing, identity activation)."""
    L = x.shape[1]
    u = F.linear(x, w["in_proj.weight"], w["in_proj.bias"]).transpose(1, 2)
    uc = short_conv(w, "short_conv", u)
    *xs, v = uc.split(dim, dim=1)
    z, t = w["filter.positions"][:L], w["filter.time"][:L, None]
    k = implicit_filter(w, "filter.mlp", z, t, w["filter.decay"])  # [L, D (N-1)]
    k = k.T.reshape(dim, order - 1, L).permute(1, 0, 2)  # 'l (v o) -> o v l'
    skip = w["skip"].reshape(dim, order - 1).T  # '(v o) -> o v'
    for o, x_i in enumerate(reversed(xs[1:])):
        v = fftconv_ref(v * x_i, k[o], skip[o])
    return F.linear((v * xs[0]).transpose(1, 2), w["out_proj.weight"], w["out_proj.bias"])


def m2_filter(w, prefix, L, bidirectional):
    """HyenaFilter.forward's kernel: [D, L], or [D, 2L] = pad(h, (0, L)) + pad(flip(h_rev), (L, 0))."""
    z, t = w[f"{prefix}.positions"][:L], w[f"{prefix}.time"][:L, None]
    k = implicit_filter(w, f"{prefix}.mlp", z, t, w[f"{prefix}.decay"]).T
    if not bidirectional:
        return k
    k_rev = implicit_filter(w, f"{prefix}.mlp1", z, t, w[f"{prefix}.decay"]).T
    return F.pad(k, (0, L)) + F.pad(k_rev.flip(-1), (L, 0))


def m2_reference(w, x, dim, bidirectional, residual):
    """MonarchMixerSequenceMixing.forward (no hyena_training_additions)."""
    L = x.shape[1]
    u = F.linear(x, w["in_proj.weight"], w["in_proj.bias"]).transpose(1, 2)
    x1, x2, v = short_conv(w, "short_conv", u).split(dim, dim=1)
    y = fftconv_ref(v * x1, m2_filter(w, "filter", L, bidirectional), w["skip"]) * x2
    if residual:
        y = y + fftconv_ref(x.transpose(1, 2), m2_filter(w, "residual_filter", L, bidirectional), w["residual_skip"])
    return F.linear(y.transpose(1, 2), w["out_proj.weight"], w["out_proj.bias"])


def main():
    blocklab = sys.argv[1]
    ok, worst = True, {}
    gen = torch.Generator().manual_seed(0)
    dim, max_tokens = 8, 40
    x = torch.randn(2, max_tokens, dim, generator=gen, dtype=torch.float64)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for order in (2, 3):
            key = f"conv/hyena order {order}"
            y, w = run_block(blocklab, "conv/hyena",
                             set_options({"order": order, "filter_width": 16}) + ["--dtype", "float64"], x.numpy(),
                             tmp)
            ok &= check_tables(w, "filter", max_tokens, 3, dim * (order - 1))
            ref = hyena_reference(w, x, order, dim)
            err = float(np.abs(y - ref.numpy()).max() / ref.abs().max())
            worst[key] = err
            ok &= report(f"{key} vs safari HyenaOperator", err, TOLERANCE, "relative max error")
        for bidirectional, residual in ((True, True), (False, False), (True, False)):
            key = f"mixer/monarch bidirectional {bidirectional} residual {residual}"
            options = {"filter_width": 16, "bidirectional": str(bidirectional).lower(),
                       "residual_long_conv": str(residual).lower()}
            y, w = run_block(blocklab, "mixer/monarch", set_options(options) + ["--dtype", "float64"], x.numpy(), tmp)
            ok &= check_tables(w, "filter", max_tokens, 5, dim)
            ref = m2_reference(w, x, dim, bidirectional, residual)
            err = float(np.abs(y - ref.numpy()).max() / ref.abs().max())
            worst[key] = err
            ok &= report(f"{key} vs m2 MonarchMixerSequenceMixing", err, TOLERANCE, "relative max error")
    finish(ok, worst, "relative max error")


if __name__ == "__main__":
    main()
