# How much attention falls on garment patches: reads <run>/attn/arrays from `blocklab attn <run> --samples 0-199 --no-mixing`.
# usage: .venv/bin/python results/notes/attention_on_garment.py <run dir>
import numpy as np, sys, glob
d = sys.argv[1] + "/attn/arrays/"
img = np.load(d + "images.npy")            # [S,28,28]
S = img.shape[0]
patch = img.reshape(S, 7, 4, 7, 4).mean(axis=(2, 4)).reshape(S, 49)
garment = patch > 0.1
print(f"samples {S}; garment patches: {garment.mean():.3f} of all patches")
for f in sorted(glob.glob(d + "probs_layer*.npy")):
    p = np.load(f)                           # [S,h,49,49]
    recv = p.mean(axis=2)                    # [S,h,49]: attention received, mean over queries
    mass = (recv * garment[:, None, :]).sum(-1)  # [S,h]
    print(f"{f.split('/')[-1]}: attention mass on garment patches per head {np.round(mass.mean(0),3)}, mean {mass.mean():.3f}")
roll = sorted(glob.glob(d + "rollout_*.npy"))
r = np.stack([np.load(f).mean(0) for f in roll]) if roll else None
if r is not None:
    idx = [int(f.split('test')[-1].split('.')[0]) for f in roll]
    print(f"rollout (received, mean over queries): mass on garment {np.mean([(r[k]*garment[i]).sum() for k,i in enumerate(idx)]):.3f}")
