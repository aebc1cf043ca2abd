"""Running modules: plain execution with a fixed seed, and a recording Interpreter that keeps
every node's value so a mismatch can name the first node whose values diverge."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import signal
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.fx

from conform.adapters import clone_values
from conform.compare import compare_values


def seed_everything(seed: int) -> None:
    """Seed the CPU generator, and CUDA's when it is in use.

    ``torch.manual_seed`` also queues a lazy CUDA seeding on CUDA builds without a GPU, which
    formats the Python stack on every call; on the engine's hot path that cost more than
    the transforms being checked.
    """
    torch.random.default_generator.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


@contextlib.contextmanager
def quiet(sink: list[str] | None = None) -> Iterator[None]:
    """Keep what a transform prints (upstream ShapeProp prints tracebacks, many passes warn)
    off the console; the text goes to ``sink`` when one is given."""
    out, err = io.StringIO(), io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        warnings.simplefilter("ignore")
        try:
            yield
        finally:
            if sink is not None:
                text = (out.getvalue() + err.getvalue()).strip()
                if text:
                    sink.append(text[-2000:])


class Timeout(BaseException):
    """A stage ran past its time limit.

    A ``BaseException``, like ``KeyboardInterrupt``: code under test that catches
    ``Exception`` (ShapeProp wraps every node error in a RuntimeError, say) must not turn
    a timeout into an ordinary error, which the engine would then compare as "both raise".
    """


#: Seconds a case stage (build, eager run, trace) may take unless the caller says otherwise.
DEFAULT_STAGE_LIMIT_S = 60.0

_limits: dict[str, float | None] = {"cap": None, "default": DEFAULT_STAGE_LIMIT_S}
_listener: list[Callable[[str, float | None], None]] = []


def configure_limits(*, cap: float | None = None, default: float = DEFAULT_STAGE_LIMIT_S) -> None:
    """Set the per-stage time limits of this process: ``default`` for stages that name none,
    ``cap`` (when given) as an upper bound on every stage's limit."""
    _limits["cap"], _limits["default"] = cap, default


def set_stage_listener(listener: Callable[[str, float | None], None] | None) -> None:
    """Call ``listener(stage, limit_s)`` before every stage starts (a campaign worker tells
    its supervisor, which kills the worker when the stage overruns by far)."""
    _listener[:] = [listener] if listener is not None else []


def stage_limit(seconds: float | None = None) -> float | None:
    """The limit a stage gets: its own (or the default), capped."""
    limit = _limits["default"] if seconds is None else seconds
    cap = _limits["cap"]
    if cap is not None:
        limit = cap if limit is None else min(limit, cap)
    return limit


@contextlib.contextmanager
def stage(name: str, seconds: float | None = None) -> Iterator[None]:
    """Run the body as the stage ``name``: announce it, then bound it by its time limit."""
    limit = stage_limit(seconds)
    for listener in _listener:
        listener(name, limit)
    with time_limit(limit):
        yield


