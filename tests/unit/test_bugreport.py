"""Bug reports and their standalone repros: every known upstream bug's witness gives a
torch-only script that shows the bug (exit status 1) in an interpreter where fx-conform
cannot be imported, and a variant without the bug's trigger exits 0."""

from __future__ import annotations

import dataclasses
import functools
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import torch

from conform import known, record, repro
from conform.bugreport import standalone_repro, write_bug_reports
from conform.case import Case
from conform.engine import check
from conform.known import Kind, KnownDivergence
from conform.outcome import Outcome, Stage, Symptom, Verdict

UPSTREAM_BUGS = [entry for entry in known.KNOWN if entry.kind is Kind.UPSTREAM_BUG]

#: Runs a script with torch importable and fx-conform not: no site processing (so neither
#: the editable install's finder nor PYTHONPATH nor the working directory), only the
#: interpreter's site-packages directory on the path.
_LAUNCHER = (
    "import runpy, sys; sys.path.append({site!r}); path = sys.argv[1]; sys.argv = sys.argv[1:]; "
    "runpy.run_path(path, run_name='__main__')"
)


def run_isolated(script: Path) -> subprocess.CompletedProcess[str]:
    launcher = _LAUNCHER.format(site=sysconfig.get_paths()["purelib"])
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": "", "HOME": os.environ.get("HOME", "/tmp"),
           "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-I", "-S", "-c", launcher, str(script)], cwd=script.parent,
                          env=env, capture_output=True, text=True, timeout=300)


@functools.cache
def witness_outcomes(entry_id: str) -> tuple[Case, tuple[Outcome, ...]]:
    entry = known.by_id()[entry_id]
    witness = known.load_witness(entry)
    outcomes = check(witness.case, entry.transform, params=witness.params)
    return witness.case, tuple(o for o in outcomes if o.known_id == entry.id)


def repro_for(entry: KnownDivergence) -> str:
    case, outcomes = witness_outcomes(entry.id)
    assert outcomes, f"the witness of {entry.id} shows no outcome matching it"
    scripts = [standalone_repro(o, case) for o in outcomes]
    found = [s for s in scripts if s is not None]
    assert found, f"no standalone repro for {entry.id} from {[(o.stage, o.symptom, o.place) for o in outcomes]}"
    return found[0]


def test_the_isolated_interpreter_imports_torch_but_not_fx_conform(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import importlib.util, sys\n"
        "import torch\n"
        "sys.exit(0 if importlib.util.find_spec('conform') is None else 3)\n"
    )
    (tmp_path / "conform").mkdir()  # not even a package in the working directory is found
    (tmp_path / "conform" / "__init__.py").write_text("")
    result = run_isolated(probe)
    assert result.returncode == 0, result.stdout + result.stderr


def _metamorphic(entry: KnownDivergence) -> bool:
    """Entries found by a metamorphic oracle (re-trace, idempotence): their repro would have
    to re-trace or re-apply upstream's output, which the standalone scripts do not do yet."""
    return bool(getattr(entry.match, "place", None)) and any(
        word in entry.match.place for word in ("retrace", "idempotent", "roundtrip", "compose"))


@pytest.mark.parametrize("entry", [
    pytest.param(e, marks=pytest.mark.xfail(strict=True, reason="no standalone repro of a metamorphic finding yet"))
    if _metamorphic(e) else e for e in UPSTREAM_BUGS], ids=lambda e: e.id)
def test_standalone_repro_shows_every_known_upstream_bug(entry: KnownDivergence, tmp_path: Path) -> None:
    script = repro_for(entry)
    for line in script.splitlines():
        words = line.split()
        if words[:1] in (["import"], ["from"]) and not line.startswith((" ", "\t")):
            assert words[1].partition(".")[0] not in ("conform", "generators", "reference"), line
    path = tmp_path / f"{entry.id}.py"
    path.write_text(script)
    result = run_isolated(path)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "expected:" in result.stdout and "actual:" in result.stdout, output


