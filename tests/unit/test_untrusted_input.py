"""Records handed in from elsewhere run nothing they name.

A results file may have been written by anybody. Replaying or reporting it must never
import a module, call a function or paste a string into code because the file says so:
a factory case is built only from a trusted function, a random spec only when every field
passes the schema, a catalogue spec only when it names a catalogue entry, and the report
links only to its own repro scripts.
"""

from __future__ import annotations

import copy
import html.parser
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from conform.cli import main
from conform.outcome import Outcome, Stage, Symptom, Verdict
from generators.sources import (
    FactorySource,
    SpecError,
    UntrustedFactoryError,
    get_source,
    is_trusted,
    resolve_factory,
    trust_factory,
    trusted_factories,
)
from tests.generators.test_spec_schema import SPEC as RANDOM_SPEC

REPO = Path(__file__).resolve().parents[2]
KEY = "0123456789abcdef"


def record(source: str, spec: Any, *, key: str = KEY, transform: str = "-", **fields: Any) -> dict[str, Any]:
    """One outcome record as ``conform run`` writes it."""
    outcome = Outcome(key=key, case_id=f"{source}:case#{key[:8]}", source=source, transform=transform,
                      device="cpu", verdict=Verdict.FAIL, stage=Stage.GENERATE, symptom=Symptom.CRASH,
                      spec=spec, **fields)
    return outcome.to_json()


def write_records(report_dir: Path, records: list[dict[str, Any]]) -> Path:
    """Write ``records`` where ``conform replay`` and ``conform report`` read them (the one
    place that knows the store's layout)."""
    lines = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records)
    (report_dir / "parts").mkdir(parents=True, exist_ok=True)
    (report_dir / "parts" / "results-w0.jsonl").write_text(lines)
    (report_dir / "results.jsonl").write_text(lines)
    return report_dir


