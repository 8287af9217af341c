#!/usr/bin/env python3
"""Differential test: blocklab's config composition against Hydra's own compose API.

    hydra_differential.py <blocklab binary> [<config dir>]

For each case (a primary config and a list of overrides) this composes the config with
Hydra (initialize_config_dir + compose, then OmegaConf.to_container(resolve=True)) and with
`blocklab show <name> <overrides...> --no-validate --format json --config-dir <dir>`, and
checks that both give the same tree: same keys (in any order), same list items, same scalar
types (int is not float, bool is not int) and equal values. Error cases must fail in both:
Hydra raises and blocklab exits with status 2.

Prints one PASS/FAIL line per case, then "N passed, M failed"; exits 1 on any failure.

Known, intended deviations are not tested here: YAML 1.1 scalars (yes/no/on/off, 0o17, 1_000
are read by the YAML 1.2 core schema in blocklab), Hydra's own `hydra:` node, `++group=option`
(a blocklab extension; Hydra refuses it), non-finite floats (blocklab's JSON writes them as
strings), containers formatted inside strings ("x_${some.mapping}"), resolvers other than
oc.env, nested interpolations, and Hydra quirks such as +key={...} merging into an existing key.
`# @package _group_` (Hydra 1.0 syntax that blocklab keeps) is checked against Hydra's 1.1
compatibility mode, since Hydra >= 1.2 reads it as a literal key named "_group_".
"""

import json
import math
import os
import subprocess
import sys
import warnings
from dataclasses import dataclass, field
from typing import Any, List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CONF = os.path.normpath(os.path.join(HERE, "..", "fixtures", "hydra_conf"))


@dataclass
class Case:
    config: str
    overrides: List[str] = field(default_factory=list)
    fails: bool = False  # both must reject it
    # Hydra's compatibility level. "1.1" only where the fixture uses Hydra 1.0/1.1 syntax that
    # blocklab keeps: `# @package _group_` (Hydra >= 1.2 reads `_group_` as a literal key).
    version_base: str = "1.3"
    why: str = ""

    @property
    def name(self) -> str:
        return " ".join([self.config] + self.overrides)


