"""Metamorphic oracles: relations a transform's output must satisfy on its own, checked on
each implementation's result after the differential oracles.

* ``retrace``: the transformed module traces again (``symbolic_trace``, keeping the case's
  leaf modules) and the re-traced module computes what the transformed one does;
* ``idempotent``: applying the transform to its own output changes nothing, neither the
  graph (node by node: op, target, arguments) nor what it computes;
* ``compose``: a second transform (the row's :class:`~conform.registry.Compose` pairs)
  applied to the output still computes what the output does;
* ``roundtrip``: every GraphModule the transform produced regenerates the same ``code``
  from a copy of its graph (a graph edited after the last ``recompile`` fails this).

Each check runs on the reference's and, when the row has an upstream side, on upstream's
result, as the stage ``"<oracle>-<impl>"`` bounded by the row's time limit; a finding's
place is ``"<oracle>:<impl>"`` (``"compose:<then>:<impl>"`` for a composition), so a
failure on the upstream side is an upstream divergence and one on the reference side a
reference bug. A side whose transform failed, whose graph fails lint or whose module does
not run is skipped: the differential oracles already report it.
"""

from __future__ import annotations

import copy
import difflib
from typing import TYPE_CHECKING, Any

import torch
import torch.fx

from conform.adapters import NotApplicable, Subject
from conform.compare import compare_values
from conform.execute import Failure, Timeout, execute, quiet, seed_everything, stage
from conform.outcome import Mismatch, Stage, Symptom
from conform.registry import Oracle, load

if TYPE_CHECKING:
    from conform.engine import Side, _Findings

_STAGE_OF = {"reference": Stage.TRANSFORM_REFERENCE, "upstream": Stage.TRANSFORM_UPSTREAM}


class _Tracer(torch.fx.Tracer):
    def __init__(self, leaves: tuple[type, ...]) -> None:
        super().__init__()
        self._leaves = leaves

    def is_leaf_module(self, m: torch.nn.Module, qualname: str) -> bool:
        return isinstance(m, self._leaves) or super().is_leaf_module(m, qualname)


def retrace(module: torch.nn.Module, leaves: tuple[type, ...] = ()) -> torch.fx.GraphModule:
    """``symbolic_trace(module)``, keeping ``leaves`` as ``call_module`` nodes."""
    tracer = _Tracer(leaves)
    graph = tracer.trace(module)
    return torch.fx.GraphModule(tracer.root, graph, module.__class__.__name__)


def graph_shape(gm: torch.fx.GraphModule) -> list[tuple[str, str, str]]:
    """The graph node by node as ``(op, target, arguments)``, arguments naming nodes by their
    position, so two graphs that differ only in node names have the same shape."""
    index = {node: i for i, node in enumerate(gm.graph.nodes)}

    def arg(value: Any) -> Any:
        return torch.fx.node.map_arg(value, lambda n: f"%{index.get(n, '?')}")

    def target(node: torch.fx.Node) -> str:
        if isinstance(node.target, str):
            return node.target
        return torch.fx.node._get_qualified_name(node.target)

    return [(n.op, target(n), repr((arg(n.args), arg(n.kwargs)))) for n in gm.graph.nodes
            if n.op != "placeholder"]


