"""The differential engine: ``generate -> trace -> apply (reference, upstream) -> execute ->
compare``, for one case and one transform, returning :class:`~conform.outcome.Outcome` values.

Every failure along the way is data. Only a bug in the harness itself raises out of
:func:`check`.

Example::

    >>> from conform.case import Case
    >>> from conform.engine import check
    >>> outcomes = check(Case("factory", {"factory": "mypkg.cases:two_adds"}), "split_module",
    ...                  params={"partition": {"add": 1}})
    >>> [o.verdict.value for o in outcomes]
    ['pass']
"""

from __future__ import annotations

import copy
import dataclasses
import time
from typing import Any

import torch
import torch.fx

from conform import known, plugins
from conform.adapters import Applied, NotApplicable, Subject, clone_values
from conform.case import Case
from conform.compare import (
    compare_json_entries,
    compare_values,
    compare_values_entries,
    has_low_precision,
    no_worse_than,
)
from conform.coverage_probe import measuring
from conform.execute import (
    Execution,
    Failure,
    Timeout,
    execute,
    first_divergent_node,
    quiet,
    seed_everything,
    stage,
)
from conform.implementations import Implementation
from conform.messages import say
from conform.outcome import DiffEntry, Mismatch, Outcome, Stage, Symptom, Verdict, stable_key
from conform.registry import Oracle, TransformSpec, get
from generators.sources import Built

#: Outputs compared across devices tolerate this multiple of the dtype's default tolerance
#: (different kernels, reduction orders and fused multiply-adds).
DEVICE_TOLERANCE_SCALE = 100.0


@dataclasses.dataclass
class Prepared:
    """A case built, traced and run eagerly once: shared by every transform checked on it."""

    case: Case
    built: Built
    graph_module: torch.fx.GraphModule
    expected: Execution
    _golden: Any = None

    def golden(self) -> Any:
        """The eager outputs computed in float64 (floating parameters, buffers and inputs
        widened), or None when the module does not run that way; computed once."""
        if self._golden is None:
            self._golden = False
            module = copy.deepcopy(self.built.module).double()
            widen = lambda v: v.double() if isinstance(v, torch.Tensor) and v.is_floating_point() else v  # noqa: E731
            args = torch.utils._pytree.tree_map(widen, self.built.args)
            kwargs = torch.utils._pytree.tree_map(widen, self.built.kwargs)
            with quiet():
                run = execute(module, args, kwargs, seed=self.case.seed, stage_name="golden")
            if run.ok:
                self._golden = (run.outputs,)
        return self._golden[0] if self._golden else None


class _CaseTracer(torch.fx.Tracer):
    def __init__(self, leaves: tuple[type, ...]) -> None:
        super().__init__()
        self._leaves = leaves

    def is_leaf_module(self, m: torch.nn.Module, qualname: str) -> bool:
        return isinstance(m, self._leaves) or super().is_leaf_module(m, qualname)


def trace(built: Built, *, seed: int = 0) -> torch.fx.GraphModule:
    """``symbolic_trace`` honouring the case's concrete args and extra leaf modules.

    The RNG is seeded first so trace-time constants (a ``torch.rand`` with no traced input)
    are the same on every trace of the case.
    """
    seed_everything(seed)
    tracer = _CaseTracer(built.leaf_modules)
    graph = tracer.trace(built.module, concrete_args=built.concrete_args)
    return torch.fx.GraphModule(tracer.root, graph, built.module.__class__.__name__)


def prepare(case: Case) -> Prepared | Outcome:
    """Build, trace and run the case eagerly; an Outcome when a stage fails."""
    with quiet():
        return _prepare(case)


