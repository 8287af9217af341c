#!/usr/bin/env python3
"""Differential test: blocklab's override grammar and typing against Hydra's own parser.

    override_differential.py <blocklab binary> <config dir> [--seed N] [--per-class N] [-v]

Generates override strings class by class (seeded, so a failure reproduces): numbers and
keywords, backslashes and escapes, quoted strings, interpolations with oc.env defaults and
escaped ${...}, dict keys, override keys, and characters Hydra's lexer rejects. For each one
Hydra decides: it parses it with OverridesParser, applies it to the composed `exp_basic` with
ConfigLoaderImpl._apply_overrides_to_config and resolves the result with OmegaConf, exactly as
`hydra.compose` would. Then blocklab must give the same value (same type: int is not float,
bool is not int, a string stays a string) through `blocklab show exp_basic <overrides...>
--no-validate --format json`, or fail (exit status 2) where Hydra fails.

Deliberate differences (README, "Deliberate differences from Hydra") must be explicit errors in
blocklab: a dict key that Hydra types (int, float, bool, null keys: blocklab's config keys are
strings), a repeated dict key (Hydra keeps the last one silently). They are generated too, and
checked to fail. blocklab's JSON writes non-finite floats as the strings "nan", "inf", "-inf":
those match Hydra's float nan/inf.

To keep CI fast, the cases run in three blocklab processes (all that should succeed, all that
should fail, all that Hydra types as a deliberate difference); only on a failure does it rerun
cases one by one to name the culprit. Prints "N passed, M failed"; exits 1 on any failure.
"""

import copy
import json
import math
import os
import random
import subprocess
import sys
import warnings
from typing import Any, Callable, Dict, List, Optional, Tuple

ENV_UNSET = "BLOCKLAB_DIFF_UNSET_VARIABLE"

# --- generators, one per class --------------------------------------------------------------


def gen_number(r: random.Random) -> str:
    sign = r.choice(["", "", "+", "-"])
    digits = lambda: "".join(r.choice("0123456789") for _ in range(r.randint(1, 4)))  # noqa: E731
    body = r.choice([
        lambda: digits(),
        lambda: r.choice("123456789") + "_".join(digits() for _ in range(r.randint(1, 3))),
        lambda: digits() + "." + r.choice(["", digits()]),
        lambda: "." + digits(),
        lambda: digits() + r.choice("eE") + r.choice(["", "+", "-"]) + digits(),
        lambda: digits() + "." + digits() + "e" + digits(),
        lambda: "".join(r.choice([c.lower(), c.upper()]) for c in r.choice(["inf", "nan"])),
        lambda: "0x" + r.choice(["10", "ff", "1F"]),
        lambda: "0" + digits(),
        lambda: digits() + r.choice(["_", "e", ".", "_1", "e_1"]),
        lambda: "." + r.choice(["inf", "nan", "Inf"]),
    ])()
    return sign + body


def gen_keyword(r: random.Random) -> str:
    word = r.choice(["true", "false", "null", "yes", "no", "on", "none", "True1", "nul", "truee", "inf_x", "n-a"])
    return "".join(r.choice([c.lower(), c.upper()]) for c in word)


ESCAPE_PIECES = ["\\", "\\\\", "\\,", "\\ ", "\\(", "\\)", "\\[", "\\]", "\\{", "\\}", "\\:", "\\=", "\\d",
                 "\\t", "a", "b", "-", ".", "/", ":", " ", "1", "c:", "$", "%", "*", "@", "?", "|", "+"]


def gen_backslashes(r: random.Random) -> str:
    text = "".join(r.choice(ESCAPE_PIECES) for _ in range(r.randint(1, 7)))
    return text if text.strip() else text + "x"


def gen_quoted(r: random.Random) -> str:
    q = r.choice("'\"")
    other = "\"" if q == "'" else "'"
    pieces = ["a", " ", "\\", "\\\\", "\\" + q, other, ",", "${run.seed}", "\\${run.seed}", "#", "é", "=", "[", "}"]
    return q + "".join(r.choice(pieces) for _ in range(r.randint(0, 6))) + q


def gen_interpolation(r: random.Random) -> str:
    default = r.choice([gen_number, gen_keyword, lambda rr: rr.choice(["abc", "a b", " x ", "'q,u}o'", "\"\""])])(r)
    target = r.choice(["${run.seed}", "${trainer.lr}", "${oc.env:%s,%s}" % (ENV_UNSET, default)])
    prefix = r.choice(["", "", "x_", "\\", "\\\\", "a\\\\"])
    return prefix + target + r.choice(["", "", "_y", "\\"])


