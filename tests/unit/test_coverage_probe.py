"""Coverage feedback: the measured files and lines of a row, the worker-side probe, and the
supervisor-side accumulator and its report shape."""

from __future__ import annotations

import ast
import json
import warnings

import pytest
import torch
import torch.fx
from torch.fx.passes import split_module as upstream_split_module

from conform.case import Case
from conform.coverage_map import (
    files_for,
    measurable,
    measurable_branches,
    measurable_lines,
    module_file,
)
from conform.coverage_probe import CoverageProbe, measuring
from conform.coverage_summary import CoverageAccumulator, ranges
from conform.engine import check
from conform.registry import TRANSFORMS, TransformSpec, get

SPLIT = get("split_module")
UPSTREAM_SPLIT = module_file("torch.fx.passes.split_module")


def _def_span(path: str, name: str) -> tuple[int, int]:
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    node = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name)
    return node.lineno, node.end_lineno or node.lineno


class _TwoAdds(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x + 1) + 2


def _split_upstream() -> None:
    gm = torch.fx.symbolic_trace(_TwoAdds())
    parts = {"add": 0, "add_1": 1}
    upstream_split_module.split_module(gm, gm, lambda node: parts[node.name])


def test_files_for_lists_upstream_target_first_and_reference_helpers() -> None:
    files = files_for(get("partition"))
    assert files["upstream"][0].endswith("torch/fx/experimental/accelerator_partitioner.py")
    assert files["upstream"][1].endswith("torch/fx/experimental/partitioner_utils.py")
    assert files["reference"][0].endswith("reference/accelerator_partitioner.py")
    assert any(p.endswith("reference/_partition_kl.py") for p in files["reference"])
    # the reference's own split_module is not the partition row's module
    assert not any(p.endswith("reference/split_module.py") for p in files["reference"])


def test_split_module_measurable_lines_are_its_body_not_unrelated_functions() -> None:
    lines = measurable_lines(SPLIT)[UPSTREAM_SPLIT]
    first, last = _def_span(UPSTREAM_SPLIT, "split_module")
    body = {n for n in lines if first < n <= last}
    assert len(body) > 100  # split_module's own statements, nested helpers included
    assert first not in lines  # the def line runs at import, not when the transform runs
    simple = _def_span(UPSTREAM_SPLIT, "split_module_simple")
    assert not any(simple[0] <= n <= simple[1] for n in lines)
    # every measurable line is an executable statement of coverage.py's own analysis
    import coverage
    from coverage.python import PythonFileReporter

    statements = PythonFileReporter(UPSTREAM_SPLIT, coverage.Coverage(data_file=None)).lines()
    assert lines <= statements
    branches = measurable_branches(SPLIT)[UPSTREAM_SPLIT]
    assert branches and all(a in lines for a, _ in branches)


@pytest.mark.parametrize("row", TRANSFORMS, ids=lambda r: r.name)
def test_every_row_has_measurable_lines_in_its_target_module_on_both_sides(row: TransformSpec) -> None:
    sides = measurable(row)
    for side in ("upstream", "reference"):
        main = sides[side][0]
        assert main.module.rpartition(".")[2] == row.target.partition(":")[0]
        assert main.lines, f"{row.name}: no measurable line in {main.path}"
        assert [m.path for m in sides[side]] == files_for(row)[side]


def test_covers_module_is_reached_through_the_import() -> None:
    upstream = {m.module: m for m in measurable(get("normalize_args"))["upstream"]}
    schemas = upstream["torch.fx.operator_schemas"]
    first, last = _def_span(schemas.path, "normalize_function")
    assert any(first < n <= last for n in schemas.lines)


def test_probe_reports_upstream_lines_reached_by_the_transform() -> None:
    probe = CoverageProbe([SPLIT], scope="process")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # files not run yet must not warn
        probe.start()
        try:
            _split_upstream()
            snapshot = probe.snapshot()
        finally:
            probe.stop()
    entry = snapshot["torch.fx.passes.split_module"]
    first, last = _def_span(UPSTREAM_SPLIT, "split_module")
    assert any(first < n <= last for n in entry["lines"])
    assert entry["lines"] == sorted(entry["lines"]) and entry["arcs"] == sorted(entry["arcs"])
    assert "reference.split_module" not in snapshot or not (
        set(snapshot["reference.split_module"]["lines"]) & measurable_lines(SPLIT)[files_for(SPLIT)["reference"][0]]
    )
    json.dumps(snapshot)  # goes over a pipe as JSON


def test_probe_measures_only_the_rows_files_and_an_empty_run_is_quiet() -> None:
    probe = CoverageProbe([get("shape_prop")], scope="process")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        probe.start()
        _split_upstream()
        probe.stop()
        assert "torch.fx.passes.split_module" not in probe.snapshot()


def test_transform_scope_traces_only_inside_measuring() -> None:
    probe = CoverageProbe([SPLIT], sample=1.0)
    with probe:
        _split_upstream()  # not a transform call made by the engine
        assert probe.snapshot() == {}
        with measuring():
            with measuring():  # nested: traced once, still tracing after the inner one ends
                pass
            _split_upstream()
    assert "torch.fx.passes.split_module" in probe.snapshot()
    with CoverageProbe([SPLIT], sample=1.0) as fresh:  # once stopped, another probe can start
        _split_upstream()
        assert fresh.snapshot() == {}


