"""The PyTorch (Python) peer of `blocklab bench vit`: the same ViT, optimizer and step.

Plain PyTorch on the same torch release as blocklab's LibTorch, configured identically:
patch embedding (Conv2d), class token, learned positions, pre-norm blocks (LayerNorm,
multi-head attention through F.scaled_dot_product_attention with one qkv Linear, MLP with
GELU), final LayerNorm, linear head; AdamW; cross-entropy. Prints one JSON line.
--device cuda runs it on the GPU (the step ends with loss.item(), a synchronisation, on both
sides); --precision bf16 runs the forward and the loss under torch.autocast(bfloat16), as
blocklab's trainer.precision=bf16 does.
"""
import argparse
import json
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class Block(nn.Module):
    def __init__(self, dim, heads, mlp_ratio):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class ViT(nn.Module):
    def __init__(self, image, channels, patch, dim, depth, heads, mlp_ratio, classes):
        super().__init__()
        self.patch_embed = nn.Conv2d(channels, dim, patch, stride=patch)
        tokens = (image // patch) ** 2 + 1
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, tokens, dim) * 0.02)
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, classes)

    def forward(self, images):
        x = self.patch_embed(images).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], 1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x[:, 0]))


def main():
    p = argparse.ArgumentParser()
    for name, default in [("dim", 64), ("depth", 4), ("patch", 4), ("heads", 4), ("batch", 128),
                          ("steps", 30), ("warmup", 5), ("threads", 1), ("image", 28)]:
        p.add_argument("--" + name, type=int, default=default)
    p.add_argument("--mlp-ratio", type=float, default=2.0)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = ViT(a.image, 1, a.patch, a.dim, a.depth, a.heads, a.mlp_ratio, 10).to(a.device)
    params = sum(t.numel() for t in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    images = torch.randn(a.batch, 1, a.image, a.image).to(a.device)
    labels = torch.randint(0, 10, (a.batch,)).to(a.device)

    def step():
        opt.zero_grad()
        with torch.autocast(a.device, dtype=torch.bfloat16, enabled=a.precision == "bf16"):
            loss = F.cross_entropy(model(images), labels)
        loss.backward()
        opt.step()
        return loss.item()

    for _ in range(a.warmup):
        step()
    start = time.perf_counter()
    for _ in range(a.steps):
        step()
    seconds = time.perf_counter() - start
    print(json.dumps({"images_per_s": a.batch * a.steps / seconds, "parameters": params,
                      "torch": torch.__version__, "threads": torch.get_num_threads(),
                      "device": a.device, "precision": a.precision}))


if __name__ == "__main__":
    main()