DICT_KEY_PIECES = ["a", "b c", "\\,", "\\ ", "$", "-", "/", ".", "_x", "1", "1.5", "true", "null", "Zz", "%", "+"]


def gen_dict(r: random.Random) -> str:
    keys = ["".join(r.choice(DICT_KEY_PIECES) for _ in range(r.randint(1, 3))) for _ in range(r.randint(1, 3))]
    # Distinct once unescaped: repeated keys are their own class (dict-duplicate).
    keys = list({k.replace("\\", ""): k for k in keys}.values())
    return "{" + ", ".join("%s: %s" % (k, r.choice(["1", "x", "[1, 2]", "{q: 1}"])) for k in keys) + "}"


def gen_rejected(r: random.Random) -> str:
    bad = r.choice(list("#&!^;`<>~\"'=") + ["é", "€", "😀", "\t#", "(", ")"])
    return r.choice(["a", "", "1"]) + bad + r.choice(["b", "", " "])


KEY_SEGMENTS = ["a", "$b", "_c", "d-e", "0", "1_0", "01", "$", "a$b", "é", "-x", ""]


def gen_key(r: random.Random) -> str:
    return ".".join(r.choice(KEY_SEGMENTS) for _ in range(r.randint(1, 3)))


VALUE_CLASSES: Dict[str, Callable[[random.Random], str]] = {
    "number": gen_number,
    "keyword": gen_keyword,
    "backslash": gen_backslashes,
    "quoted": gen_quoted,
    "interpolation": gen_interpolation,
    "dict": gen_dict,
    "rejected": gen_rejected,
}


def generate(seed: int, per_class: int) -> List[Tuple[str, str]]:
    """(class, override text) pairs; every override adds its own top-level key."""
    r = random.Random(seed)
    cases = []
    for cls, gen in VALUE_CLASSES.items():
        for _ in range(per_class):
            cases.append((cls, "+k%d=%s" % (len(cases), gen(r))))
    for _ in range(per_class):
        cases.append(("key", "+k%d.%s=1" % (len(cases), gen_key(r))))
    for _ in range(per_class // 4):  # repeated dict keys: Hydra keeps the last one
        k = r.choice(["a", "b c", "x\\,y"])
        cases.append(("dict-duplicate", "+k%d={%s: 1, %s: 2}" % (len(cases), k, k)))
    return cases


# --- Hydra's side ---------------------------------------------------------------------------


class Hydra:
    def __init__(self, conf_dir: str):
        from hydra import compose, initialize_config_dir
        from hydra.core.override_parser.overrides_parser import OverridesParser

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with initialize_config_dir(config_dir=conf_dir, version_base="1.3"):
                self.base = compose(config_name="exp_basic")
        self.parser = OverridesParser.create()

    def apply(self, text: str) -> Tuple[bool, Any]:
        """(True, the value at the override's top-level key) or (False, why)."""
        from hydra._internal.config_loader_impl import ConfigLoaderImpl
        from omegaconf import OmegaConf

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                override = self.parser.parse_override(text)
                cfg = copy.deepcopy(self.base)
                ConfigLoaderImpl._apply_overrides_to_config([override], cfg)
                tree = OmegaConf.to_container(cfg, resolve=True)
        except Exception as e:  # Hydra and OmegaConf raise many exception types
            return False, "%s: %s" % (type(e).__name__, (str(e).splitlines() or [""])[0])
        return True, tree[override.key_or_group.split(".")[0]]


def non_string_keys(v: Any) -> bool:
    if isinstance(v, dict):
        return any(not isinstance(k, str) or non_string_keys(x) for k, x in v.items())
    if isinstance(v, list):
        return any(non_string_keys(x) for x in v)
    return False


# --- blocklab's side ------------------------------------------------------------------------


def run_blocklab(binary: str, conf_dir: str, overrides: List[str]) -> Tuple[int, str, str]:
    cmd = [binary, "show", "exp_basic", *overrides, "--no-validate", "--format", "json", "--config-dir", conf_dir]
    p = subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=120)
    return p.returncode, p.stdout, p.stderr


def type_name(v: Any) -> str:
    return "null" if v is None else type(v).__name__


