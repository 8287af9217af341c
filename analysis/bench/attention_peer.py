"""The PyTorch (Python) peers of `blocklab bench mixers --peer`: attention in plain PyTorch.

Each peer is a multi-head attention layer shaped like blocklab's attention/softmax (one qkv
Linear, the attention, an output Linear), timed forward + backward on x [B, N, C] with the
discipline of analysis/bench_timing.h: a warm-up round fixes how many calls one measurement
repeats (at least --min-time seconds), then --rounds rounds, each running every peer at every N.

  pytorch/sdpa        F.scaled_dot_product_attention (is_causal when causal): the fused kernels
                      (flash / memory-efficient / cuDNN on CUDA)
  pytorch/sdpa+alibi  SDPA with ALiBi (Press et al. 2022) as a float attn_mask, the causal mask
                      folded in: what blocklab's fused path does with an additive mask
  pytorch/flex+alibi  FlexAttention (torch.nn.attention.flex_attention) under torch.compile, ALiBi
                      as a score_mod and causality as a block mask (sparse blocks skipped); CUDA only

Prints one JSON line: {"rows": [{"label", "n", "rounds": [seconds per call, ...]}], "notes": [...]}.
A peer that cannot run (FlexAttention missing, a compile failure) is left out with a note.
"""
import argparse
import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def alibi_slopes(heads, device):
    # Press et al. 2022: the geometric sequence 2^(-8/h), 2^(-16/h), ...
    return torch.tensor([2.0 ** (-8.0 * (i + 1) / heads) for i in range(heads)], device=device)


class Attention(nn.Module):
    def __init__(self, dim, heads, kind, n, causal, device):
        super().__init__()
        self.heads, self.kind, self.causal = heads, kind, causal
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        slopes = alibi_slopes(heads, device)
        if kind == "sdpa+alibi":
            pos = torch.arange(n, device=device)
            bias = -slopes.view(-1, 1, 1) * (pos.view(1, -1, 1) - pos.view(1, 1, -1)).abs()
            if causal:
                bias = bias.masked_fill(torch.ones(n, n, dtype=torch.bool, device=device).triu(1), float("-inf"))
            self.register_buffer("bias", bias.unsqueeze(0))
        if kind == "flex+alibi":
            from torch.nn.attention.flex_attention import create_block_mask, flex_attention

            def score_mod(score, b, h, q_idx, kv_idx):
                return score - slopes[h] * (q_idx - kv_idx).abs()

            def causal_mask(b, h, q_idx, kv_idx):
                return q_idx >= kv_idx

            self.score_mod = score_mod
            self.block_mask = create_block_mask(causal_mask, None, None, n, n, device=device) if causal else None
            self.flex = torch.compile(flex_attention)

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        if self.kind == "sdpa":
            o = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        elif self.kind == "sdpa+alibi":
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=self.bias.to(q.dtype))
        else:
            o = self.flex(q, k, v, score_mod=self.score_mod, block_mask=self.block_mask)
        return self.proj(o.transpose(1, 2).reshape(b, n, c))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--lengths", default="256,1024,4096,16384")
    for name, default in [("dim", 64), ("heads", 4), ("batch", 1), ("rounds", 3), ("threads", 2)]:
        p.add_argument("--" + name, type=int, default=default)
    p.add_argument("--min-time", type=float, default=0.2)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--not-causal", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    lengths = [int(t) for t in a.lengths.split(",")]
    causal = not a.not_causal
    kinds = ["sdpa", "sdpa+alibi"] + (["flex+alibi"] if a.device == "cuda" else [])
    notes = []
    if a.device != "cuda":
        notes.append("pytorch/flex+alibi: CUDA only here (FlexAttention on CPU compiles C++ code per shape)")

    def sync():
        if a.device == "cuda":
            torch.cuda.synchronize()

    cases = []  # (label, n, module, input)
    for kind in kinds:
        for n in lengths:
            torch.manual_seed(0)
            try:
                m = Attention(a.dim, a.heads, kind, n, causal, a.device).to(a.device)
            except Exception as e:  # FlexAttention missing or refusing the shape
                notes.append(f"pytorch/{kind} at N={n}: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
                continue
            x = torch.randn(a.batch, n, a.dim, device=a.device, requires_grad=True)
            cases.append(("pytorch/" + kind, n, m, x))

    def call(m, x):
        sync()
        t0 = time.perf_counter()
        with torch.autocast(a.device, dtype=torch.bfloat16, enabled=a.precision == "bf16"):
            y = m(x)
        y.float().pow(2).mean().backward()
        sync()
        m.zero_grad()
        return time.perf_counter() - t0

    calls, seconds, failed = {}, {i: [] for i in range(len(cases))}, set()
    for r in range(-1, a.rounds):  # round -1: warm-up (and compiles); it sets the calls
        for i, (label, n, m, x) in enumerate(cases):
            if i in failed:
                continue
            try:
                first = call(m, x)
                total = first + sum(call(m, x) for _ in range(calls.get(i, 1) - 1))
            except Exception as e:
                failed.add(i)
                notes.append(f"{label} at N={n}: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
                continue
            if r < 0:
                calls[i] = min(1000, max(1, math.ceil(a.min_time / first)))
            else:
                seconds[i].append(total / calls[i])
    rows = [{"label": label, "n": n, "rounds": seconds[i]}
            for i, (label, n, _, _) in enumerate(cases) if i not in failed]
    print(json.dumps({"rows": rows, "notes": notes, "torch": torch.__version__, "device": a.device}))


if __name__ == "__main__":
    main()
