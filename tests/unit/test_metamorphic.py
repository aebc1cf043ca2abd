"""The metamorphic oracles: each catches a planted violation, with its own place in the
origin, and stays quiet on the real transforms."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.fx
from _known_traits import factory

from conform import registry
from conform.adapters import CONVENTIONS, Applied, Subject
from conform.engine import check
from conform.implementations import Implementation
from conform.outcome import Outcome, Stage, Symptom, Verdict
from conform.registry import Compose, Oracle, TransformSpec
from generators.sources import Built


class TwoOps(torch.nn.Module):
    def forward(self, x, w):
        y = torch.matmul(x, w).relu()
        return torch.add(y, x.sum(), alpha=2), torch.matmul(x * 2, w)


def two_ops() -> Built:
    return Built(TwoOps(), (torch.randn(3, 4), torch.randn(4, 4)))


class ConvBnDrop(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.bn = torch.nn.BatchNorm2d(4)
        self.drop = torch.nn.Dropout(0.3)

    def forward(self, x):
        return self.drop(torch.relu(self.bn(self.conv(x)))) * 2


def conv_bn_drop() -> Built:
    module = ConvBnDrop().eval()
    module.bn.running_mean.uniform_(-1, 1)
    return Built(module, (torch.randn(2, 3, 6, 6),))


CASE = factory("test_metamorphic", "two_ops")
CONV = factory("test_metamorphic", "conv_bn_drop")


def _values_check(t: torch.Tensor) -> torch.Tensor:
    # Python control flow on a tensor value: runs, but does not trace
    return t if bool(t.abs().sum() >= 0) else -t


def _graph_module(subject: Subject) -> torch.fx.GraphModule:
    return subject.graph_module


def _after_output(gm: torch.fx.GraphModule, target: Any, *extra: Any) -> None:
    """Route every returned value through ``target(value, *extra)``."""
    out = next(n for n in gm.graph.nodes if n.op == "output")
    with gm.graph.inserting_before(out):
        out.args = (torch.fx.map_arg(out.args[0], lambda v: gm.graph.call_function(target, (v, *extra))),)


def untraceable(impl: Implementation, row: TransformSpec, subject: Subject, params: dict[str, Any]) -> Applied:
    gm = _graph_module(subject)
    _after_output(gm, _values_check)
    gm.recompile()
    return Applied(runnable=gm, value=gm, subject=subject, graphs=[gm])


def grows(impl: Implementation, row: TransformSpec, subject: Subject, params: dict[str, Any]) -> Applied:
    """Multiplies every output by 1 again on every application: right, but never done."""
    gm = _graph_module(subject)
    _after_output(gm, torch.mul, 1.0)
    gm.recompile()
    return Applied(runnable=gm, value=gm, subject=subject, graphs=[gm])


def stale(impl: Implementation, row: TransformSpec, subject: Subject, params: dict[str, Any]) -> Applied:
    """Edits the graph after the last recompile: the module runs code its graph no longer gives."""
    gm = _graph_module(subject)
    gm.recompile()
    _after_output(gm, torch.neg)
    return Applied(runnable=gm, value=gm, subject=subject, graphs=[gm])


def doubly_negated(impl: Implementation, row: TransformSpec, subject: Subject, params: dict[str, Any]) -> Applied:
    gm = _graph_module(subject)
    _after_output(gm, torch.neg)
    _after_output(gm, torch.neg)
    gm.recompile()
    return Applied(runnable=gm, value=gm, subject=subject, graphs=[gm])


def drop_one_neg(impl: Implementation, row: TransformSpec, subject: Subject, params: dict[str, Any]) -> Applied:
    """A wrong peephole: removes the first torch.neg as if it were a no-op."""
    gm = _graph_module(subject)
    for node in gm.graph.nodes:
        if node.op == "call_function" and node.target is torch.neg:
            node.replace_all_uses_with(node.args[0])
            gm.graph.erase_node(node)
            break
    gm.recompile()
    return Applied(runnable=gm, value=gm, subject=subject, graphs=[gm])


def _row(name: str, oracles: set[Oracle], **extra: Any) -> TransformSpec:
    # a reimplemented target keeps the row two-sided in kind (reference side judged), whatever
    # its planted convention does
    return TransformSpec(name=name, target="split_module:split_module", convention=f"planted-{name}",
                         description="planted", oracles=frozenset({Oracle.EAGER, *oracles}), **extra)


@pytest.fixture
def planted(monkeypatch: pytest.MonkeyPatch) -> dict[str, TransformSpec]:
    drivers = {"untraceable": untraceable, "grows": grows, "stale": stale,
               "doubly_negated": doubly_negated, "drop_one_neg": drop_one_neg}
    for name, driver in drivers.items():
        monkeypatch.setitem(CONVENTIONS, f"planted-{name}", driver)
    rows = {
        "untraceable": _row("untraceable", {Oracle.RETRACE}),
        "grows": _row("grows", {Oracle.IDEMPOTENT}),
        "stale": _row("stale", {Oracle.ROUNDTRIP}),
        "doubly_negated": _row("doubly_negated", {Oracle.COMPOSE}, compose=(Compose("drop_one_neg"),)),
        "drop_one_neg": _row("drop_one_neg", set()),
    }
    monkeypatch.setattr(registry, "TRANSFORMS", (*registry.TRANSFORMS, *rows.values()))
    return rows


def _only_failure(outcomes: list[Outcome]) -> Outcome:
    failing = [o for o in outcomes if o.verdict is Verdict.FAIL]
    assert len(failing) == 1, "; ".join(o.describe() for o in outcomes)
    return failing[0]


def test_retrace_catches_a_module_that_does_not_trace_again(planted: dict[str, TransformSpec]) -> None:
    found = _only_failure(check(CASE, planted["untraceable"]))
    assert (found.stage, found.symptom, found.exception, found.place) == (
        Stage.TRANSFORM_REFERENCE, Symptom.CRASH, "TraceError", "retrace:reference")
    assert found.origin == "untraceable|transform-reference|crash|TraceError|retrace:reference"


def test_idempotence_catches_a_transform_that_is_never_done(planted: dict[str, TransformSpec]) -> None:
    found = _only_failure(check(CASE, planted["grows"]))
    assert (found.stage, found.symptom, found.place) == (Stage.COMPARE, Symptom.METAMORPHIC, "idempotent:reference")
    assert "mul" in found.diffs[0].detail


def test_roundtrip_catches_a_graph_edited_after_recompile(planted: dict[str, TransformSpec]) -> None:
    outcomes = check(CASE, planted["stale"])
    found = _only_failure(outcomes)
    assert (found.stage, found.symptom, found.place) == (Stage.COMPARE, Symptom.METAMORPHIC, "roundtrip:reference")
    assert "+    neg = torch.neg" in found.diffs[0].detail


def test_composition_catches_a_second_transform_that_breaks_the_output(planted: dict[str, TransformSpec]) -> None:
    found = _only_failure(check(CASE, planted["doubly_negated"]))
    assert (found.stage, found.symptom, found.place) == (
        Stage.COMPARE, Symptom.METAMORPHIC, "compose:drop_one_neg:reference")
    # each on its own conforms: only the composition shows the second one's bug
    assert [o.verdict for o in check(CASE, planted["drop_one_neg"])] == [Verdict.PASS]


def test_the_planted_transforms_pass_without_the_oracle(planted: dict[str, TransformSpec]) -> None:
    for name in ("untraceable", "grows", "doubly_negated"):
        row = planted[name]
        quiet = TransformSpec(**{**row.__dict__, "oracles": frozenset({Oracle.EAGER})})
        assert [o.verdict for o in check(CASE, quiet)] == [Verdict.PASS], name


@pytest.mark.parametrize(("case", "transform", "params"), [
    (CASE, "normalize_args", {}),
    (CASE, "normalize_operators", {}),
    (CASE, "merge_matmul", {}),
    (CONV, "fuse", {"inplace": False}),
    (CONV, "remove_dropout", {}),
    (CONV, "optimize_for_inference", {"conv_bn_fuse": True, "remove_dropout": True, "mkldnn": "off"}),
    (CASE, "split_module", {"partition": {"matmul": 1}}),
])
def test_the_real_transforms_pass(case: Any, transform: str, params: dict[str, Any]) -> None:
    outcomes = check(case, transform, params=params)
    assert all(o.verdict in (Verdict.PASS, Verdict.KNOWN) for o in outcomes), "; ".join(
        o.describe() for o in outcomes)
    row = registry.get(transform)
    ran = outcomes[0].notes["metamorphic"]
    assert "retrace:reference" in ran and "roundtrip:reference" in ran
    if Oracle.UPSTREAM in row.oracles and all(o.verdict is Verdict.PASS for o in outcomes):
        assert "retrace:upstream" in ran  # a side already known to diverge is not judged again
    if Oracle.IDEMPOTENT in row.oracles:
        assert "idempotent:reference" in ran


def rpow() -> Built:
    class RPow(torch.nn.Module):
        def forward(self, x, y):
            return x.__rpow__(y)

    return Built(RPow(), (torch.rand(3) + 0.5, torch.rand(3)))


def test_a_call_traced_back_in_another_spelling_is_not_a_change() -> None:
    outcomes = check(factory("test_metamorphic", "rpow"), "merge_matmul")
    assert [o.verdict for o in outcomes] == [Verdict.PASS], "; ".join(o.describe() for o in outcomes)
    assert "idempotent:upstream" in outcomes[0].notes["metamorphic"]


def test_upstream_merge_matmul_is_known_to_break_on_retrace_and_reapply() -> None:
    outcomes = check(CASE, "merge_matmul")
    known = {o.place: o.known_id for o in outcomes if o.verdict is Verdict.KNOWN}
    assert known == {"retrace:upstream": "merge-matmul-retraced-split-sizes",
                     "idempotent:upstream": "merge-matmul-retraced-split-sizes"}
    assert not [o for o in outcomes if o.verdict is Verdict.FAIL]
