#!/usr/bin/env python3
"""Round trip: `blocklab export --tensorboard` read back with TensorBoard's own reader.

Usage: tensorboard_roundtrip.py <path to blocklab>

Trains a tiny run (a one-layer ViT on 256 Fashion-MNIST images, 2 epochs of 8 steps, a few
seconds), draws its attention maps (`blocklab attn`), exports it, and reads the event file back
with TensorBoard (event_accumulator.EventAccumulator, and its own CRC-32C over the raw records).
Checks, each of which fails the test:
  - every record's framing (length and data CRCs, masked) by TensorBoard's crc32c;
  - scalars: exactly the tags expected from metrics.jsonl (train/<key> for training lines,
    evaluation keys as they are, epoch/<tag> per epoch), at the same steps, the values equal
    to float32 precision, wall times not decreasing with the step;
  - text: tag config is config.yaml in a yaml code block, rendered by TensorBoard's text plugin
    as code;
  - images: one per PNG in <run>/attn/, the bytes of the file, decoded (Pillow) to its size.
Exit 77 (CTest: skipped) only when tensorboard is not installed (scripts/install-deps.sh installs it).
"""
import glob
import io
import json
import math
import os
import struct
import subprocess
import sys
import tempfile

try:
    from tensorboard.backend.event_processing import event_accumulator
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c
    from tensorboard.plugins.text import text_plugin
    from tensorboard.util import tensor_util
except ImportError as e:  # test-only; scripts/install-deps.sh installs it
    print(f"SKIP: tensorboard is not installed ({e}); run scripts/install-deps.sh")
    sys.exit(77)
import numpy as np
from PIL import Image

BLOCKLAB = os.path.abspath(sys.argv[1])
TINY = ["model.dim=16", "model.depth=1", "model.patch=7", "model.mixer.heads=2", "dataset.limit_train=256",
        "dataset.limit_test=100", "dataset.val_size=0", "trainer.batch_size=32", "trainer.epochs=2",
        "trainer.log_every=2", "trainer.eval_batch_size=100", "threads=1"]
failures = []


