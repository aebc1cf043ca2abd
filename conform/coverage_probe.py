"""Line and branch coverage of the transforms' own files, measured inside a worker.

A worker makes one :class:`CoverageProbe` for the rows it may run, starts it before its
first batch and calls :meth:`CoverageProbe.snapshot` after each batch to send the
supervisor what has been reached so far. coverage.py traces only the rows' files (its
``include``).

By default (``scope="transform"``) the tracer runs only while a transform runs: the engine
wraps each implementation's call of the transform in :func:`measuring`, which resumes the
started probe for its duration. Python 3.11's trace hook slows every frame while it is set,
traced file or not, so leaving it off while cases are built, traced, executed and compared
roughly halves the probe's cost (``bench/coverage_overhead.py``); it also keeps lines the
harness itself reaches in a transform's module (a fingerprint calling
``torch.fx.operator_schemas``) out of that transform's coverage. Code of the measured
files that the transformed module runs later, when it is executed, is not counted.
``scope="process"`` traces everything from :meth:`~CoverageProbe.start` to
:meth:`~CoverageProbe.stop`. By default only half of the transform calls, drawn from a seeded
generator, are traced (:data:`DEFAULT_SAMPLE`); ``sample=1.0`` traces every one.

Example::

    >>> probe = CoverageProbe([get("split_module")], sample=1.0)
    >>> probe.start()
    >>> check(Case("samples", {"sample": "two_adds"}), "split_module", params={"partition": {"add_1": 1}})
    >>> probe.snapshot()["torch.fx.passes.split_module"]["lines"][:3]  # Partition.__init__
    [22, 23, 24]
    >>> probe.stop()

Snapshots are keyed by module name (``torch.fx.passes.split_module``,
``reference._split_effects``) rather than by path, so a supervisor on another machine, whose
site-packages lie elsewhere, reads them the same way.
"""

from __future__ import annotations

import contextlib
import os
import random
import warnings
from collections.abc import Iterable, Iterator
from typing import Any, Literal

from conform.coverage_map import SIDES, modules_for
from conform.registry import TransformSpec

#: coverage.py warnings that only say a listed file was not run yet, or nothing at all was
#: (a batch of cases that all failed to build), which is data, not a problem
QUIET_WARNINGS = ("module-not-imported", "module-not-measured", "no-data-collected", "module-not-python",
                  "couldnt-parse")

Scope = Literal["transform", "process"]

DEFAULT_SCOPE: Scope = "transform"
#: Share of transform calls traced by default. Measured with ``bench/coverage_overhead.py``
#: (150 random cases, 8 transforms, one thread): tracing every call costs 1.45x the plain
#: engine's time, half of them 1.15x while still reaching 96% of the lines that tracing every
#: call reaches; coverage saturates over a campaign, so the sampled probe loses little.
DEFAULT_SAMPLE = 0.5

#: the started probe of this process; :func:`measuring` resumes it when its scope is "transform"
_active: CoverageProbe | None = None


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    from coverage.exceptions import CoverageWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CoverageWarning)
        yield


@contextlib.contextmanager
def measuring() -> Iterator[None]:
    """Trace the body with this process's started ``scope="transform"`` probe, if any.

    The engine wraps every call of a transform in it; without a probe it costs a global
    lookup. Nested uses trace (or not) as the outermost does. With ``sample < 1`` the
    outermost use traces with that probability, drawn from the probe's seeded generator.
    """
    probe = _active if _active is not None and _active.scope == "transform" else None
    if probe is None:
        yield
        return
    trace = probe._depth == 0 and probe._draw()
    probe._depth += 1
    if trace:
        with _quiet():
            probe._coverage.start()
    try:
        yield
    finally:
        if trace:
            probe._coverage.stop()
        probe._depth -= 1


class CoverageProbe:
    """coverage.py over the files of ``rows`` (upstream and reference), with branch arcs.

    Args:
        rows: the registry rows whose files are measured.
        scope: ``"transform"`` traces only inside :func:`measuring` (the engine's calls of
            a transform) while the probe is started; ``"process"`` traces everything
            between :meth:`start` and :meth:`stop`.
        sample: in transform scope, the share of transform calls traced (each call drawn
            independently, so neither side of a check is favoured); 1 traces them all.
            See :data:`DEFAULT_SAMPLE`.
        seed: seeds the sampling.

    Snapshots are cumulative since :meth:`start` (a merge of two snapshots from one worker is
    the later one), which makes a lost or repeated message harmless.
    """

    def __init__(self, rows: Iterable[TransformSpec], *, scope: Scope = DEFAULT_SCOPE, sample: float = DEFAULT_SAMPLE,
                 seed: int = 0) -> None:
        import coverage

        from conform.coverage_map import module_file

        self.modules: dict[str, str] = {}  # path -> module name
        for row in rows:
            for side in SIDES:
                for module in modules_for(row)[side]:
                    self.modules[module_file(module)] = module
        self._coverage = coverage.Coverage(
            data_file=None, branch=True, config_file=False, include=sorted(self.modules),
            # the harness times every case; a timid (pure Python) tracer would slow all of it
            timid=False,
        )
        self._coverage.set_option("run:disable_warnings", list(QUIET_WARNINGS))
        if scope not in ("transform", "process"):
            raise ValueError(f"unknown probe scope {scope!r} (valid: process, transform)")
        if not 0.0 < sample <= 1.0:
            raise ValueError(f"probe sample must lie in (0, 1], not {sample}")
        self.scope = scope
        self.sample = sample
        self._rng = random.Random(f"probe:{seed}")
        self.running = False
        self._depth = 0
        self.calls = 0  # transform calls seen while started (transform scope)
        self.traced = 0  # of which traced

    def _draw(self) -> bool:
        self.calls += 1
        trace = self.sample >= 1.0 or self._rng.random() < self.sample
        self.traced += trace
        return trace

    def start(self) -> None:
        """Start measuring (idempotent). A process has one started probe at a time."""
        global _active
        if self.running:
            return
        if _active is not None:
            raise RuntimeError("another CoverageProbe is started in this process; stop it first")
        if self.scope == "process":
            with _quiet():
                self._coverage.start()
        _active = self
        self.running = True

    def stop(self) -> None:
        """Stop measuring (idempotent); what was reached stays in :meth:`snapshot`."""
        global _active
        if not self.running:
            return
        if self.scope == "process":
            with _quiet():
                self._coverage.stop()
        _active = None
        self.running = False

    def __enter__(self) -> CoverageProbe:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """``{module: {"lines": [reached line, ...], "arcs": [[from, to], ...]}}`` for every
        measured file reached since :meth:`start`, sorted and JSON-able. Negative numbers in
        arcs are coverage.py's entry and exit of a code object."""
        with _quiet():
            data = self._coverage.get_data()
        result: dict[str, dict[str, Any]] = {}
        for path in data.measured_files():
            module = self.modules.get(os.path.realpath(path))
            if module is None:
                continue
            arcs = data.arcs(path) or []
            lines = data.lines(path) or []
            if lines or arcs:
                result[module] = {"lines": sorted(lines), "arcs": sorted([a, b] for a, b in arcs)}
        return result
