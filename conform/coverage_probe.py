"""Line and branch coverage of the transforms' own files, measured inside a worker.

A worker makes one :class:`CoverageProbe` for the rows it may run, starts it before its
first batch and calls :meth:`CoverageProbe.snapshot` after each batch to send the
supervisor what has been reached so far. coverage.py traces only the rows' files (its
``include``), so the rest of torch and the harness run untraced apart from the tracer's
per-call check of the file name.

Example::

    >>> probe = CoverageProbe([get("split_module")])
    >>> probe.start()
    >>> check(case, "split_module", params=params)
    >>> probe.snapshot()["torch.fx.passes.split_module"]["lines"][:3]
    [64, 65, 71]
    >>> probe.stop()

Snapshots are keyed by module name (``torch.fx.passes.split_module``,
``reference._split_effects``) rather than by path, so a supervisor on another machine, whose
site-packages lie elsewhere, reads them the same way.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterable, Iterator
from typing import Any

from conform.coverage_map import SIDES, modules_for
from conform.registry import TransformSpec

#: coverage.py warnings that only say a listed file was not run yet, or nothing at all was
#: (a batch of cases that all failed to build), which is data, not a problem
QUIET_WARNINGS = ("module-not-imported", "module-not-measured", "no-data-collected", "module-not-python",
                  "couldnt-parse")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    from coverage.exceptions import CoverageWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CoverageWarning)
        yield


class CoverageProbe:
    """coverage.py over the files of ``rows`` (upstream and reference), with branch arcs.

    Args:
        rows: the registry rows whose files are measured.

    Snapshots are cumulative since :meth:`start` (a merge of two snapshots from one worker is
    the later one), which makes a lost or repeated message harmless.
    """

    def __init__(self, rows: Iterable[TransformSpec]) -> None:
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
        self.running = False

    def start(self) -> None:
        """Start tracing (idempotent)."""
        if not self.running:
            with _quiet():
                self._coverage.start()
            self.running = True

    def stop(self) -> None:
        """Stop tracing (idempotent); what was reached stays in :meth:`snapshot`."""
        if self.running:
            with _quiet():
                self._coverage.stop()
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