def same(hydra: Any, ours: Any) -> bool:
    if isinstance(hydra, float) and not math.isfinite(hydra):  # our JSON writes them as strings
        return ours == ("nan" if math.isnan(hydra) else "inf" if hydra > 0 else "-inf")
    if type_name(hydra) != type_name(ours):
        return False
    if isinstance(hydra, dict):
        return hydra.keys() == ours.keys() and all(same(hydra[k], ours[k]) for k in hydra)
    if isinstance(hydra, list):
        return len(hydra) == len(ours) and all(same(a, b) for a, b in zip(hydra, ours))
    return hydra == ours


class Report:
    def __init__(self, verbose: bool):
        self.passed = 0
        self.failures: List[str] = []
        self.verbose = verbose

    def check(self, ok: bool, label: str, detail: str = "") -> None:
        if ok:
            self.passed += 1
            if self.verbose:
                print("PASS " + label)
        else:
            self.failures.append(label + ("\n    " + detail if detail else ""))


def check_values(binary: str, conf_dir: str, cases: List[Tuple[str, str, Any]], report: Report) -> None:
    """Cases Hydra accepts: one blocklab run; per case only when that run fails."""
    rc, out, err = run_blocklab(binary, conf_dir, [text for _, text, _ in cases])
    if rc != 0:
        for cls, text, expected in cases:
            rc1, out1, err1 = run_blocklab(binary, conf_dir, [text])
            if rc1 != 0:
                report.check(False, "[%s] %s" % (cls, text), "Hydra gives %r; blocklab fails: %s" % (
                    expected, " / ".join(err1.strip().splitlines()[:2])))
            else:
                check_one(cls, text, expected, json.loads(out1), report)
        return
    tree = json.loads(out)
    for cls, text, expected in cases:
        check_one(cls, text, expected, tree, report)


def check_one(cls: str, text: str, expected: Any, tree: Dict[str, Any], report: Report) -> None:
    key = text.lstrip("+").split("=", 1)[0].split(".")[0]
    ours = tree.get(key, "<missing>")
    report.check(same(expected, ours), "[%s] %s" % (cls, text),
                 "Hydra: %r (%s), blocklab: %r (%s)" % (expected, type_name(expected), ours, type_name(ours)))


def check_failures(binary: str, conf_dir: str, cases: List[Tuple[str, str, str]], report: Report) -> None:
    """Cases blocklab must refuse (exit status 2): one run; per case those it did not name."""
    if not cases:
        return
    rc, _, err = run_blocklab(binary, conf_dir, [text for _, text, _ in cases])
    for cls, text, why in cases:
        if rc == 2 and ("'%s'" % text) in err:
            report.check(True, "[%s] %s [must fail]" % (cls, text))
            continue
        rc1, out1, err1 = run_blocklab(binary, conf_dir, [text])
        detail = "Hydra: %s; blocklab exit %d: %s" % (why, rc1, (err1.strip() or out1.strip())[:200])
        report.check(rc1 == 2, "[%s] %s [must fail]" % (cls, text), detail)


def main(argv: List[str]) -> int:
    args = [a for a in argv[1:] if not a.startswith("-")]
    opts = dict(a.lstrip("-").split("=", 1) if "=" in a else (a.lstrip("-"), "1") for a in argv[1:] if a.startswith("-"))
    if len(args) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    binary, conf_dir = os.path.abspath(args[0]), os.path.abspath(args[1])
    seed = int(opts.get("seed", "20261203"))
    hydra = Hydra(conf_dir)
    accepted, refused, deliberate = [], [], []
    for cls, text in generate(seed, int(opts.get("per-class", "40"))):
        ok, value = hydra.apply(text)
        if not ok:
            refused.append((cls, text, value))
        elif cls == "dict-duplicate" or non_string_keys(value):
            deliberate.append((cls, text, "accepted as %r (a deliberate difference)" % (value,)))
        else:
            accepted.append((cls, text, value))
    report = Report("v" in opts)
    check_values(binary, conf_dir, accepted, report)
    check_failures(binary, conf_dir, refused, report)
    check_failures(binary, conf_dir, deliberate, report)
    for f in report.failures:
        print("FAIL " + f)
    print("%d passed, %d failed (seed %d: %d accepted by Hydra, %d refused, %d deliberate differences)" % (
        report.passed, len(report.failures), seed, len(accepted), len(refused), len(deliberate)))
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