CASES = [
    # --- composition, no overrides ---------------------------------------------------------
    Case("exp_basic", why="groups, @package, null group, _self_ last, interpolations"),
    Case("exp_nested", why="_self_ first, include by name, override in defaults, nested packages"),
    Case("exp_global", why="no _self_, optional missing option, _global_ header, /absolute groups"),
    Case("base_common", why="a plain config that others include, composed alone"),
    Case("exp_legacy", version_base="1.1", why="# @package _group_"),
    Case("exp_escapes", why="backslashes before ${, oc.env defaults, '}' in a quoted resolver argument"),
    # --- value overrides -------------------------------------------------------------------
    Case("exp_basic", ["trainer.lr=0.05"], why="interpolations see the new value"),
    Case("exp_basic", ["trainer.lr=1e-5"], why="float in a string interpolation: 1e-05"),
    Case("exp_basic", ["trainer.epochs=7", "run.seed=3"]),
    Case("exp_basic", ["+trainer.clip=1.0"]),
    Case("exp_basic", ["+run.extra={a: 1, b: [x, y]}"]),
    Case("exp_basic", ["++trainer.lr=0.5"], why="++ on an existing key"),
    Case("exp_basic", ["++trainer.clip=2"], why="++ on a new key"),
    Case("exp_basic", ["++brand.new.deep=1"], why="++ creates the mappings on the way"),
    Case("exp_basic", ["~trainer.warmup"]),
    Case("exp_basic", ["~trainer.warmup=0.1"], why="delete only when equal"),
    Case("exp_basic", ["~run.tags=[a,b]"]),
    Case("exp_basic", ["~trainer.schedule=[5.0,10]"], why="~key=value compares as Python: 5 == 5.0"),
    Case("exp_basic", ["~trainer.warmup=1e-1"]),
    Case("exp_basic", ["~eval_data"], why="delete a whole mapping"),
    Case("exp_basic", ["trainer.schedule=[1,2]"], why="lists are replaced"),
    Case("exp_basic", ["run.tags=[]"]),
    Case("exp_basic", ["run.tags.0=z"], why="list element by index"),
    Case("exp_basic", ["run={seed: 5}"], why="a mapping merges into the existing one"),
    Case("exp_basic", ["trainer={epochs: 1, amp: true}"], why="a mapping given to a group's key merges"),
    Case("exp_basic", ["run.name='hello world'"]),
    Case("exp_basic", ['run.name="1e-3"'], why="a quoted number stays a string"),
    Case("exp_basic", ["run.name='3'", "run.seed='7'"]),
    Case("exp_basic", ["run.seed=null"]),
    Case("exp_basic", ["trainer.amp=true"], why="bool in a string interpolation: True"),
    Case("exp_basic", ["trainer.amp=False"], why="case-insensitive booleans on the command line"),
    Case("exp_basic", ["run.name=${trainer.epochs}"], why="an interpolation as the value"),
    Case("exp_basic", ["run.name=lr_${trainer.lr}", "trainer.lr=0.25"]),
    Case("exp_basic", ["model.mixer.heads=8"], why="seen through ${model}"),
    Case("exp_basic", ["run.seed=-3", "trainer.warmup=.5", "run.name=1e3"]),
    # --- group overrides -------------------------------------------------------------------
    Case("exp_basic", ["trainer=fast"]),
    Case("exp_basic", ["trainer=fast", "trainer.lr=0.2"], why="value override after group override"),
    Case("exp_basic", ["model=large"], why="nested config with _self_ first and a renamed nested group"),
    Case("exp_basic", ["model/mixer=mlp"], why="nested group from the command line"),
    Case("exp_basic", ["model=large", "model/mixer=attn"]),
    Case("exp_basic", ["model=tiny"], why="'override' in a nested config, include by name in a group"),
    Case("exp_basic", ["model=tiny", "model/mixer=attn"], why="command line beats a nested 'override'"),
    Case("exp_basic", ["data@train_data=cifar"], why="group placed at another package"),
    Case("exp_basic", ["aug=none"], why="an empty option leaves an empty mapping"),
    Case("exp_basic", ["~aug"], why="delete a defaults entry"),
    Case("exp_basic", ["~data@eval_data"]),
    Case("exp_basic", ["~model/mixer"], why="delete a nested defaults entry"),
    Case("exp_basic", ["~trainer=default", "+trainer=fast"], why="delete when equal, then append"),
    Case("exp_basic", ["optim=adam"], why="choose an option for a null entry"),
    Case("exp_basic", ["optim=sgd"], why="the option's literal @package header"),
    Case("exp_basic", ["~optim"], why="delete a null entry"),
    Case("exp_basic", ["+extras=wandb"], why="append a group after the primary's _self_"),
    Case("exp_basic", ["+extras=exp_fast"], why="appended experiment overrides earlier choices"),
    Case("exp_basic", ["+extras=exp_fast", "trainer=default"], why="command line beats the experiment"),
    Case("exp_basic", ["+aug@extra_aug=flip"], why="append a group at another package"),
    Case("exp_nested", ["trainer=default"], why="command line beats 'override trainer: fast'"),
    Case("exp_nested", ["model/mixer=attn"], why="only the entry at model.mixer"),
    Case("exp_nested", ["model/mixer@teacher.mixer=mlp"], why="nested entry of a relocated config"),
    Case("exp_nested", ["model@teacher=large"]),
    Case("exp_nested", ["~logger"]),
    Case("exp_global", ["extras=wandb"], why="choose an option for an optional entry"),
    Case("exp_global", ["extras=nothing_here"], why="an optional entry skips a missing option"),
    Case("exp_global", ["data=cifar", "trainer.lr=3e-5"]),
    Case("exp_legacy", ["aug=flip"], version_base="1.1"),
    # --- several options of one group (Hydra 1.1+ multi-select) ------------------------------
    Case("exp_multi", why="- experiment: [a, b] merges a, then b, at the group's package; _self_ last"),
    Case("exp_multi", ["experiment=[lr_high,lr_low]"], why="the listed order decides which wins"),
    Case("exp_multi", ["experiment=lr_high"], why="one option replaces the list"),
    Case("exp_multi", ["experiment=[lr_low,lr_low]"], why="an option listed twice"),
    Case("exp_multi", ["+experiment=[seeded]"], why="a list entry is no choice: the group can be added"),
    Case("exp_multi", ["+experiment=lr_low"], why="... with one option too, merged after _self_"),
    Case("exp_multi", ["+extras=pick_experiments"], why="'override /experiment: [a, b]' in a defaults list"),
    Case("exp_multi", ["+extras=pick_experiments", "experiment=[lr_low]"], why="the command line wins"),
    Case("exp_multi_self_first", why="_self_ first, optional list, global options, list at another package"),
    Case("exp_multi_self_first", ["experiment=[seeded]"], why="the dropped option's 'override' goes too"),
    Case("exp_multi_self_first", ["experiment@picked=lr_low"]),
    Case("exp_multi_self_first", ["experiment@picked=[]"], why="an empty list selects nothing"),
    Case("exp_basic", ["+experiment=[lr_low,lr_high]"], why="+group=[a,b] appends after _self_"),
    Case("exp_basic", ["+experiment=[fast,seeded]"], why="global options; fast's override of trainer applies"),
    Case("exp_basic", ["+experiment=[seeded,fast]"]),
    Case("exp_basic", ["+experiment=[fast,seeded]", "trainer=default"], why="command line beats the options"),
    Case("exp_basic", ["+experiment=[lr_low,with_data]"], why="an option with its own defaults list"),
    Case("exp_basic", ["+experiment@exp=[lr_low,lr_high]"], why="+group@pkg=[a,b]"),
    Case("exp_basic", ["+experiment=[lr_low,lr_high]", "experiment.lr=3"], why="then a value override"),
    Case("exp_basic", ["+experiment=[]"]),
    Case("exp_basic", ["trainer=[default,fast]"], why="group=[a,b] for an existing entry"),
    Case("exp_basic", ["trainer.schedule=[7,8]"], why="key=[a,b] on a non-group key is still a list value"),
    Case("exp_basic", ["model/mixer=[mlp,attn]"], why="nested group entry"),
    Case("exp_basic", ["optim=[adam,sgd]"], why="a null entry; sgd's @package header"),
    Case("exp_basic", ["aug=[flip,none]"], why="an empty option last"),
    Case("exp_basic", ["aug=[none]"], why="an empty option alone leaves an empty mapping"),
    Case("exp_basic", ["~trainer", "+trainer=[fast,default]"], why="delete the entry, append a list"),
    # --- both must fail --------------------------------------------------------------------
    Case("exp_basic", ["trainer.missing=1"], fails=True, why="key not in struct"),
    Case("exp_basic", ["+trainer.lr=1"], fails=True, why="+ on an existing key"),
    Case("exp_basic", ["trainer=unknown_option"], fails=True),
    Case("exp_basic", ["model/mixer=nope"], fails=True),
    Case("exp_basic", ["nosuch/group=x"], fails=True),
    Case("exp_basic", ["~trainer.nope"], fails=True),
    Case("exp_basic", ["~run.seed=5"], fails=True, why="value differs"),
    Case("exp_basic", ["~trainer.schedule=['5',10]"], fails=True, why="a string is not the number"),
    Case("exp_basic", ["~extras"], fails=True, why="no such defaults entry"),
    Case("exp_basic", ["extras=wandb"], fails=True, why="choose a group with no entry (needs +)"),
    Case("exp_basic", ["+trainer=fast"], fails=True, why="append a group that is already there"),
    Case("exp_basic", ["trainer.lr.x=1"], fails=True, why="key under a scalar"),
    Case("exp_basic", ["run={seed: 5, extra: x}"], fails=True, why="a mapping override adds no keys"),
    Case("exp_basic", ["run.tags={a: 1}"], fails=True, why="a mapping does not merge into a list"),
    Case("exp_basic", ["eval_data=[1]"], fails=True, why="a list does not merge into a mapping"),
    Case("exp_basic", ["~trainer.batch_size"], fails=True, why="dangling interpolation"),
    Case("exp_nested", ["model/mixer@encoder_mixer=mlp"], fails=True,
         why="nested entries are named by their absolute package"),
    Case("exp_multi", ["experiment=[lr_low,nope]"], fails=True, why="an unknown option in the list"),
    Case("exp_multi_bad", fails=True, why="an unknown option and a number in defaults-list lists"),
    Case("exp_basic", ["+experiment=[lr_low,nope]"], fails=True),
    Case("exp_basic", ["experiment=[lr_low]"], fails=True, why="no entry to change (needs +)"),
    Case("exp_basic", ["trainer=[1,2]"], fails=True, why="options are names"),
    Case("exp_basic", ["+experiment=[lr_low,null]"], fails=True),
    Case("exp_basic", ["trainer=[[default]]"], fails=True),
    Case("exp_multi", ["~experiment"], fails=True, why="~ does not delete a list entry (select none: =[])"),
    Case("exp_multi", ["~experiment=lr_low"], fails=True),
    Case("exp_basic", ["model=[small,large]"], fails=True, why="both choose model/mixer"),
    Case("exp_basic", ["model=[small,small]"], fails=True, why="model/mixer twice, even with one option"),
    Case("exp_basic", ["+experiment=lr_low,lr_high"], fails=True, why="a comma list is a sweep, not a list"),
]