# A variant of a witness without the bug's trigger: (entry, text in the repro, replacement).
PASSING_VARIANTS = [
    # the returned parameter is read by an operation, so the partition fetches it
    ("split-module-keep-order-returned-attribute", "return x * 2, self.param", "return x * 2, self.param * 1"),
    # a parameterized Tuple annotation is what annotate_getitem_nodes reads correctly
    ("annotate-getitem-bare-generic", '__annotations__["pair"] = typing.Tuple',
     '__annotations__["pair"] = typing.Tuple[torch.Tensor, torch.Tensor]'),
    # without the write between the two matmuls, merging them is sound
    ("merge-matmul-mutation-between", "        a.add_(1.0)\n", ""),
]


@pytest.mark.parametrize(("entry_id", "old", "new"), PASSING_VARIANTS, ids=[v[0] for v in PASSING_VARIANTS])
def test_repro_of_a_variant_without_the_trigger_exits_zero(entry_id: str, old: str, new: str,
                                                           tmp_path: Path) -> None:
    script = repro_for(known.by_id()[entry_id])
    assert old in script
    path = tmp_path / "variant.py"
    path.write_text(script.replace(old, new))
    result = run_isolated(path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "not reproduced" in result.stdout


# --- fx-conform's own repro scripts check their embedded build_case() ---------------------------

ROOT = Path(__file__).resolve().parents[2]


def test_repro_script_checks_the_module_its_own_build_case_returns(tmp_path: Path) -> None:
    case, outcomes = witness_outcomes("split-module-keep-order-returned-attribute")
    path = repro.write(outcomes[0], case, tmp_path)
    text = path.read_text()
    assert "def build_case():" in text and "import conform.witnesses" not in text
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, str(path)], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=300)

    shown = run()
    assert shown.returncode == 1, shown.stdout + shown.stderr
    assert "split-module-keep-order-returned-attribute" in shown.stdout
    # with the parameter read by an operation the bug's trigger is gone: the edit is checked
    path.write_text(text.replace("return x * 2, self.param", "return x * 2, self.param * 1"))
    fixed = run()
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "pass" in fixed.stdout


def test_a_case_with_a_builder_is_checked_as_built_and_keeps_its_key() -> None:
    from conform.witnesses.split import ReturnsParameter

    original = Case("samples", {"sample": "two_adds"})
    params = {"partition": {}, "keep_original_order": True}
    assert [o.verdict for o in check(original, "split_module", params=params)] == [Verdict.PASS]
    rebuilt = original.with_builder(lambda: (ReturnsParameter(), (torch.randn(2),), {}))
    assert rebuilt.key == original.key and rebuilt.to_json() == original.to_json()
    found = check(rebuilt, "split_module", params=params)
    assert "split-module-keep-order-returned-attribute" in {o.known_id for o in found}


# --- the markdown reports -----------------------------------------------------------------------


def _as_new(outcome: Outcome) -> Outcome:
    return dataclasses.replace(outcome, verdict=Verdict.FAIL, known_id=None)