def check(ok, what):
    print(("PASS " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


def blocklab(*args, cwd):
    r = subprocess.run([BLOCKLAB, *args], cwd=cwd, capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        print(f"FAIL: blocklab {' '.join(args)} exited {r.returncode}\n{r.stdout}\n{r.stderr}")
        sys.exit(1)
    return r


def expected_scalars(metrics_path):
    """{tag: {step: value}} as the export is specified: every number of every line at its step,
    and per epoch the last value each tag logged in it (tag epoch/<tag>)."""
    by_step, by_epoch = {}, {}
    with open(metrics_path) as f:
        for line in f:
            d = json.loads(line)
            if d.get("diverged") is True:
                continue
            numbers = {k: v for k, v in d.items()
                       if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("step", "epoch")}
            is_eval = any("/" in k for k in numbers)
            for key, value in numbers.items():
                if not math.isfinite(value):
                    continue
                tag = key if is_eval else "train/" + key
                by_step.setdefault(tag, {})[d["step"]] = value
                if "epoch" in d:
                    by_epoch.setdefault("epoch/" + tag, {})[d["epoch"]] = value
    return {**by_step, **by_epoch}


def check_framing(path):
    data = open(path, "rb").read()
    at, records = 0, 0
    while at < len(data):
        header = data[at:at + 8]
        (length,) = struct.unpack("<Q", header)
        (length_crc,) = struct.unpack("<I", data[at + 8:at + 12])
        body = data[at + 12:at + 12 + length]
        (body_crc,) = struct.unpack("<I", data[at + 12 + length:at + 16 + length])
        if length_crc != masked_crc32c(header) or body_crc != masked_crc32c(body) or len(body) != length:
            check(False, f"record {records} at byte {at}: framing or CRC wrong")
            return
        at += 16 + length
        records += 1
    check(at == len(data) and records > 0, f"{records} records, framed and CRC-checked by TensorBoard's crc32c")


def check_scalars(acc, run_dir):
    expected = expected_scalars(os.path.join(run_dir, "metrics.jsonl"))
    tags = set(acc.Tags()["scalars"])
    check(tags == set(expected), f"scalar tags: {sorted(tags)} == {sorted(expected)}")
    for tag in sorted(set(expected) & tags):
        events = acc.Scalars(tag)
        got = {e.step: e.value for e in events}
        want = expected[tag]
        same_steps = sorted(got) == sorted(want) and len(events) == len(want)
        close = same_steps and all(math.isclose(got[s], want[s], rel_tol=1e-6, abs_tol=1e-30) for s in want)
        check(close, f"{tag}: {len(want)} values at steps {sorted(want)} match metrics.jsonl (float32)")
        times = [e.wall_time for e in sorted(events, key=lambda e: e.step)]
        check(all(a <= b for a, b in zip(times, times[1:])), f"{tag}: wall times do not decrease")
    check(len(expected.get("train/loss", {})) == 8, "the tiny run logged 8 training lines")
    check(len(expected.get("epoch/test/acc", {})) == 2, "... and 2 evaluations")


def check_config(acc, run_dir):
    config = open(os.path.join(run_dir, "config.yaml")).read()
    events = acc.Tensors("config") if "config" in acc.Tags()["tensors"] else []
    check(len(events) == 1 and events[0].step == 0, "one config text at step 0")
    if not events:
        return
    check(acc.SummaryMetadata("config").plugin_data.plugin_name == "text", "config carries the text plugin's metadata")
    array = tensor_util.make_ndarray(events[0].tensor_proto)
    text = array.item().decode("utf-8")
    body = config if config.endswith("\n") else config + "\n"
    check(text == "```yaml\n" + body + "```\n", "the config text is config.yaml in a yaml code block")
    html = text_plugin.text_array_to_html(array, enable_markdown=True)
    first_key = config.splitlines()[0].split(":")[0]
    check("<code" in html and first_key in html, "TensorBoard's text plugin renders it as code")


def check_images(acc, run_dir):
    pngs = sorted(glob.glob(os.path.join(run_dir, "attn", "*.png")))
    check(len(pngs) > 0, f"blocklab attn wrote {len(pngs)} pictures")
    want = {"attn/" + os.path.splitext(os.path.basename(p))[0]: p for p in pngs}
    check(set(acc.Tags()["images"]) == set(want), f"image tags: {sorted(acc.Tags()['images'])}")
    for tag, path in sorted(want.items()):
        if tag not in acc.Tags()["images"]:
            continue
        (event,) = acc.Images(tag)
        data = event.encoded_image_string
        decoded = Image.open(io.BytesIO(data))
        decoded.load()
        ok = data == open(path, "rb").read() and decoded.size == (event.width, event.height)
        check(ok, f"{tag}: the PNG's bytes, decoded to {decoded.size} = {event.width}x{event.height}")


def main():
    with tempfile.TemporaryDirectory(prefix="blocklab-tb-") as tmp:
        blocklab("run", "vit_fmnist", "-q", "output_dir=" + os.path.join(tmp, "runs"), *TINY, cwd=tmp)
        (run_dir,) = glob.glob(os.path.join(tmp, "runs", "vit_fmnist", "*"))
        blocklab("attn", run_dir, "--samples", "0", "--no-mixing", cwd=tmp)
        exported = blocklab("export", "--tensorboard", run_dir, cwd=tmp)
        print(exported.stderr, end="")
        files = glob.glob(os.path.join(run_dir, "tensorboard", "*", "events.out.tfevents.*"))
        check(len(files) == 1, f"one event file under {run_dir}/tensorboard: {files}")
        if len(files) != 1:
            sys.exit(1)
        check_framing(files[0])
        acc = event_accumulator.EventAccumulator(
            os.path.dirname(files[0]),
            size_guidance={event_accumulator.SCALARS: 0, event_accumulator.IMAGES: 0, event_accumulator.TENSORS: 0})
        acc.Reload()
        check_scalars(acc, run_dir)
        check_config(acc, run_dir)
        check_images(acc, run_dir)
        # A second export replaces the first file: TensorBoard must not read the run twice.
        blocklab("export", "--tensorboard", run_dir, cwd=tmp)
        again = glob.glob(os.path.join(run_dir, "tensorboard", "*", "events.out.tfevents.*"))
        check(len(again) == 1, "a second export leaves one event file")
    print(f"{len(failures)} failed" if failures else "all passed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
