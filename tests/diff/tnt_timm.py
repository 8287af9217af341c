#!/usr/bin/env python3
"""Differential test: blocklab's block/tnt against timm's TNT block (timm.models.tnt.Block, the
non-legacy form of the official code of Han et al. 2021, arXiv:2103.00112), same weights.

Usage: tnt_timm.py <path to blocklab>

timm's Block(pixel_embed [B N, m, c], patch_embed [B, 1 + N, C]) returns both, the class token
first. blocklab's block takes them packed, tokens [B, 1 + N, C + m c] = [outer | the m words of
width c flattened word-major], `--prefix 1` for the class token, whose word part must come out
unchanged. `blocklab block block/tnt` builds it without a token mixer config: attention/softmax
with `heads` heads and the block's qkv_bias (timm's Attention has qk and v Linears: our qkv rows
are [qk; v]), an mlp of ratio 4 (timm's mlp_ratio), LayerNorm eps 1e-5 (nn.LayerNorm). Names:
  inner_norm1 -> norm_in, inner_attn -> attn_in, inner_norm2 -> norm_mlp_in, inner_mlp -> mlp_in,
  fuse_norm1 -> norm1_proj, fuse -> proj (no bias), fuse_norm2 -> norm2_proj,
  norm1 -> norm_out, mixer -> attn_out, norm2 -> norm_mlp, channel -> mlp
  export  blocklab's own initial weights -> timm (load_state_dict, strict)
  import  random timm weights -> ours -> torch.save -> blocklab --load-state-dict
Cases: small widths with 2 inner heads, TNT-S's widths (c 24, m 16, C 384, 4 / 6 heads) on a 3x3
grid, q/k/v biases on both attentions, a rectangular grid.
The error is relative, max |ours - timm| / max |timm|, over the outer tokens and the words
separately: 1e-5 in float32, 1e-12 in float64.
"""
import sys

import numpy as np
import torch

from common import report, run_all, run_block, same_state, set_options, skip_missing

try:
    from timm.models.tnt import Block
except ImportError as e:  # the test-only reference; scripts/install-deps.sh installs it
    skip_missing(e)

BLOCKLAB = sys.argv[1]
KEY = "block/tnt"
TOLERANCE = {"float32": 1e-5, "float64": 1e-12}
# (name, c, m, C, inner heads, outer heads, qkv_bias, grid height, grid width)
CASES = [("small", 4, 4, 16, 2, 4, False, 2, 3),
         ("TNT-S widths", 24, 16, 384, 4, 6, False, 3, 3),
         ("qkv bias", 8, 9, 32, 2, 4, True, 3, 3),
         ("rectangular", 6, 4, 12, 3, 2, False, 1, 5)]
# Our module names -> timm's (the two attentions are mapped by tnt_attention_names).
RENAME = {"inner_norm1": "norm_in", "inner_norm2": "norm_mlp_in", "inner_mlp": "mlp_in", "fuse_norm1": "norm1_proj",
          "fuse": "proj", "fuse_norm2": "norm2_proj", "norm1": "norm_out", "norm2": "norm_mlp", "channel": "mlp"}
ATTENTIONS = {"inner_attn": "attn_in", "mixer": "attn_out"}


def torch_dtype(dtype):
    return torch.float64 if dtype == "float64" else torch.float32


def to_timm(ours, c, outer):
    """Our state dict -> timm's names; qkv [3w, w] splits into qk [2w, w] and v [w, w]."""
    out = {}
    for name, v in ours.items():
        head, rest = name.split(".", 1)
        if head in ATTENTIONS:
            width = c if head == "inner_attn" else outer
            if rest.startswith("qkv."):
                kind = rest.split(".", 1)[1]
                out[f"{ATTENTIONS[head]}.qk.{kind}"] = v[:2 * width]
                out[f"{ATTENTIONS[head]}.v.{kind}"] = v[2 * width:]
            else:
                out[f"{ATTENTIONS[head]}.{rest}"] = v
        else:
            out[f"{RENAME[head]}.{rest}"] = v
    return out


def from_timm(theirs):
    """timm's state dict -> our names; qk and v concatenate into qkv."""
    back = {v: k for k, v in RENAME.items()}
    back_attn = {v: k for k, v in ATTENTIONS.items()}
    out = {}
    for name, v in theirs.items():
        head, rest = name.split(".", 1)
        if head in back_attn:
            if rest.startswith("v."):
                continue  # with its qk
            if rest.startswith("qk."):
                kind = rest.split(".", 1)[1]
                out[f"{back_attn[head]}.qkv.{kind}"] = torch.cat([v, theirs[f"{head}.v.{kind}"]])
            else:
                out[f"{back_attn[head]}.{rest}"] = v
        else:
            out[f"{back[head]}.{rest}"] = v
    return out


