#!/usr/bin/env python3
"""Reads every *.json and *.jsonl file under a directory with a strict JSON reader.

Usage: strict_json.py <dir> [--min-files N]

Python's json module accepts NaN, Infinity and -Infinity by default (not JSON); here they raise,
as they do in pandas, polars, jq and every other strict reader. A .json file must hold one value,
a .jsonl file one value per line (blank lines allowed; a last line cut off by a kill is not, here:
the directory checked is one whose runs ended). Also checks blocklab's non-finite convention: a
key "<k>_nonfinite" holds "nan", "inf" or "-inf" and sits beside "<k>": null.

Exit status: 0 when every file reads (and at least --min-files were found), 1 otherwise, with
one line per problem: file:line: what.
"""
import argparse
import json
import os
import sys

NONFINITE_SUFFIX = "_nonfinite"
NONFINITE_NAMES = {"nan", "inf", "-inf"}


def refuse_constant(name):
    raise ValueError(f"{name} is not JSON")


def check_flags(value, where, problems):
    """The "<k>_nonfinite" flags of every object under `value`."""
    if isinstance(value, list):
        for item in value:
            check_flags(item, where, problems)
    elif isinstance(value, dict):
        for key, item in value.items():
            check_flags(item, where, problems)
            if not key.endswith(NONFINITE_SUFFIX):
                continue
            base = key[: -len(NONFINITE_SUFFIX)]
            if item not in NONFINITE_NAMES:
                problems.append(f"{where}: {key} is {item!r}, not one of nan, inf, -inf")
            elif base not in value or value[base] is not None:
                problems.append(f"{where}: {key} without \"{base}\": null beside it")


def parse(text, where, problems):
    try:
        value = json.loads(text, parse_constant=refuse_constant)
    except ValueError as e:  # json.JSONDecodeError is a ValueError
        problems.append(f"{where}: {e}")
        return
    check_flags(value, where, problems)


def check_file(path, problems):
    with open(path, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        problems.append(f"{path}: not UTF-8 ({e})")
        return
    if path.endswith(".jsonl"):
        for number, line in enumerate(text.split("\n"), start=1):
            if line.strip():
                parse(line, f"{path}:{number}", problems)
    else:
        parse(text, path, problems)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir")
    parser.add_argument("--min-files", type=int, default=1, help="fail when fewer files are found (default 1)")
    args = parser.parse_args()
    if not os.path.isdir(args.dir):
        print(f"strict_json: no such directory: {args.dir}", file=sys.stderr)
        return 1
    files = []
    for root, _, names in os.walk(args.dir):
        files += [os.path.join(root, n) for n in names if n.endswith((".json", ".jsonl"))]
    problems = []
    for path in sorted(files):
        check_file(path, problems)
    for p in problems:
        print(p)
    if len(files) < args.min_files:
        print(f"strict_json: {len(files)} JSON files under {args.dir}, expected at least {args.min_files}")
        return 1
    print(f"strict_json: {len(files)} files, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