def _prepare(case: Case) -> Prepared | Outcome:
    try:
        with stage("build"):
            built = case.build()
    except Timeout as exc:
        return _case_outcome(case, Stage.GENERATE, Symptom.TIMEOUT, Verdict.FAIL, Failure.capture(exc),
                             "case.build-timeout", place="build")
    except Exception as exc:
        return _case_outcome(case, Stage.GENERATE, Symptom.CRASH, Verdict.FAIL, Failure.capture(exc),
                             "case.build-raised")
    expected = execute(built.module, built.args, built.kwargs, seed=case.seed, stage_name="eager")
    if expected.timed_out:
        return _case_outcome(case, Stage.GENERATE, Symptom.TIMEOUT, Verdict.FAIL, expected.failure,
                             "case.eager-timeout", place="eager")
    if not expected.ok:
        return _case_outcome(case, Stage.GENERATE, Symptom.CRASH, Verdict.FAIL, expected.failure,
                             "case.eager-raised")
    try:
        with stage("trace"):
            graph_module = trace(built, seed=case.seed)
    except Timeout as exc:
        return _case_outcome(case, Stage.TRACE, Symptom.TIMEOUT, Verdict.FAIL, Failure.capture(exc),
                             "case.trace-timeout", place="trace")
    except Exception as exc:
        return _case_outcome(case, Stage.TRACE, Symptom.UNSUPPORTED, Verdict.SKIP, Failure.capture(exc),
                             "case.trace-rejects")
    traced = execute(graph_module, built.args, built.kwargs, seed=case.seed, stage_name="traced")
    if traced.timed_out:
        return _case_outcome(case, Stage.TRACE, Symptom.TIMEOUT, Verdict.FAIL, traced.failure,
                             "case.traced-timeout", place="traced")
    if not traced.ok:
        return _case_outcome(case, Stage.TRACE, Symptom.UNSUPPORTED, Verdict.SKIP, traced.failure,
                             "case.traced-raised")
    diff = compare_values(expected.outputs, traced.outputs, meta_only=built.stochastic)
    if diff is not None:
        out = _case_outcome(case, Stage.TRACE, Symptom.UNSUPPORTED, Verdict.SKIP, None, "case.trace-changes",
                            diff=diff)
        return out
    return Prepared(case=case, built=built, graph_module=graph_module, expected=expected)


def _case_outcome(case: Case, stage: Stage, symptom: Symptom, verdict: Verdict,
                  failure: Failure | None, message: str, *, place: str | None = None, **fields: Any) -> Outcome:
    if failure is not None:
        fields.update(exception=failure.exception, error=failure.message)
    return Outcome(
        key=stable_key(case.source, case.spec, case.seed, stage.value),
        case_id=case.id, source=case.source, transform="-", device=case.device,
        verdict=verdict, stage=stage, symptom=symptom,
        message=say(message, **fields),
        exception=failure.exception if failure else None, error=raised(failure),
        place=place if place is not None else (failure.place if failure else None),
        spec=case.spec, seed=case.seed,
    )


@dataclasses.dataclass
class Side:
    """One implementation's run of the transform on the case."""

    impl: str
    applied: Applied | None = None
    failure: Failure | None = None
    timed_out: bool = False
    not_applicable: str | None = None
    lint: Failure | None = None
    execution: Execution | None = None
    fingerprint: Any = None
    fingerprint_failure: Failure | None = None
    seconds: float = 0.0
    printed: list[str] = dataclasses.field(default_factory=list)