def timm_module(case, state, dtype):
    _, c, m, outer, heads_in, heads_out, qkv_bias, _, _ = case
    block = Block(dim=c, dim_out=outer, num_pixel=m, num_heads_in=heads_in, num_heads_out=heads_out, mlp_ratio=4.0,
                  qkv_bias=qkv_bias).to(torch_dtype(dtype)).eval()
    block.load_state_dict({k: v.to(torch_dtype(dtype)) for k, v in state.items()})
    return block


def timm_output(block, x, c, m, outer):
    """timm's block on the packed tokens x [B, 1 + N, C + m c] -> (outer [B, 1 + N, C], words [B, N, m c])."""
    t = torch.from_numpy(x)
    b, n = t.shape[0], t.shape[1] - 1
    patch = t[..., :outer].contiguous()
    pixel = t[:, 1:, outer:].reshape(b * n, m, c).contiguous()
    with torch.no_grad():
        pixel_out, patch_out = block(pixel, patch)
    return patch_out.numpy(), pixel_out.reshape(b, n, m * c).numpy()


def random_timm_state(block, gen):
    """Weights far from the init (float64): Linears 1.5 / sqrt(fan_in), LayerNorm scales
    1 + N(0, 0.3^2), biases N(0, 0.5^2)."""
    out = {}
    for k, v in block.state_dict().items():
        r = torch.randn(v.shape, generator=gen, dtype=torch.float64)
        if v.dim() == 2:
            out[k] = r * 1.5 / v.shape[1] ** 0.5
        elif k.startswith("norm") and k.endswith(".weight"):
            out[k] = 1 + 0.3 * r
        else:
            out[k] = 0.5 * r
    return out


def compare(what, ours, theirs, x, outer, dtype, worst):
    """ours [B, 1 + N, C + m c] against timm's (outer, words); the class token's words unchanged."""
    ok = True
    for part, mine, ref in (("outer", ours[..., :outer], theirs[0]), ("words", ours[:, 1:, outer:], theirs[1])):
        err = float(np.abs(mine - ref).max() / np.abs(ref).max())
        worst[dtype] = max(worst.get(dtype, 0.0), err)
        ok &= report(f"{what} ({part})", err, TOLERANCE[dtype], "relative max error")
    if not np.array_equal(ours[:, :1, outer:], x[:, :1, outer:]):
        print(f"FAIL: {what}: the class token's word part changed")
        ok = False
    return ok


def run_case(case, seed, dtype, tmp, worst):
    name_, c, m, outer, heads_in, heads_out, qkv_bias, height, width = case
    name = f"{name_} c {c} m {m} C {outer} {height}x{width} seed {seed} {dtype}"
    dim = outer + m * c
    x = np.random.default_rng(seed).standard_normal((2, 1 + height * width, dim)).astype(dtype)
    options = {"inner_dim": c, "words": m, "inner_heads": heads_in, "heads": heads_out,
               "qkv_bias": "true" if qkv_bias else "false"}
    args = set_options(options) + ["--grid", f"{height}x{width}", "--prefix", "1", "--dtype", dtype]

    y, state = run_block(BLOCKLAB, KEY, args + ["--seed", str(seed)], x, tmp)
    exported = timm_module(case, to_timm(state, c, outer), dtype)
    ok = compare(f"export {name}", y, timm_output(exported, x, c, m, outer), x, outer, dtype, worst)

    theirs = random_timm_state(timm_module(case, to_timm(state, c, outer), "float64"),
                               torch.Generator().manual_seed(seed))
    loaded = {k: v.to(torch_dtype(dtype)).contiguous() for k, v in from_timm(theirs).items()}
    torch.save(loaded, tmp / "in.pt")
    y, exported_state = run_block(BLOCKLAB, KEY, args + ["--load-state-dict", str(tmp / "in.pt")], x, tmp)
    reference = timm_module(case, {k: v.to(torch_dtype(dtype)) for k, v in theirs.items()}, dtype)
    ok &= compare(f"import {name}", y, timm_output(reference, x, c, m, outer), x, outer, dtype, worst)
    return ok & same_state(f"import {name}", exported_state, loaded, as_float=True)


def all_cases(tmp, worst):
    ok = all([run_case(case, seed, "float32", tmp, worst) for case in CASES for seed in range(2)])
    return ok & all([run_case(case, 7, "float64", tmp, worst) for case in (CASES[0], CASES[2])])


if __name__ == "__main__":
    run_all(all_cases, "relative max error")