class Failed(Exception):
    pass


def hydra_compose(conf_dir: str, case: Case) -> Tuple[bool, Any]:
    """(True, tree) or (False, error text)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with initialize_config_dir(config_dir=conf_dir, version_base=case.version_base):
                cfg = compose(config_name=case.config, overrides=case.overrides)
                return True, OmegaConf.to_container(cfg, resolve=True)
    except Exception as e:  # Hydra and OmegaConf raise many exception types
        return False, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"


def blocklab_compose(binary: str, conf_dir: str, case: Case) -> Tuple[bool, Any]:
    cmd = [binary, "show", case.config, *case.overrides, "--no-validate", "--format", "json",
           "--config-dir", conf_dir]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        raise Failed("blocklab timed out")
    except OSError as e:
        raise Failed(f"cannot run {binary}: {e}")
    if p.returncode == 0:
        try:
            return True, json.loads(p.stdout)
        except json.JSONDecodeError as e:
            raise Failed(f"blocklab printed invalid JSON ({e}): {p.stdout[:200]!r}")
    if p.returncode == 2:
        lines = p.stderr.strip().splitlines()
        return False, " / ".join(lines[:2])
    raise Failed(f"blocklab exited with status {p.returncode}: {p.stderr.strip()[:300]}")


def type_name(v: Any) -> str:
    if v is None:
        return "null"
    return {bool: "bool", int: "int", float: "float", str: "str", list: "list", dict: "dict"}.get(
        type(v), type(v).__name__)


def differences(hydra: Any, ours: Any, path: str = "") -> List[str]:
    """Where two trees differ, as 'path: hydra=... blocklab=...' lines."""
    where = path or "<root>"
    if type_name(hydra) != type_name(ours):
        return [f"{where}: hydra={hydra!r} ({type_name(hydra)}) blocklab={ours!r} ({type_name(ours)})"]
    if isinstance(hydra, dict):
        out = []
        for k in sorted(set(hydra) | set(ours), key=str):
            sub = f"{path}.{k}" if path else str(k)
            if k not in ours:
                out.append(f"{sub}: missing in blocklab (hydra={hydra[k]!r})")
            elif k not in hydra:
                out.append(f"{sub}: only in blocklab ({ours[k]!r})")
            else:
                out += differences(hydra[k], ours[k], sub)
        return out
    if isinstance(hydra, list):
        if len(hydra) != len(ours):
            return [f"{where}: hydra={hydra!r} blocklab={ours!r}"]
        out = []
        for i, (a, b) in enumerate(zip(hydra, ours)):
            out += differences(a, b, f"{path}.{i}" if path else str(i))
        return out
    if isinstance(hydra, float):
        same = hydra == ours or (math.isnan(hydra) and math.isnan(ours))
    else:
        same = hydra == ours
    return [] if same else [f"{where}: hydra={hydra!r} blocklab={ours!r}"]


def run_case(binary: str, conf_dir: str, case: Case) -> Optional[str]:
    """None when the case passes, else why not."""
    h_ok, h = hydra_compose(conf_dir, case)
    b_ok, b = blocklab_compose(binary, conf_dir, case)
    if case.fails:
        if h_ok:
            return "expected Hydra to fail, but it composed the config"
        if b_ok:
            return f"Hydra fails ({h}) but blocklab composed the config"
        return None
    if not h_ok:
        return f"Hydra fails: {h}" + ("" if b_ok else f"; blocklab too: {b}")
    if not b_ok:
        return f"blocklab fails: {b}"
    diff = differences(h, b)
    if diff:
        return "trees differ:\n      " + "\n      ".join(diff[:12]) + (
            f"\n      ... and {len(diff) - 12} more" if len(diff) > 12 else "")
    return None


def main(argv: List[str]) -> int:
    if len(argv) < 2 or len(argv) > 3:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    binary = os.path.abspath(argv[1])
    conf_dir = os.path.abspath(argv[2] if len(argv) == 3 else DEFAULT_CONF)
    passed = failed = 0
    for case in CASES:
        try:
            problem = run_case(binary, conf_dir, case)
        except Failed as e:
            problem = str(e)
        label = case.name + (" [must fail]" if case.fails else "")
        if problem is None:
            passed += 1
            print(f"PASS {label}")
        else:
            failed += 1
            print(f"FAIL {label}\n    {problem}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