def apply(row: TransformSpec, impl: str, prepared: Prepared, params: dict[str, Any],
          *, device: str = "cpu", run: bool = True) -> Side:
    """Apply ``row`` with one implementation to a private copy of the prepared case, lint
    what it produced, execute it, and take its fingerprint."""
    side = Side(impl=impl)
    base = Subject(module=prepared.built.module, graph_module=prepared.graph_module,
                   inputs=prepared.built.args, kwargs=prepared.built.kwargs,
                   concrete_args=prepared.built.concrete_args)
    subject = base.to(device if device != "cpu" else None)
    # A transform may run the graph on the subject's inputs (ShapeProp does); the transformed
    # module is executed on copies taken before it had the chance to mutate them.
    pristine_args, pristine_kwargs = clone_values(subject.inputs), clone_values(subject.kwargs)
    transform = row.load(Implementation(impl))
    started = time.perf_counter()
    seed_everything(prepared.case.seed)
    try:
        # a started coverage probe traces the transform's files only while it runs
        with quiet(side.printed), stage(f"transform-{impl}", row.timeout_s), measuring():
            side.applied = transform(subject, dict(params))
    except NotApplicable as exc:
        side.not_applicable = str(exc)
        return side
    except Timeout:
        side.timed_out = True
        return side
    except Exception as exc:
        side.failure = Failure.capture(exc)
        return side
    finally:
        side.seconds = time.perf_counter() - started
    for gm in side.applied.graphs:
        try:
            gm.graph.lint()
        except Exception as exc:
            side.lint = Failure.capture(exc)
            break
    fingerprint = row.load_fingerprint()
    if fingerprint is not None:
        try:
            with stage(f"fingerprint-{impl}"):
                side.fingerprint = fingerprint(side.applied)
        except Timeout:
            side.fingerprint_failure = Failure("Timeout", say("fingerprint.timeout"), "fingerprint", "")
        except Exception as exc:
            side.fingerprint_failure = Failure.capture(exc)
    if run and side.applied.runnable is not None and side.lint is None:
        with quiet(side.printed):
            side.execution = execute(side.applied.runnable, pristine_args, pristine_kwargs,
                                     seed=prepared.case.seed, timeout_s=row.timeout_s,
                                     stage_name=f"execute-{impl}")
    return side


class _Findings:
    """Collects outcomes for one (case, transform, device)."""

    def __init__(self, prepared: Prepared, row: TransformSpec, params: dict[str, Any], device: str) -> None:
        self.prepared, self.row, self.params, self.device = prepared, row, params, device
        self.items: list[Outcome] = []

    def add(self, stage: Stage, symptom: Symptom, message: str, *, side: str | None,
            failure: Failure | None = None, place: str | None = None, diffs: list[Mismatch] | None = None,
            node: str | None = None, verdict: Verdict = Verdict.FAIL, device: str | None = None) -> None:
        """Record a finding. ``message`` is prose for people (from :mod:`conform.messages`);
        ``side`` names the implementation it belongs to (None for a comparison of two);
        ``failure`` gives the exception type and its own message."""
        case = self.prepared.case
        device = device or self.device
        self.items.append(Outcome(
            key=stable_key(case.source, case.spec, case.seed, self.row.name, self.params, device,
                           stage.value, symptom.value, place),
            case_id=case.id, source=case.source, transform=self.row.name, device=device,
            verdict=verdict, stage=stage, symptom=symptom, message=message,
            exception=failure.exception if failure else None, error=raised(failure), side=side,
            place=place if place is not None else (failure.place if failure else None),
            node=node, diffs=diffs or [], spec=case.spec, params=self.params, seed=case.seed,
        ))


def raised(failure: Failure | None) -> str | None:
    """The message the exception itself carried (None for a timeout: the harness wrote it)."""
    if failure is None or failure.exception == "Timeout":
        return None
    return failure.message


#: A user's pass is the implementation under test, as the reference is.
_STAGE_OF = {"reference": Stage.TRANSFORM_REFERENCE, "upstream": Stage.TRANSFORM_UPSTREAM,
             "user": Stage.TRANSFORM_REFERENCE}


