#!/usr/bin/env python3
"""Differential test: blocklab's ssm/lmu against LMUFormer's LMUFFTCell computation, with the
memory discretised by SciPy.

Usage: lmu_scipy.py <path to blocklab>

No PyPI package ships the LMU for PyTorch on CPU (keras-lmu needs TensorFlow; LMUFormer and
pytorch-lmu are repositories). Both official codes build the memory the same way: the Legendre
state space of Voelker et al. (2019), A_ij = (2i+1)/theta (-1 if i < j else (-1)^(i-j+1)),
B_i = (2i+1)/theta (-1)^i, discretised by scipy.signal.cont2discrete(..., dt=1, method="zoh").
That SciPy call is the independent reference here for blocklab's own zero-order hold (a matrix
exponential of the block matrix [[A, B], [0, 0]]), and the rest follows
zeyuliu1037/LMUFormer src/blocks/lmu_cell.py (LMUFFTCell) in its own conventions: H_t = A^t B
by repeated products, the convolution by rfft/irfft of size 2L, u = ReLU(W_u x),
h = ReLU(W_h [m; x]); then blocklab's output projection (LMUFormer's proj_conv, a 1x1 conv,
without its BatchNorm).

Checked in float64: the exported A_bar, B_bar against SciPy's (tolerance 1e-12, relative), and
the output with random weights at two orders and windows, crossing theta (tolerance 1e-10,
relative to the output's scale).
"""
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import finish, random_state, report, run_block, set_options  # noqa: E402

try:
    from scipy.signal import cont2discrete
except ImportError:
    print("SKIP: scipy is not installed (scripts/install-deps.sh installs it)")
    sys.exit(77)

TOLERANCE = 1e-10


def legendre_memory(order, theta):
    """The discretised (A_bar [d, d], B_bar [d]) as the official codes build them, by SciPy."""
    q = np.arange(order, dtype=np.float64).reshape(-1, 1)
    r = (2 * q + 1) / theta
    i, j = np.meshgrid(q, q, indexing="ij")
    A = r * np.where(i < j, -1, (-1.0) ** (i - j + 1))
    B = r * (-1.0) ** q
    Ad, Bd, *_ = cont2discrete((A, B, np.ones((1, order)), np.zeros((1,))), dt=1.0, method="zoh")
    return torch.from_numpy(Ad), torch.from_numpy(Bd).reshape(-1)


def lmu_fft_cell(w, x, A, B):
    """LMUFFTCell.forward then the projection: x [batch, L, C] -> [batch, L, C] (float64)."""
    L = x.shape[1]
    H, power = [], torch.eye(A.shape[0], dtype=torch.float64)
    for _ in range(L):  # H_t = A^t B, as impulse() builds it
        H.append(power @ B)
        power = A @ power
    H = torch.stack(H, dim=-1)  # [d, L]
    u = F.relu(F.linear(x, w["input.weight"], w["input.bias"]))  # [batch, L, 1]
    spectrum = torch.fft.rfft(u.permute(0, 2, 1), n=2 * L) * torch.fft.rfft(H, n=2 * L).unsqueeze(0)
    m = torch.fft.irfft(spectrum, n=2 * L)[:, :, :L].permute(0, 2, 1)  # [batch, L, d]
    h = F.relu(F.linear(torch.cat((m, x), dim=-1), w["hidden.weight"], w["hidden.bias"]))
    return F.linear(h, w["proj.weight"], w["proj.bias"])


def check(blocklab, order, theta, length, tmp, gen, worst):
    what = f"ssm/lmu memory {order}, theta {theta}, {length} tokens"
    options = set_options({"memory": order, "theta": theta})
    x = torch.randn(2, length, 12, generator=gen, dtype=torch.float64)
    _, exported = run_block(blocklab, "ssm/lmu", [*options, "--causal", "--dtype", "float64"], x.numpy(), tmp)
    A, B = legendre_memory(order, theta)
    ok = report(f"{what}: A_bar vs scipy zoh", float((exported["A_bar"] - A).abs().max() / A.abs().max()), 1e-12,
                "relative max error")
    ok &= report(f"{what}: B_bar vs scipy zoh", float((exported["B_bar"] - B).abs().max() / B.abs().max()), 1e-12,
                 "relative max error")
    w = random_state(exported, {"A_bar": exported["A_bar"], "B_bar": exported["B_bar"]}, gen, torch.float64)
    torch.save(w, tmp / "load.pt")
    y, _ = run_block(blocklab, "ssm/lmu",
                     [*options, "--causal", "--dtype", "float64", "--load-state-dict", str(tmp / "load.pt")],
                     x.numpy(), tmp)
    ref = lmu_fft_cell(w, x, A, B).numpy()
    err = float(np.abs(y - ref).max() / np.abs(ref).max())
    worst["output"] = max(worst.get("output", 0.0), err)
    return ok & report(f"{what}: output vs LMUFFTCell", err, TOLERANCE, "relative max error")


def main():
    blocklab = sys.argv[1]
    gen = torch.Generator().manual_seed(0)
    ok, worst = True, {}
    with tempfile.TemporaryDirectory() as d:
        for order, theta, length in [(8, 16.0, 40), (24, 64.0, 100)]:
            ok &= check(blocklab, order, theta, length, Path(d), gen, worst)
    finish(ok, worst, "relative max error")


if __name__ == "__main__":
    main()