def test_sampled_probe_traces_a_seeded_share_of_transform_calls() -> None:
    def traced(seed: int) -> list[bool]:
        probe = CoverageProbe([SPLIT], sample=0.25, seed=seed)
        seen = []
        with probe:
            for _ in range(200):
                before = probe.traced
                with measuring():
                    with measuring():  # nested calls do not draw again
                        pass
                seen.append(probe.traced > before)
        assert probe.calls == 200 and probe.traced == sum(seen)
        return seen

    first = traced(1)
    assert 25 <= sum(first) <= 75
    assert traced(1) == first and traced(2) != first
    with pytest.raises(ValueError, match="sample"):
        CoverageProbe([SPLIT], sample=0.0)


def test_one_started_probe_per_process() -> None:
    with CoverageProbe([SPLIT]):
        with pytest.raises(RuntimeError, match="another CoverageProbe"):
            CoverageProbe([SPLIT]).start()


def test_probe_snapshot_through_the_engine_reaches_both_sides() -> None:
    probe = CoverageProbe([SPLIT], sample=1.0)
    with probe:
        outcomes = check(Case("samples", {"sample": "two_adds"}), SPLIT, params={"partition": {"add_1": 1}})
    assert [o.verdict.value for o in outcomes] == ["pass"]
    acc = CoverageAccumulator([SPLIT])
    new = acc.add(probe.snapshot(), 1.0)
    assert new["split_module"] > 0
    summary = acc.summary()["split_module"]
    assert 0 < summary["upstream"] < 100 and 0 < summary["reference"] < 100
    assert 0 < summary["upstream_branches"] < 100


def _snapshot(module: str, lines: list[int], arcs: list[list[int]] | None = None) -> dict[str, dict]:
    return {module: {"lines": lines, "arcs": arcs or []}}


def test_accumulator_merges_workers_and_series_grow_monotonically() -> None:
    lines = sorted(measurable_lines(SPLIT)[UPSTREAM_SPLIT])
    acc = CoverageAccumulator([SPLIT])
    module = "torch.fx.passes.split_module"
    assert acc.add(_snapshot(module, lines[:10]), 1.0)["split_module"] == 10
    assert acc.add(_snapshot(module, lines[5:20]), 2.0)["split_module"] == 10  # two workers overlap
    assert acc.add(_snapshot(module, lines[:20]), 3.0)["split_module"] == 0  # a repeated snapshot
    acc.add(_snapshot(module, lines[:30]), 2.5)  # late message: its time is clamped
    up = acc.report()["split_module"]["upstream"]
    assert up["reached"] == lines[:30]
    assert up["percent"] == round(100 * 30 / len(lines), 2)
    series = up["series"]
    assert [p[0] for p in series] == sorted(p[0] for p in series)
    assert [p[1] for p in series] == sorted(p[1] for p in series)
    assert series[0] == [0.0, 0.0] and series[-1] == [3.0, up["percent"]]
    assert len(series) == 4  # 0 s, then a point per change: 1 s, 2 s, 3 s (the clamped 2.5)
    acc.add(_snapshot(module, lines[:31]), 3.00041)  # the last change is the latest time
    acc.add(_snapshot(module, lines[:31]), 3.00042)
    series = acc.report()["split_module"]["upstream"]["series"]
    assert series[-1] == [3.0, round(100 * 31 / len(lines), 2)] and series[-2][0] == 3.0 and len(series) == 5


def test_report_shape_is_what_the_report_reads() -> None:
    row = get("partition")
    acc = CoverageAccumulator([row])
    up_lines = measurable(row)["upstream"]
    main, utils = up_lines
    some = sorted(main.lines)[:3]
    branch = sorted(main.branches)[0]
    acc.add({main.module: {"lines": some + [branch[0]], "arcs": [list(branch)]}}, 4.0)
    report = acc.report()
    assert set(report) == {"partition"} and set(report["partition"]) == {"upstream", "reference"}
    up = report["partition"]["upstream"]
    assert set(up) == {"file", "module", "lines", "reached", "unreached", "percent", "series", "branches",
                       "branch_percent", "files"}
    assert up["file"] == main.path and up["lines"] == sorted(main.lines)
    assert set(up["reached"]) == set(some) | {branch[0]}
    unreached = {n for a, b in up["unreached"] for n in range(a, b + 1)} & main.lines
    assert unreached == main.lines - set(up["reached"])
    assert up["branches"]["reached"] == 1 and up["branches"]["total"] == len(main.branches)
    assert list(branch) not in up["branches"]["unreached"]
    assert [f["file"] for f in up["files"]] == [utils.path]
    assert up["files"][0]["reached"] == [] and up["files"][0]["percent"] == 0.0
    # the side's percent counts every file of the side
    assert up["percent"] == round(100 * len(up["reached"]) / (len(main.lines) + len(utils.lines)), 2)
    ref = report["partition"]["reference"]
    assert ref["file"].endswith("reference/accelerator_partitioner.py") and ref["percent"] == 0.0
    json.dumps(report)


@pytest.mark.parametrize(("lines", "expected"), [([], []), ([3, 1, 2, 7, 9, 8], [[1, 3], [7, 9]]), ([5], [[5, 5]])])
def test_ranges(lines: list[int], expected: list[list[int]]) -> None:
    assert ranges(lines) == expected