def check(case: Case, transform: TransformSpec | str, *, params: dict[str, Any] | None = None,
          devices: tuple[str, ...] = ("cpu",), prepared: Prepared | Outcome | None = None) -> list[Outcome]:
    """Check one case with one transform; one outcome per finding, or a single pass/skip.

    Args:
        case: the case to build.
        transform: a registry row or its name.
        params: the transform's parameters (JSON-able); ``{}`` when None.
        devices: ``("cpu",)`` or ``("cpu", "cuda")``; the device oracle runs when CUDA is
            listed and available.
        prepared: the result of :func:`prepare` when the caller already has it.

    Returns:
        Outcomes, every one classified against the known-divergence registry.
    """
    row = transform if isinstance(transform, TransformSpec) else get(transform)
    params = dict(params or {})
    started = time.perf_counter()
    if prepared is None:
        prepared = prepare(case)
    if isinstance(prepared, Outcome):
        prepared = dataclasses.replace(prepared, transform=row.name, params=params)
        return [_finish(prepared, started)]
    findings = _Findings(prepared, row, params, "cpu")
    sides = {impl: apply(row, impl, prepared, params) for impl in _impls(row)}
    _judge(findings, sides)
    if "cuda" in devices and Oracle.DEVICE in row.oracles and torch.cuda.is_available():
        _judge_device(findings, sides[row.sides[0]], prepared, row, params)
    checked = [name for oracle in plugins.collect("conform_oracles") for name in oracle(findings, sides) or ()]
    outcomes = findings.items
    if not outcomes:
        ref = sides.get(row.sides[0])
        if ref is not None and ref.not_applicable is not None:
            findings.add(_STAGE_OF[ref.impl], Symptom.UNSUPPORTED, ref.not_applicable, side=ref.impl,
                         verdict=Verdict.SKIP)
        else:
            both = [s.failure for s in sides.values() if s.failure]
            note = say("pass.both-raise", exception=both[0].exception) if len(both) == 2 else ""
            findings.items.append(Outcome(
                key=stable_key(case.source, case.spec, case.seed, row.name, params, "cpu"),
                case_id=case.id, source=case.source, transform=row.name, device="cpu",
                verdict=Verdict.PASS, message=note, spec=case.spec, params=params, seed=case.seed,
            ))
        outcomes = findings.items
    elapsed = time.perf_counter() - started
    traits = _traits(row, prepared, params) if any(o.verdict is Verdict.FAIL for o in outcomes) else []
    driver_notes = {s.impl: s.applied.notes for s in sides.values() if s.applied is not None and s.applied.notes}
    for outcome in outcomes:
        outcome.notes.setdefault("seconds", {s.impl: round(s.seconds, 4) for s in sides.values()})
        outcome.notes.update(driver_notes)
        if checked:
            outcome.notes["metamorphic"] = checked
        if traits:
            outcome.notes["traits"] = traits
        _finish(outcome, started, elapsed)
    return outcomes


def _traits(row: TransformSpec, prepared: Prepared, params: dict[str, Any]) -> list[str]:
    """The known-divergence traits (case predicates) that hold for this case."""
    from conform.registry import load

    held = []
    for path in known.traits_for(row.name):
        try:
            with quiet(), stage("traits"):
                if load(path)(prepared.graph_module, prepared.built, params):
                    held.append(path)
        except (Exception, Timeout):  # a predicate that cannot decide does not hold
            continue
    return held


def _impls(row: TransformSpec) -> tuple[str, ...]:
    return row.sides


def _finish(outcome: Outcome, started: float, elapsed: float | None = None) -> Outcome:
    outcome.duration_s = round(elapsed if elapsed is not None else time.perf_counter() - started, 4)
    return finish_outcome(outcome)


def finish_outcome(outcome: Outcome) -> Outcome:
    """Classify a failed outcome against the known-divergence registry."""
    if outcome.verdict is Verdict.FAIL:
        entry = known.classify(outcome)
        if entry is not None:
            outcome.verdict = Verdict.KNOWN
            outcome.known_id = entry.id
    return outcome


