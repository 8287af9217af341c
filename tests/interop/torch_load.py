"""A run's weights open in Python: weights/final.pt and best.pt load with torch.load (also
weights_only=True) under the module's own parameter names, hold exactly the weights the run
ended with (the summary's FNV-1a fingerprint, recomputed here from the loaded tensors), and
`--init-from` starts a run from them (lr 0 keeps them bit for bit; another head loads the rest).

Usage: torch_load.py <blocklab binary>"""
import os
import sys
import tempfile

import torch

from run_support import check, run, run_dir, summary


def fingerprint(state):
    """The run's weights_fnv1a64: FNV-1a 64 over each name and its tensor's bytes, in order."""
    h = 0xcbf29ce484222325
    for name, tensor in state.items():
        data = name.encode() + tensor.contiguous().view(torch.uint8).numpy().tobytes() if tensor.numel() else name.encode()
        for byte in data:
            h = ((h ^ byte) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return "%016x" % h


def main(binary):
    tmp = tempfile.mkdtemp(prefix="blocklab-torch-load-")
    src = os.path.join(tmp, "src")
    run(binary, src, "trainer.epochs=2", "threads=1")
    d = run_dir(src)
    final = torch.load(os.path.join(d, "weights", "final.pt"), weights_only=True)
    best = torch.load(os.path.join(d, "weights", "best.pt"))
    check(isinstance(final, dict) and all(isinstance(v, torch.Tensor) for v in final.values()),
          "final.pt is a dict of tensors")
    check("stem.patch_embed.weight" in final and "head.fc.weight" in final,
          "parameter names are the module's own (%s ...)" % ", ".join(list(final)[:3]))
    check(fingerprint(final) == summary(src)["weights_fnv1a64"],
          "final.pt holds exactly the run's final weights (fingerprint %s)" % fingerprint(final))
    check(set(best) == set(final), "best.pt has the same names")

    # lr 0: a run started from the weights ends with them unchanged.
    same = os.path.join(tmp, "same")
    p = run(binary, same, "trainer.epochs=1", "threads=1", "trainer.lr=0", "--init-from", d)
    check(summary(same)["weights_fnv1a64"] == fingerprint(best),
          "--init-from <run> with lr 0 keeps the run's best weights bit for bit")
    # A weights file saved from Python, with a head of another shape: the rest loads.
    edited = {k: v for k, v in final.items()}
    edited["head.fc.weight"] = torch.zeros(5, edited["head.fc.weight"].shape[1])
    path = os.path.join(tmp, "edited.pt")
    torch.save(edited, path)
    other = os.path.join(tmp, "other")
    run(binary, other, "trainer.epochs=1", "threads=1", "trainer.lr=0", "--init-from", path)
    log = open(os.path.join(run_dir(other), "log.txt")).read()
    check("kept as initialised, another shape, 1: head.fc.weight [5,16] vs [10,16]" in log,
          "a head of another shape is reported and kept as initialised")
    loaded = torch.load(os.path.join(run_dir(other), "weights", "final.pt"))
    check(torch.equal(loaded["stem.patch_embed.weight"], final["stem.patch_embed.weight"]) and
          not torch.equal(loaded["head.fc.weight"][:5], edited["head.fc.weight"]),
          "the other tensors come from the file")
    # Not weights at all: a clear error, exit 2.
    bad = os.path.join(tmp, "bad.pt")
    open(bad, "w").write("not a state dict")
    p = run(binary, os.path.join(tmp, "bad"), "trainer.epochs=1", "--init-from", bad, expect=2)
    check("is not a torch.save'd dict of tensors" in p.stderr, "a file that is not weights is named: " +
          p.stderr.strip().splitlines()[0])


if __name__ == "__main__":
    main(sys.argv[1])