@contextlib.contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raise :class:`Timeout` in the body after ``seconds`` (main thread on POSIX only;
    elsewhere the body runs unbounded, and a campaign's supervisor is the only watchdog).

    Limits nest: an inner limit never extends an outer one, and the outer one is restored
    when the body ends.
    """
    usable = (
        seconds is not None
        and seconds > 0
        and hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
    )
    if not usable:
        yield
        return

    def _raise(signum: int, frame: Any) -> None:
        raise Timeout(f"ran past {seconds:g} s")

    outer_left, _ = signal.getitimer(signal.ITIMER_REAL)
    started = time.monotonic()
    previous = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, min(seconds, outer_left) if outer_left > 0 else seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer_left > 0:
            # the outer limit keeps running; when it is already spent it fires at once
            signal.setitimer(signal.ITIMER_REAL, max(outer_left - (time.monotonic() - started), 1e-3))


@dataclasses.dataclass
class Failure:
    """An exception turned into data: its type, message, and the innermost frame."""

    exception: str
    message: str
    place: str
    traceback: str

    @classmethod
    def capture(cls, exc: BaseException) -> Failure:
        frames = traceback.extract_tb(exc.__traceback__)
        place = "-"
        if frames:
            last = frames[-1]
            place = f"{_short_path(last.filename)}:{last.lineno}:{last.name}"
        message = str(exc).strip().splitlines()[0][:500] if str(exc).strip() else ""
        return cls(
            exception=type(exc).__name__,
            message=message,
            place=place,
            traceback="".join(traceback.format_exception(exc))[-4000:],
        )


def _short_path(filename: str) -> str:
    for marker in ("site-packages/", "/reference/", "/conform/", "/generators/"):
        if marker in filename:
            tail = filename.split(marker, 1)[1]
            return (marker.strip("/") + "/" + tail) if marker != "site-packages/" else tail
    return filename.rsplit("/", 1)[-1]


@dataclasses.dataclass
class Execution:
    """The result of calling a module once: outputs and the inputs as they were left after
    the call (so in-place mutation is compared too), or the failure."""

    outputs: Any = None
    args_after: tuple[Any, ...] = ()
    kwargs_after: dict[str, Any] = dataclasses.field(default_factory=dict)
    failure: Failure | None = None
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.failure is None and not self.timed_out


def execute(
    runnable: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    seed: int,
    timeout_s: float | None = None,
    stage_name: str = "execute",
) -> Execution:
    """Call ``runnable`` on private copies of the inputs with the RNG seeded by ``seed``, as
    the stage ``stage_name`` bounded by ``timeout_s`` (the default stage limit when None)."""
    args_c, kwargs_c = clone_values(args), clone_values(kwargs)
    seed_everything(seed)
    try:
        with stage(stage_name, timeout_s), torch.no_grad():
            outputs = runnable(*args_c, **kwargs_c)
    except Timeout as exc:
        return Execution(failure=Failure.capture(exc), timed_out=True)
    except Exception as exc:
        return Execution(failure=Failure.capture(exc))
    return Execution(outputs=outputs, args_after=args_c, kwargs_after=kwargs_c)


def _snapshot(value: Any) -> Any:
    return torch.utils._pytree.tree_map(
        lambda v: v.detach().clone() if isinstance(v, torch.Tensor) else v, value
    )


class RecordingInterpreter(torch.fx.Interpreter):
    """An Interpreter that keeps a snapshot of every node's value, by node name.

    A ``call_module`` whose target is itself a GraphModule (a split partition, a fused
    submodule) is interpreted recursively into the same record, so the values of nodes
    that moved into submodules are still recorded under their names.
    """

    def __init__(self, module: torch.fx.GraphModule, record: dict[str, Any] | None = None) -> None:
        super().__init__(module)
        self.record: dict[str, Any] = {} if record is None else record
        self.order: list[str] = []

    def run_node(self, n: torch.fx.Node) -> Any:
        result = super().run_node(n)
        if n.op not in ("output",):
            self.record.setdefault(n.name, _snapshot(result))
            self.order.append(n.name)
        return result

    def call_module(self, target: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        submod = self.fetch_attr(target)
        if isinstance(submod, torch.fx.GraphModule) and not kwargs:
            inner = RecordingInterpreter(submod, self.record)
            result = inner.run(*args)
            self.order.extend(inner.order)
            return result
        return super().call_module(target, args, kwargs)


def record_values(module: torch.fx.GraphModule, args: tuple[Any, ...], *, seed: int) -> tuple[dict[str, Any], list[str]]:
    """Node name -> value for one run of ``module`` (empty when it cannot be interpreted)."""
    interp = RecordingInterpreter(module)
    seed_everything(seed)
    try:
        with stage("locate"), torch.no_grad():
            interp.run(*clone_values(args))
    except (Exception, Timeout):  # what was recorded before the failure still names a node
        pass
    return interp.record, interp.order


def first_divergent_node(
    baseline: torch.fx.GraphModule,
    candidate: Any,
    args: tuple[Any, ...],
    *,
    seed: int,
    meta_only: bool = False,
    tolerance_scale: float = 1.0,
) -> str | None:
    """The first node, in the candidate's execution order, whose value differs from the
    baseline node of the same name; None when none can be named."""
    if not isinstance(candidate, torch.fx.GraphModule):
        return None
    base_values, _ = record_values(baseline, args, seed=seed)
    cand_values, order = record_values(candidate, args, seed=seed)
    baseline_ops = {n.name: n.op for n in baseline.graph.nodes}
    for name in order:
        if name not in base_values or baseline_ops.get(name) == "placeholder":
            continue
        if compare_values(
            base_values[name], cand_values[name], meta_only=meta_only, tolerance_scale=tolerance_scale
        ):
            return name
    return None