def _judge(f: _Findings, sides: dict[str, Side]) -> None:
    prepared, row = f.prepared, f.row
    meta_only = prepared.built.stochastic
    # Errors while applying the transform.
    failed = {name: s for name, s in sides.items() if s.failure or s.timed_out}
    for name, side in sides.items():
        if side.timed_out:
            others = [say("apply.other-raises", impl=o, exception=s.failure.exception) if s.failure
                      else say("apply.other-times-out", impl=o) if s.timed_out
                      else say("apply.other-finishes", impl=o) for o, s in sides.items() if o != name]
            message = (say("apply.timeout-others", impl=name, others="; ".join(others)) if others
                       else say("apply.timeout", impl=name))
            f.add(_STAGE_OF[name], Symptom.TIMEOUT, message, side=name, place=name)
    if len(sides) == 2 and len(failed) == 2:
        ref, up = sides["reference"].failure, sides["upstream"].failure
        if ref and up and ref.exception != up.exception:
            f.add(Stage.COMPARE, Symptom.IMPL_DIVERGENCE,
                  say("compare.exception-types", reference=ref.exception, upstream=up.exception),
                  side="both", failure=ref, place="exception-type",
                  diffs=[Mismatch("reference", "upstream", "error",
                                  f"{ref.exception}: {ref.message}\nvs\n{up.exception}: {up.message}",
                                  entries=[DiffEntry("exception", ref.exception, up.exception),
                                           DiffEntry("message", ref.message, up.message)])])
        return
    for name, side in failed.items():
        if side.failure:
            other = "upstream" if name == "reference" else "reference"
            fields = dict(impl=name, exception=side.failure.exception, error=side.failure.message)
            message = (say("apply.crash-other-succeeds", other=other, **fields) if other in sides
                       else say("apply.crash", **fields))
            f.add(_STAGE_OF[name], Symptom.CRASH, message, side=name, failure=side.failure)
    ok = {name: s for name, s in sides.items() if s.applied is not None}
    if not ok:
        return
    if any(s.not_applicable for s in sides.values()):
        return
    for name, side in ok.items():
        if side.lint:
            f.add(_STAGE_OF[name], Symptom.INVALID_GRAPH, say("apply.lint", impl=name, error=side.lint.message),
                  side=name, failure=side.lint)
        if side.fingerprint_failure:
            f.add(_STAGE_OF[name], Symptom.CRASH,
                  say("apply.fingerprint-crash", impl=name, exception=side.fingerprint_failure.exception,
                      error=side.fingerprint_failure.message), side=name, failure=side.fingerprint_failure)
    # Transformed vs eager.
    executed = {name: s for name, s in ok.items() if s.execution is not None}
    for name, side in executed.items():
        ex = side.execution
        if ex.timed_out:
            f.add(Stage.EXECUTE, Symptom.TIMEOUT, say("execute.timeout", impl=name), side=name,
                  failure=ex.failure, place=f"{name}@timeout")
            continue
        if not ex.ok:
            f.add(Stage.EXECUTE, Symptom.CRASH,
                  say("execute.crash", impl=name, exception=ex.failure.exception, error=ex.failure.message),
                  side=name, failure=ex.failure, place=f"{name}@{ex.failure.place}")
            continue
        if Oracle.EAGER in row.oracles:
            _eager_oracle(f, name, side, meta_only)
    # Reference vs upstream.
    if Oracle.UPSTREAM in row.oracles and len(ok) == 2:
        ref, up = ok["reference"], ok["upstream"]
        if ref.fingerprint is not None or up.fingerprint is not None:
            found = compare_json_entries(_jsonable(up.fingerprint), _jsonable(ref.fingerprint))
            if found:
                diff, entries = found
                f.add(Stage.COMPARE, Symptom.IMPL_DIVERGENCE, say("compare.fingerprint"), side=None,
                      place="fingerprint",
                      diffs=[Mismatch("upstream", "reference", "fingerprint", diff, entries=entries)])
        if ref.execution and up.execution:
            if ref.execution.ok != up.execution.ok:
                return  # already reported as an execution crash on one side
            if ref.execution.ok:
                found = compare_values_entries(up.execution.outputs, ref.execution.outputs, meta_only=meta_only)
                if found and not meta_only and _both_round_alike(prepared, up.execution, ref.execution):
                    found = None
                if found:
                    diff, entries = found
                    node = first_divergent_node(up.applied.runnable, ref.applied.runnable,
                                                prepared.built.args, seed=prepared.case.seed,
                                                meta_only=meta_only) if isinstance(
                        up.applied.runnable, torch.fx.GraphModule) else None
                    f.add(Stage.COMPARE, Symptom.IMPL_DIVERGENCE, say("compare.outputs"), side=None,
                          place="outputs", node=node,
                          diffs=[Mismatch("upstream", "reference", "outputs", diff, node, entries)])