def replay(capsys: pytest.CaptureFixture[str], report: Path, *extra: str, key: str = KEY) -> tuple[int, str, str]:
    code = main(["replay", key, "--report", str(report), *extra])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def user_cases(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An importable package of the user's: a case factory, and a module whose import
    leaves a marker file (proof that it was imported)."""
    package = tmp_path / "pkg"
    package.mkdir()
    marker = tmp_path / "imported.marker"
    (package / "user_cases.py").write_text(textwrap.dedent("""
        import torch
        from generators.sources import Built

        def two_adds():
            return Built(torch.nn.Identity(), (torch.ones(2),))
    """))
    (package / "import_marks.py").write_text(f"open({str(marker)!r}, 'w').write('imported')\n"
                                             "def case():\n    raise AssertionError('called')\n")
    monkeypatch.syspath_prepend(str(package))
    for name in ("user_cases", "import_marks"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    return marker


# --- factory cases ------------------------------------------------------------------------------


def test_replay_of_an_os_system_factory_is_refused_and_runs_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "system.marker"
    spec = {"factory": "os:system", "kwargs": {"command": f"id > {marker}"}}
    report = write_records(tmp_path / "report", [record("factory", spec)])
    code, _, err = replay(capsys, report)
    assert code == 2
    assert "'os:system' is not a trusted case factory" in err and "--case os:system" in err
    assert len(err.strip().splitlines()) == 1
    assert not marker.exists()


def test_an_untrusted_factory_module_is_never_imported(
        tmp_path: Path, user_cases: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = write_records(tmp_path / "report", [record("factory", {"factory": "import_marks:case"})])
    code, _, err = replay(capsys, report)
    assert code == 2 and "'import_marks:case' is not a trusted case factory" in err
    assert not user_cases.exists() and "import_marks" not in sys.modules


def test_a_factory_named_with_case_replays(tmp_path: Path, user_cases: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = write_records(tmp_path / "report", [record("factory", {"factory": "user_cases:two_adds"})])
    code, _, err = replay(capsys, report)
    assert code == 2 and "--case user_cases:two_adds" in err
    code, out, _ = replay(capsys, report, "--case", "user_cases:two_adds")
    assert code == 0 and "builds and traces" in out


def test_witness_factories_replay_without_case(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = {"factory": "conform.witnesses.split:returns_parameter"}
    report = write_records(tmp_path / "report", [record("factory", spec)])
    code, out, _ = replay(capsys, report)
    assert code == 0 and "builds and traces" in out


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"factory": "os.system"}, "factory: 'os.system' is not a 'MODULE:FUNCTION' name"),
        ({"factory": "builtins:__import__"}, "is not a 'MODULE:FUNCTION' name"),
        ({"factory": "conform.witnesses.split:torch.load"}, "is not a 'MODULE:FUNCTION' name"),
        ({"factory": "conform.witnesses.split:*"}, "is not a 'MODULE:FUNCTION' name"),
        ({"factory": "conform.witnesses.split:kwargs_forward", "kwargs": {"__class__": 1}}, "kwargs: key '__class__'"),
        ({"factory": "conform.witnesses.split:kwargs_forward", "kwargs": {"x": float("inf")}}, "kwargs.x: inf is not a finite"),
        ({"factory": "conform.witnesses.split:kwargs_forward", "code": "x"}, "spec: unknown field 'code'"),
        ({"kwargs": {}}, "factory: missing"),
    ],
)
def test_malformed_factory_specs_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             spec: dict[str, Any], message: str) -> None:
    report = write_records(tmp_path / "report", [record("factory", spec)])
    code, _, err = replay(capsys, report)
    assert code == 2 and message in err


def test_a_trusted_module_vouches_only_for_the_functions_it_defines() -> None:
    import conform.known  # noqa: F401  (trusts the witness modules)

    assert "conform.witnesses.split:*" in trusted_factories()
    assert is_trusted("conform.witnesses.split:returns_parameter")
    assert not is_trusted("conform.witnesses.split:_factory")
    # imported into the witness module, not defined there
    for name in ("Case", "Built", "torch"):
        with pytest.raises(SpecError, match="is not a function defined in conform.witnesses.split"):
            resolve_factory(f"conform.witnesses.split:{name}")
    with pytest.raises(UntrustedFactoryError):
        resolve_factory("conform.witnesses:split")


def test_trust_factory_refuses_names_that_are_not_factories() -> None:
    for bad in ("os", "os:", ":system", "os:system()", "a b:c", "class:f", "m:__init__"):
        with pytest.raises(SpecError):
            trust_factory(bad)


def test_factory_source_draws_only_the_named_cases() -> None:
    from hypothesis import find

    names = ["conform.witnesses.split:returns_parameter", "conform.witnesses.split:kwargs_forward"]
    source = FactorySource(names=names)
    assert source.count() == 2
    for name in names:
        assert find(source.specs(), lambda spec, name=name: spec["factory"] == name) == {"factory": name}
    assert FactorySource().specs().is_empty


def test_a_campaign_refuses_a_source_with_nothing_to_draw(monkeypatch: pytest.MonkeyPatch) -> None:
    from hypothesis import strategies as st

    from conform.campaign import CampaignConfig
    from conform.errors import UsageError
    from generators import sources

    with pytest.raises(UsageError, match="the factory source has no cases to draw"):
        CampaignConfig(sources=("factory",)).validate()
    CampaignConfig(sources=("factory",), cases=("conform.witnesses.split:returns_parameter",)).validate()

    class Empty(sources.Source):
        name = "empty"

        def specs(self) -> st.SearchStrategy[Any]:
            return st.nothing()

    monkeypatch.setitem(sources._FACTORIES, "empty", Empty)
    with pytest.raises(UsageError, match="source 'empty' has no cases to draw"):
        CampaignConfig(sources=("empty",)).validate()


# --- the factory source on the command line ----------------------------------------------------


def _conform(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "conform.cli", *argv], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, env={**__import__("os").environ, "PYTHONPATH": str(REPO)})


def test_factory_source_without_case_exits_2_at_once(tmp_path: Path) -> None:
    report = tmp_path / "report"
    # without the check this run spins at full CPU forever, drawing from an empty strategy
    done = _conform("run", "--source", "factory", "--max-cases", "3", "--report", str(report), timeout=60)
    assert done.returncode == 2
    assert "the factory source has no cases to draw: name them with --case MODULE:FUNCTION" in done.stderr
    assert not report.exists()


@pytest.mark.parametrize("bad", ["os.system", "os:system()", "a:__import__", "x:class"])
def test_a_malformed_case_option_exits_2(capsys: pytest.CaptureFixture[str], bad: str) -> None:
    with pytest.raises(SystemExit) as info:
        main(["run", "--source", "factory", "--case", bad])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "expected MODULE:FUNCTION naming a case factory" in err and len(err.strip().splitlines()) == 1


def test_a_campaign_runs_hostile_strings_and_reports_them_as_text(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "report"
    code = main(["run", "--source", "factory", "--case", "tests.hostile_cases:script_exception_type",
                 "--case", "tests.hostile_cases:script_exception_message", "--max-cases", "2",
                 "--transform", "shape_prop", "--device", "cpu", "--no-shrink", "--report", str(report), "--quiet",
                 "--database", ""])
    assert code == 1
    text = (report / "index.html").read_text()
    assert "<script>alert" not in text.lower()  # the page's own script is the only script
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    from conform.store import Store

    results = [o.to_json() for o in Store.open(report).outcomes()]
    assert {r["spec"]["factory"].rpartition(":")[2] for r in results} <= {"script_exception_type",
                                                                         "script_exception_message"}
    assert _links(text) == sorted(r["repro"] for r in results)


# --- random and catalogue specs -----------------------------------------------------------------


def test_replay_of_an_injected_input_name_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "injected.marker"
    spec = copy.deepcopy(RANDOM_SPEC)
    spec["inputs"][0]["name"] = f"x1=__import__('os').system('touch {marker}')"
    report = write_records(tmp_path / "report", [record("random", spec)])
    code, _, err = replay(capsys, report)
    assert code == 2
    assert "inputs[0].name: " in err and "is not an identifier" in err
    assert not marker.exists()


@pytest.mark.parametrize(
    ("source", "spec", "message"),
    [
        ("samples", {"sample": "__import__"}, "sample: unknown sample '__import__'"),
        ("samples", {"sample": "two_adds", "x": 1}, "spec: unknown field 'x'"),
        ("opinfo", {"op": "os.system", "sample": 0}, "op: 'os.system' is not an OpInfo case"),
        ("opinfo", {"op": "add", "sample": True}, "sample: True is not a int"),
        ("opinfo", {"op": "add", "sample": 999}, "sample: add has no indexed sample 999"),
        ("nn_modules", {"entry": "Conv2d'); import os; ('"}, "entry: "),
        ("nn_modules", {"entry": ["Conv2d"]}, "entry: ['Conv2d'] is not a str"),
        ("torchvision", {"model": "../../resnet18", "size": 32}, "model: '../../resnet18' is not a torchvision model"),
        ("torchvision", {"model": "resnet18", "size": 7}, "size: 7 is not one of"),
        ("random", ["not", "a", "spec"], "a random-module spec is a dict"),
    ],
)
def test_catalogue_specs_name_catalogue_entries(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                source: str, spec: Any, message: str) -> None:
    with pytest.raises(SpecError) as info:
        get_source(source).validate(spec)
    assert message in str(info.value)
    report = write_records(tmp_path / "report", [record(source, spec)])
    code, _, err = replay(capsys, report)
    assert code == 2 and message in err


def test_an_unknown_source_in_a_record_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = write_records(tmp_path / "report", [record("os", {"factory": "os:system"})])
    code, _, err = replay(capsys, report)
    assert code == 2 and "names an unknown source 'os'" in err and "random" in err


# --- the report ---------------------------------------------------------------------------------


class _Links(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.links.extend(value or "" for name, value in attrs if name in ("href", "src", "action", "formaction"))


_ISSUE = re.compile(r"https://github\.com/pytorch/pytorch/(issues|pull)/\d+")


def _links(text: str) -> list[str]:
    """The page's links out of itself that come from records: anchors within the page and
    the registry's own PyTorch issue links (from the project, not from a record) excluded."""
    parser = _Links()
    parser.feed(text)
    return sorted(link for link in parser.links if not link.startswith("#") and not _ISSUE.fullmatch(link))


def test_the_report_links_only_to_its_own_repro_scripts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hostile = ["javascript:alert(1)", "../../etc/passwd", "https://evil.example/x.py", "repro/../../x.py",
               "repro/0123456789ABCDEF.py", "/repro/0123456789abcdef.py"]
    good = "repro/fedcba9876543210.py"
    records = [
        record("samples", {"sample": "two_adds"}, key=f"{i:016x}", repro=path,
               message="<script>alert(1)</script>", exception=f"<script>alert({i})</script>")
        for i, path in enumerate([*hostile, good])
    ]
    report = write_records(tmp_path / "report", records)
    (report / "repro").mkdir(exist_ok=True)
    (report / good).write_text("# the repro the recorder wrote\n")
    assert main(["report", "--report", str(report)]) == 1
    capsys.readouterr()
    text = (report / "index.html").read_text()
    assert _links(text) == [good]
    for path in hostile:
        assert f'href="{path}' not in text
    assert 'href="javascript' not in text.lower() and "src=\"javascript" not in text.lower()
    assert "<script>alert" not in text.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text


def test_a_case_that_cannot_be_loaded_exits_2_before_the_campaign(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "report"
    code = main(["run", "--source", "factory", "--case", "no_such_module_here:cases", "--max-cases", "1",
                 "--report", str(report)])
    err = capsys.readouterr().err
    assert code == 2 and "--case no_such_module_here:cases: cannot load it (ModuleNotFoundError" in err
    assert not report.exists()


def test_a_record_with_params_that_are_not_an_object_is_refused(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    rec = record("samples", {"sample": "two_adds"}, transform="split_module")
    rec["params"] = "__import__('os')"
    code, _, err = replay(capsys, write_records(tmp_path / "report", [rec]))
    assert code == 2 and "field 'params' is str, expected an object" in err
