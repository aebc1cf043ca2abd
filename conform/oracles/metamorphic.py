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
reference bug. A side whose transform failed, whose graph fails lint, whose module does
not run or that an earlier oracle already blamed is skipped: the differential oracles
already report it.
"""

from __future__ import annotations

import difflib
import hashlib
from typing import TYPE_CHECKING, Any

import torch
import torch.fx

from conform.adapters import NotApplicable, Subject, clone_values
from conform.compare import compare_values_entries
from conform.execute import Failure, Timeout, execute, quiet, seed_everything, stage
from conform.messages import say
from conform.outcome import Mismatch, Stage, Symptom
from conform.registry import Oracle, load

if TYPE_CHECKING:
    from conform.engine import Side, _Findings

_STAGE_OF = {"reference": Stage.TRANSFORM_REFERENCE, "upstream": Stage.TRANSFORM_UPSTREAM,
             "user": Stage.TRANSFORM_REFERENCE}


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

    def report_failure(self, oracle: str, failure: Failure | None, what: str, *, timed_out: bool = False) -> None:
        place = f"{oracle}:{self.impl}"
        if timed_out:
            self.f.add(_STAGE_OF[self.impl], Symptom.TIMEOUT,
                       say("oracle.timeout", oracle=oracle, what=what, impl=self.impl), side=self.impl, place=place)
            return
        self.f.add(_STAGE_OF[self.impl], Symptom.CRASH,
                   say("oracle.crash", oracle=oracle, what=what, exception=failure.exception,
                       error=failure.message, impl=self.impl),
                   side=self.impl, failure=failure, place=place)

    def compare(self, oracle: str, module: Any, label: str, place: str | None = None) -> bool:
        """Run ``module`` on the case's inputs and compare with the transformed module's
        outputs; report and return False on a difference."""
        place = place or f"{oracle}:{self.impl}"
        with quiet():
            run = execute(module, self.prepared.built.args, self.prepared.built.kwargs,
                          seed=self.prepared.case.seed, timeout_s=self.row.timeout_s,
                          stage_name=f"{oracle}-{self.impl}-execute")
        if not run.ok:
            what = say("oracle.module", label=label)
            if run.timed_out:
                self.f.add(Stage.EXECUTE, Symptom.TIMEOUT,
                           say("oracle.timeout", oracle=oracle, what=what, impl=self.impl),
                           side=self.impl, place=place)
            else:
                self.f.add(Stage.EXECUTE, Symptom.CRASH,
                           say("oracle.execute-crash", oracle=oracle, what=what, exception=run.failure.exception,
                               error=run.failure.message, impl=self.impl),
                           side=self.impl, failure=run.failure, place=place)
            return False
        found = compare_values_entries(self.side.execution.outputs, run.outputs, meta_only=self.meta_only)
        if found:
            diff, entries = found
            self.f.add(Stage.COMPARE, Symptom.METAMORPHIC,
                       say("oracle.outputs", oracle=oracle, label=label, impl=self.impl), side=self.impl,
                       place=place, diffs=[Mismatch(f"{self.impl} transformed", label, "outputs", diff,
                                                    entries=entries)])
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
            self.report_failure("retrace", None, say("oracle.retracing"), timed_out=True)
        elif error is not None:
            if self._case_retraces():  # else the traced case itself does not trace again
                self.report_failure("retrace", Failure.capture(error), say("oracle.retracing"))
        elif not (isinstance(self.runnable, torch.fx.GraphModule)
                  and graph_shape(self.runnable) == graph_shape(retraced)):
            # the re-traced module reads the very attributes and submodules of the transformed
            # one: the same graph computes the same
            self.compare("retrace", retraced, "re-traced")

    def _case_retraces(self) -> bool:
        try:
            with quiet(), stage(f"retrace-{self.impl}", self.row.timeout_s):
                retrace(self.prepared.graph_module, self.prepared.built.leaf_modules)
        except (Exception, Timeout):
            return False
        return True

    def _again(self, row: Any, params: dict[str, Any], oracle: str, place: str, *,
               copy_subject: bool = True) -> Any:
        """Apply ``row`` to the transformed module (a copy of it unless ``copy_subject`` is
        False); the Applied, or None (reported or moot)."""
        module = self.runnable
        graph_module = module if isinstance(module, torch.fx.GraphModule) else self.traced()
        if graph_module is None:
            return None
        built = self.prepared.built
        subject = Subject(module, graph_module, built.args, built.kwargs)
        # the case's inputs are shared by every check: a transform that runs the graph gets copies
        subject = subject.clone() if copy_subject else Subject(
            module, graph_module, clone_values(built.args), clone_values(built.kwargs))
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
                       say("oracle.again-timeout", oracle=oracle, transform=row.name, impl=self.impl),
                       side=self.impl, place=place)
            return None
        except Exception as exc:
            failure = Failure.capture(exc)
            self.f.add(_STAGE_OF[self.impl], Symptom.CRASH,
                       say("oracle.again-crash", oracle=oracle, transform=row.name, impl=self.impl,
                           exception=failure.exception, error=failure.message),
                       side=self.impl, failure=failure, place=place)
            return None
        return applied

    def check_idempotent(self) -> None:
        """Runs last: the second application may change the transformed module in place.

        A transform that traces its input re-spells some calls (``x.__rpow__(y)`` is traced
        back as ``y ** x``): the twice-transformed graph may equal the output's graph or the
        output's graph traced again; either is unchanged by the transform.
        """
        place = f"idempotent:{self.impl}"
        once = self.runnable
        before = _program(once) if isinstance(once, torch.fx.GraphModule) else None
        spellings = []
        if before is not None:
            retraced = self.traced()
            spellings = [before[0]] if retraced is None else [before[0], graph_shape(retraced)]
        applied = self._again(self.row, self.f.params, "idempotent", place, copy_subject=False)
        if applied is None or applied.runnable is None:
            return
        twice = applied.runnable
        if before is not None and isinstance(twice, torch.fx.GraphModule):
            after = _program(twice)
            if after[0] not in spellings:
                self.f.add(Stage.COMPARE, Symptom.METAMORPHIC, say("oracle.idempotent-graph", impl=self.impl),
                           side=self.impl, place=place, diffs=[Mismatch("once", "twice", "graph", _shape_diff(before[0], after[0]))])
                return
            if before == after:
                return  # the same program over the same attributes computes the same
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
                    src = gm.graph.python_code(root_module="self").src
                    compile(src, f"<{self.impl} regenerated>", "exec")
            except Timeout:
                self.report_failure("roundtrip", None, say("oracle.regenerating"), timed_out=True)
                return
            except Exception as exc:
                self.report_failure("roundtrip", Failure.capture(exc), say("oracle.regenerating-from-graph"))
                return
            if src.strip() != gm.code.strip():
                detail = "\n".join(difflib.unified_diff(gm.code.splitlines(), src.splitlines(),
                                                        "module code", "code from its graph", lineterm=""))
                self.f.add(Stage.COMPARE, Symptom.METAMORPHIC, say("oracle.roundtrip", impl=self.impl),
                           side=self.impl, place=place, diffs=[Mismatch("module code", "code from its graph", "code", detail[-3000:])])
                return


def _program(gm: torch.fx.GraphModule) -> tuple[list[tuple[str, str, str]], list[str]]:
    """The graph's shape and a digest of what its nodes read from the module: every tensor
    attribute's values and every called submodule's configuration and state."""
    reads = []
    for node in gm.graph.nodes:
        if node.op not in ("get_attr", "call_module"):
            continue
        try:
            value = gm.get_submodule(node.target) if node.op == "call_module" else _attr(gm, node.target)
        except AttributeError:
            reads.append(f"{node.target}: missing")
            continue
        if isinstance(value, torch.nn.Module):
            state = value.state_dict()
            reads.append(f"{node.target}: {value!r} " + " ".join(_digest(t) for t in state.values()))
        else:
            reads.append(f"{node.target}: {_digest(value)}")
    return graph_shape(gm), reads


def _attr(gm: torch.nn.Module, target: str) -> Any:
    value: Any = gm
    for atom in target.split("."):
        value = getattr(value, atom)
    return value


def _digest(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        if value.layout != torch.strided or value.is_quantized:
            return f"<{value.layout} {tuple(value.shape)} {id(value)}>"  # compared by identity
        raw = value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        return f"{value.dtype}{tuple(value.shape)}:{hashlib.sha1(raw).hexdigest()}"
    return repr(value)


def _shape_diff(a: list[tuple[str, str, str]], b: list[tuple[str, str, str]]) -> str:
    lines = difflib.unified_diff([" ".join(x) for x in a], [" ".join(x) for x in b], "once", "twice", lineterm="")
    return "\n".join(lines)[-3000:]


METAMORPHIC = (Oracle.RETRACE, Oracle.IDEMPOTENT, Oracle.COMPOSE, Oracle.ROUNDTRIP)


def _already_diverges(f: _Findings, impl: str) -> bool:
    """Whether an earlier oracle already blamed ``impl``'s result (its module computes
    something else than the eager one, say): one bug, one report."""
    return any(o.stage is _STAGE_OF[impl] or (o.place or "").startswith((f"{impl}:", f"{impl}@"))
               for o in f.items)


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
                or not side.execution.ok or not isinstance(side.applied.runnable, torch.nn.Module)
                or _already_diverges(f, side.impl)):
            continue
        run = _Run(f, side)
        if Oracle.ROUNDTRIP in wanted:
            run.check_roundtrip()
            ran.append(f"roundtrip:{side.impl}")
        if Oracle.RETRACE in wanted:
            run.check_retrace()
            ran.append(f"retrace:{side.impl}")
        if Oracle.COMPOSE in wanted:
            for pair in row.compose:
                if pair.tried_on(f.prepared.case.key):
                    run.check_compose(pair.then, pair.params)
                    ran.append(f"compose:{pair.then}:{side.impl}")
        if Oracle.IDEMPOTENT in wanted:  # last: it may change the transformed module in place
            run.check_idempotent()
            ran.append(f"idempotent:{side.impl}")
    return ran