def _both_round_alike(prepared: Prepared, *runs: Execution) -> bool:
    """For bfloat16/float16 outputs: every run is as close to the float64 result as eager is
    (two correct implementations may round differently from each other)."""
    expected = prepared.expected.outputs
    if not has_low_precision(expected):
        return False
    golden = prepared.golden()
    return golden is not None and all(no_worse_than(expected, run.outputs, golden) for run in runs)


def _eager_oracle(f: _Findings, name: str, side: Side, meta_only: bool) -> None:
    prepared = f.prepared
    expected, actual = prepared.expected, side.execution
    found = compare_values_entries(expected.outputs, actual.outputs, meta_only=meta_only)
    if found is not None and not meta_only and _both_round_alike(prepared, actual):
        found = None
    what = "outputs"
    if found is None:
        found = compare_values_entries((expected.args_after, expected.kwargs_after),
                                       (actual.args_after, actual.kwargs_after), meta_only=meta_only,
                                       label="inputs")
        what = "inputs after the call"
    if found is None:
        return
    diff, entries = found
    node = first_divergent_node(prepared.graph_module, side.applied.runnable, prepared.built.args,
                                seed=prepared.case.seed, meta_only=meta_only)
    f.add(Stage.COMPARE, Symptom.EAGER_MISMATCH, say("compare.eager", impl=name, what=what), side=name,
          place=f"{name}:{what}", node=node, diffs=[Mismatch("eager", name, what, diff, node, entries)])


def _judge_device(f: _Findings, cpu_side: Side, prepared: Prepared, row: TransformSpec,
                  params: dict[str, Any]) -> None:
    """The reference's transformed module on CUDA against the eager module on CUDA.

    Judged against eager-on-CUDA rather than against the CPU result, so kernels that round
    differently on the two devices are not blamed on the transform; and only for cases whose
    eager module runs on CUDA at all (a forward that creates tensors without a device, say
    ``torch.rand(3)``, does not, and nothing about the transform can be learned from it).
    """
    if cpu_side.execution is None or not cpu_side.execution.ok:
        return
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        eager = Subject(prepared.built.module, prepared.graph_module, prepared.built.args,
                        prepared.built.kwargs).to("cuda")
        with quiet():
            expected = execute(eager.module, eager.inputs, eager.kwargs, seed=prepared.case.seed)
        if not expected.ok:
            return
        cuda_side = apply(row, cpu_side.impl, prepared, params, device="cuda")
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
    if cuda_side.failure or cuda_side.timed_out:
        failure = cuda_side.failure
        f.add(Stage.TRANSFORM_REFERENCE, Symptom.DEVICE_DIVERGENCE,
              say("device.apply-crash", exception=failure.exception, error=failure.message) if failure
              else say("device.apply-timeout"),
              side=cpu_side.impl, failure=failure, place="cuda-apply", device="cuda")
    elif cuda_side.execution is not None:
        ex = cuda_side.execution
        if not ex.ok:
            f.add(Stage.EXECUTE, Symptom.DEVICE_DIVERGENCE,
                  say("device.execute", exception=ex.failure.exception, error=ex.failure.message),
                  side=cpu_side.impl, failure=ex.failure, place="cuda-execute", device="cuda")
        else:
            found = compare_values_entries(expected.outputs, ex.outputs, meta_only=prepared.built.stochastic,
                                           tolerance_scale=DEVICE_TOLERANCE_SCALE)
            if found:
                diff, entries = found
                f.add(Stage.COMPARE, Symptom.DEVICE_DIVERGENCE, say("device.outputs"), side=cpu_side.impl,
                      place="outputs", device="cuda",
                      diffs=[Mismatch("eager on cuda", f"{cpu_side.impl} on cuda", "outputs", diff, entries=entries)])


def _jsonable(value: Any) -> Any:
    import json

    return json.loads(json.dumps(value, default=repr, sort_keys=True))