def test_bug_reports_one_file_per_upstream_bug_origin(tmp_path: Path) -> None:
    _, crash = witness_outcomes("split-module-keep-order-returned-attribute")
    _, structural = witness_outcomes("split-module-kwargs-keep-node-name-signature")
    new = _as_new(witness_outcomes("annotate-getitem-bare-generic")[1][0])
    by_design = [e for e in known.KNOWN if e.kind is Kind.BY_DESIGN][0]
    design_outcome = dataclasses.replace(crash[0], known_id=by_design.id, key="by-design")
    passed = dataclasses.replace(crash[0], verdict=Verdict.PASS, known_id=None, key="passed")
    (tmp_path / "bugs").mkdir()
    (tmp_path / "bugs" / "stale-from-an-earlier-run.md").write_text("old")
    paths = write_bug_reports(tmp_path, [*crash, *structural, new, design_outcome, passed])
    names = sorted(p.name for p in paths)
    assert names == sorted(["split-module-keep-order-returned-attribute.md",
                            "split-module-kwargs-keep-node-name-signature.md", f"{new.key}.md"])
    assert sorted(p.name for p in (tmp_path / "bugs").glob("*.md")) == names
    text = (tmp_path / "bugs" / "split-module-keep-order-returned-attribute.md").read_text()
    entry = known.by_id()["split-module-keep-order-returned-attribute"]
    assert text.startswith("# [fx] torch.fx.passes.split_module.split_module: ")
    for part in ("## Environment", f"torch {torch.__version__}", "Python ", "## Module", "class ReturnsParameter",
                 "## Repro", "```python", "## Expected", "Split_module succeeds", "## Actual", "KeyError",
                 entry.reason):
        assert part in text, part
    structural_text = (tmp_path / "bugs" / "split-module-kwargs-keep-node-name-signature.md").read_text()
    assert "`parent.placeholders.1.1` = `\"**_kwargs\"`" in structural_text
    script = (tmp_path / "bugs" / "split-module-keep-order-returned-attribute.py").read_text()
    assert script in text


def test_conform_report_writes_the_bug_reports(tmp_path: Path) -> None:
    from conform.cli import main

    _, crash = witness_outcomes("split-module-keep-order-returned-attribute")
    record.Recorder(tmp_path, "0").record(crash)
    assert main(["report", "--report", str(tmp_path)]) == 0  # a known divergence is not a new one
    report = tmp_path / "bugs" / "split-module-keep-order-returned-attribute.md"
    assert report.is_file() and "## Repro" in report.read_text()
    assert (tmp_path / "bugs" / "split-module-keep-order-returned-attribute.py").is_file()


#: A random-module spec (a shared Linear called twice, a matmul, a tuple output).
RANDOM_SPEC = {
    "format": "fx-conform.random/1", "dtype": "float32", "training": False,
    "inputs": [{"name": "x1", "shape": [3, 3], "dtype": "float32"}],
    "signature": {"default": None, "flag": None, "varkw": False},
    "nodes": [
        {"id": "v2", "op": "linear", "in": ["x1"], "attrs": {"attr": "fc2", "new": True, "in": 3, "out": 3, "bias": True},
         "shape": [3, 3], "dtype": "float32"},
        {"id": "v3", "op": "linear", "in": ["v2"], "attrs": {"attr": "fc2", "new": False, "in": 3, "out": 3, "bias": True},
         "shape": [3, 3], "dtype": "float32"},
        {"id": "v4", "op": "matmul", "in": ["v3", "v2"], "attrs": {"style": 0, "rank": 2}, "shape": [3, 3],
         "dtype": "float32"},
    ],
    "outputs": {"tuple": ["v4", {"list": ["v3"]}]},
    "stochastic": False,
}


@pytest.mark.parametrize(("stage", "symptom", "place", "exception"), [
    (Stage.COMPARE, Symptom.EAGER_MISMATCH, "upstream:outputs", None),
    (Stage.TRANSFORM_UPSTREAM, Symptom.CRASH, None, "KeyError"),
], ids=["outputs", "crash"])
def test_repro_of_a_random_module_upstream_handles_exits_zero(stage: Stage, symptom: Symptom, place: str | None,
                                                              exception: str | None, tmp_path: Path) -> None:
    case = Case("random", RANDOM_SPEC, seed=3)
    outcome = Outcome(key="k", case_id=case.id, source="random", transform="split_module", device="cpu",
                      verdict=Verdict.FAIL, stage=stage, symptom=symptom, place=place, exception=exception,
                      message="recorded by hand", spec=RANDOM_SPEC, params={"partition": {"matmul": 1}}, seed=3)
    script = standalone_repro(outcome, case)
    assert script is not None and "class GeneratedModule" in script
    path = tmp_path / "repro.py"
    path.write_text(script)
    result = run_isolated(path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "not reproduced" in result.stdout