def halves(gm: torch.fx.GraphModule) -> dict[str, Any]:
    """``split_module`` parameters for a composition: the first half of the computing nodes
    in partition 0, the rest in partition 1."""
    nodes = [n.name for n in gm.graph.nodes if n.op not in ("placeholder", "output", "get_attr")]
    return {"partition": {name: int(i >= len(nodes) // 2) for i, name in enumerate(nodes)}}


class _Run:
    """The metamorphic checks of one side, reporting into the engine's findings."""

    def __init__(self, f: _Findings, side: Side) -> None:
        self.f, self.side, self.impl = f, side, side.impl
        self.prepared, self.row = f.prepared, f.row
        self.meta_only = self.prepared.built.stochastic
        self._retraced: tuple[torch.fx.GraphModule | None, BaseException | None] | None = None

    @property
    def runnable(self) -> Any:
        return self.side.applied.runnable

    def report_failure(self, oracle: str, failure: Failure | None, what: str, *, timed_out: bool = False,
                       executing: bool = False) -> None:
        place = f"{oracle}:{self.impl}"
        if timed_out:
            self.f.add(_STAGE_OF[self.impl] if not executing else Stage.EXECUTE, Symptom.TIMEOUT,
                       f"{oracle}: {what} ran past its time limit ({self.impl})", place=place)
            return
        stage_ = Stage.EXECUTE if executing else _STAGE_OF[self.impl]
        self.f.add(stage_, Symptom.CRASH,
                   f"{oracle}: {what} raises {failure.exception}: {failure.message} ({self.impl})",
                   failure=failure, place=place)

    def compare(self, oracle: str, module: Any, label: str, place: str | None = None) -> bool:
        """Run ``module`` on the case's inputs and compare with the transformed module's
        outputs; report and return False on a difference."""
        place = place or f"{oracle}:{self.impl}"
        with quiet():
            run = execute(module, self.prepared.built.args, self.prepared.built.kwargs,
                          seed=self.prepared.case.seed, timeout_s=self.row.timeout_s,
                          stage_name=f"{oracle}-{self.impl}-execute")
        if not run.ok:
            what = f"the {label} module"
            if run.timed_out:
                self.f.add(Stage.EXECUTE, Symptom.TIMEOUT, f"{oracle}: {what} ran past its time limit ({self.impl})",
                           place=place)
            else:
                self.f.add(Stage.EXECUTE, Symptom.CRASH,
                           f"{oracle}: {what} raises {run.failure.exception}: {run.failure.message}, where "
                           f"{self.impl}'s transformed module runs", failure=run.failure, place=place)
            return False
        diff = compare_values(self.side.execution.outputs, run.outputs, meta_only=self.meta_only)
        if diff:
            self.f.add(Stage.COMPARE, Symptom.METAMORPHIC,
                       f"{oracle}: the {label} module computes different outputs than {self.impl}'s "
                       "transformed module", place=place,
                       diffs=[Mismatch(f"{self.impl} transformed", label, "outputs", diff)])
            return False
        return True

    def _trace(self) -> tuple[torch.fx.GraphModule | None, BaseException | None]:
        """The transformed module traced again, or what tracing it raised; traced once."""
        if self._retraced is None:
            try:
                with quiet(), stage(f"retrace-{self.impl}", self.row.timeout_s):
                    seed_everything(self.prepared.case.seed)
                    self._retraced = (retrace(self.runnable, self.prepared.built.leaf_modules), None)
            except (Exception, Timeout) as exc:
                self._retraced = (None, exc)
        return self._retraced

    def traced(self) -> torch.fx.GraphModule | None:
        return self._trace()[0]

    # --- the oracles ---------------------------------------------------------------------

    def check_retrace(self) -> None:
        retraced, error = self._trace()
        if isinstance(error, Timeout):
            self.report_failure("retrace", None, "tracing the transformed module", timed_out=True)
        elif error is not None:
            if self._case_retraces():  # else the traced case itself does not trace again
                self.report_failure("retrace", Failure.capture(error), "tracing the transformed module")
        else:
            self.compare("retrace", retraced, "re-traced")

    def _case_retraces(self) -> bool:
        try:
            with quiet(), stage(f"retrace-{self.impl}", self.row.timeout_s):
                retrace(self.prepared.graph_module, self.prepared.built.leaf_modules)
        except (Exception, Timeout):
            return False
        return True

    def _again(self, row: Any, params: dict[str, Any], oracle: str, place: str) -> Any:
        """Apply ``row`` to the transformed module; the Applied, or None (reported or moot)."""
        module = self.runnable
        graph_module = module if isinstance(module, torch.fx.GraphModule) else self.traced()
        if graph_module is None:
            return None
        subject = Subject(module, graph_module, self.prepared.built.args, self.prepared.built.kwargs).clone()
        seed_everything(self.prepared.case.seed)
        try:
            with quiet(), stage(f"{oracle}-{self.impl}", row.timeout_s):
                applied = row.load(self.impl)(subject, dict(params))
                for gm in applied.graphs:
                    gm.graph.lint()
        except NotApplicable:
            return None
        except Timeout:
            self.f.add(_STAGE_OF[self.impl], Symptom.TIMEOUT,
                       f"{oracle}: applying {row.name} to {self.impl}'s output ran past its time limit",
                       place=place)
            return None
        except Exception as exc:
            failure = Failure.capture(exc)
            self.f.add(_STAGE_OF[self.impl], Symptom.CRASH,
                       f"{oracle}: applying {row.name} to {self.impl}'s output raises {failure.exception}: "
                       f"{failure.message}", failure=failure, place=place)
            return None
        return applied

    def check_idempotent(self) -> None:
        place = f"idempotent:{self.impl}"
        applied = self._again(self.row, self.f.params, "idempotent", place)
        if applied is None or applied.runnable is None:
            return
        once, twice = self.runnable, applied.runnable
        if isinstance(once, torch.fx.GraphModule) and isinstance(twice, torch.fx.GraphModule):
            a, b = graph_shape(once), graph_shape(twice)
            if a != b:
                self.f.add(Stage.COMPARE, Symptom.METAMORPHIC,
                           f"idempotent: applying the transform to {self.impl}'s output changes the graph",
                           place=place, diffs=[Mismatch("once", "twice", "graph", _shape_diff(a, b))])
                return
        self.compare("idempotent", twice, "twice-transformed", place)

    def check_compose(self, then: str, params_path: str | None) -> None:
        from conform.registry import get

        row = get(then)
        place = f"compose:{then}:{self.impl}"
        module = self.runnable
        graph_module = module if isinstance(module, torch.fx.GraphModule) else self.traced()
        if graph_module is None:
            return
        params = load(params_path)(graph_module) if params_path else {}
        applied = self._again(row, params, "compose", place)
        if applied is None or applied.runnable is None:
            return
        self.compare("compose", applied.runnable, f"{then}-composed", place)

    def check_roundtrip(self) -> None:
        place = f"roundtrip:{self.impl}"
        for gm in self.side.applied.graphs:
            try:
                with quiet(), stage(f"roundtrip-{self.impl}", self.row.timeout_s):
                    fresh = torch.fx.GraphModule(gm, copy.deepcopy(gm.graph), gm.__class__.__name__)
            except Timeout:
                self.report_failure("roundtrip", None, "regenerating the code", timed_out=True)
                return
            except Exception as exc:
                self.report_failure("roundtrip", Failure.capture(exc), "regenerating the code from the graph")
                return
            if _body(fresh.code) != _body(gm.code):
                detail = "\n".join(difflib.unified_diff(gm.code.splitlines(), fresh.code.splitlines(),
                                                        "module code", "code from its graph", lineterm=""))
                self.f.add(Stage.COMPARE, Symptom.METAMORPHIC,
                           f"roundtrip: {self.impl}'s module runs code that its graph no longer gives "
                           "(the graph changed after the last recompile)",
                           place=place, diffs=[Mismatch("module code", "code from its graph", "code", detail[-3000:])])
                return


def _body(code: str) -> str:
    return code.strip()


def _shape_diff(a: list[tuple[str, str, str]], b: list[tuple[str, str, str]]) -> str:
    lines = difflib.unified_diff([" ".join(x) for x in a], [" ".join(x) for x in b], "once", "twice", lineterm="")
    return "\n".join(lines)[-3000:]


METAMORPHIC = (Oracle.RETRACE, Oracle.IDEMPOTENT, Oracle.COMPOSE, Oracle.ROUNDTRIP)


def judge(f: _Findings, sides: dict[str, Side]) -> list[str]:
    """Run the row's metamorphic oracles on every side that produced a running module; the
    ``"<oracle>:<impl>"`` checks that ran."""
    row = f.row
    wanted = [o for o in METAMORPHIC if o in row.oracles]
    ran: list[str] = []
    if not wanted:
        return ran
    for side in sides.values():
        if (side.applied is None or side.lint is not None or side.execution is None
                or not side.execution.ok or not isinstance(side.applied.runnable, torch.nn.Module)):
            continue
        run = _Run(f, side)
        if Oracle.ROUNDTRIP in wanted:
            run.check_roundtrip()
        if Oracle.RETRACE in wanted:
            run.check_retrace()
        if Oracle.IDEMPOTENT in wanted:
            run.check_idempotent()
        if Oracle.COMPOSE in wanted:
            for pair in row.compose:
                run.check_compose(pair.then, pair.params)
        ran.extend(f"{o.value}:{side.impl}" for o in wanted)
    return ran
