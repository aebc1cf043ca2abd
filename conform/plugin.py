"""pytest plugin for fx-conform (registered through the ``pytest11`` entry point).

Options: ``--conform-report DIR``, ``--conform-seed N``, ``--conform-profile pr|nightly``
(default ``pr``, unless hypothesis' own ``--hypothesis-profile`` is given),
``--conform-device cpu|cuda|all``, ``--conform-transform NAME`` (repeatable; ``MODULE:ATTR``
names a pass of your own, checked against eager), ``--conform-plugin MODULE`` (repeatable;
loads a plugin's transforms, sources and known divergences).

Fixtures:

* ``conform``: a :class:`Checker` bound to the running test; ``conform.check(case,
  transform, params)`` returns outcomes and records them, ``conform.assert_conforms(...)``
  also fails the test on a new divergence with the engine's message.
* ``conform_transform``: a test that takes it is parametrized over the selected transforms.
* ``conform_seed``, ``conform_devices``.

Outcomes travel from pytest-xdist workers to the controller in the test reports'
``user_properties``; the controller writes one report when the session ends.

Example::

    def test_split_conforms(conform, conform_transform):
        case = Case("samples", {"sample": "linear_relu"})
        conform.assert_conforms(case, conform_transform)
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

PROPERTY = "conform_outcome"
PROFILES = ("pr", "nightly")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("conform", "fx-conform conformance testing")
    group.addoption("--conform-report", metavar="DIR", default=None,
                    help="write the conformance report (index.html, summary.json, conform.sqlite) to DIR")
    group.addoption("--conform-seed", metavar="N", type=int, default=0, help="seed for conformance cases")
    group.addoption("--conform-profile", choices=PROFILES, default=None,
                    help="hypothesis settings: pr (small, fast, the same examples on every run; the default "
                         "unless --hypothesis-profile is given) or nightly (thorough, new examples each run)")
    group.addoption("--conform-device", choices=("cpu", "cuda", "all"), default="all",
                    help="devices to check on (all = CPU plus CUDA when present)")
    group.addoption("--conform-transform", metavar="NAME", action="append", default=[],
                    help="restrict conform_transform to these transforms; MODULE:ATTR names a pass of "
                         "your own (repeatable)")
    group.addoption("--conform-plugin", metavar="MODULE", action="append", default=[],
                    help="load a plugin module (transforms, sources, known divergences; repeatable)")


def _register_profiles() -> None:
    from hypothesis import HealthCheck, settings

    quiet = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
    # a pull request sees the same examples on every run; the nightly profile explores
    settings.register_profile("conform-pr", max_examples=10, deadline=None, suppress_health_check=quiet, derandomize=True)
    settings.register_profile("conform-nightly", max_examples=300, deadline=None, suppress_health_check=quiet)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "cuda: needs a CUDA device; skipped cleanly without one")
    config.addinivalue_line("markers", "slow: takes more than a few seconds")
    config.addinivalue_line("markers", "nightly: runs in full only under --conform-profile nightly")
    _register_profiles()
    profile = config.getoption("conform_profile")
    if profile is None and config.getoption("hypothesis_profile", None) is None:
        # hypothesis' default deadline (200 ms) fails a first check that traces and runs modules
        profile = "pr"
    if profile:
        from hypothesis import settings

        settings.load_profile(f"conform-{profile}")
    from conform.errors import UsageError

    try:
        from conform.cli import load_plugins
        from conform.registry import select

        load_plugins(config.getoption("conform_plugin"), config.getoption("conform_transform"))

        select(config.getoption("conform_transform"))
        if config.getoption("conform_device") == "cuda":
            from conform.campaign import resolve_devices

            resolve_devices("cuda")
    except UsageError as exc:
        raise pytest.UsageError(f"fx-conform: {exc}") from None
    config.pluginmanager.register(_Session(config), "conform-session")


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("cuda") is not None:
        import torch

        if not torch.cuda.is_available():
            pytest.skip("needs a CUDA device")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "conform_transform" in metafunc.fixturenames:
        from conform.registry import select

        names = [row.name for row in select(metafunc.config.getoption("conform_transform"))]
        metafunc.parametrize("conform_transform", names, ids=names)


@pytest.fixture(scope="session")
def conform_seed(request: pytest.FixtureRequest) -> int:
    return int(request.config.getoption("conform_seed"))


@pytest.fixture(scope="session")
def conform_devices(request: pytest.FixtureRequest) -> tuple[str, ...]:
    from conform.campaign import resolve_devices

    return resolve_devices(request.config.getoption("conform_device"))


class Checker:
    """Runs the engine for one test and records what it finds on the test's report."""

    def __init__(self, node: pytest.Item, devices: tuple[str, ...], report_dir: str | None) -> None:
        self.node = node
        self.devices = devices
        self.report_dir = Path(report_dir) if report_dir else None
        self.outcomes: list[Any] = []

    def check(self, case: Any, transform: str, params: dict[str, Any] | None = None,
              *, prepared: Any = None) -> list[Any]:
        """Check ``case`` with ``transform``; ``prepared`` is :func:`conform.engine.prepare`'s
        result when the test already has it."""
        from conform.engine import check

        outcomes = check(case, transform, params=params, devices=self.devices, prepared=prepared)
        for outcome in outcomes:
            if outcome.is_divergence and self.report_dir is not None:
                from conform import repro

                try:
                    path = repro.write(outcome, case, self.report_dir / "repro")
                    outcome.repro = str(path.relative_to(self.report_dir))
                except Exception as exc:
                    outcome.notes["repro_error"] = f"{type(exc).__name__}: {exc}"
            outcome.notes["test"] = self.node.nodeid
            self.node.user_properties.append((PROPERTY, json.dumps(outcome.to_json(), default=repr)))
        self.outcomes.extend(outcomes)
        return outcomes

    def assert_conforms(self, case: Any, transform: str, params: dict[str, Any] | None = None,
                        *, prepared: Any = None) -> list[Any]:
        """Check and fail the test on any new (unregistered) divergence."""
        from conform.outcome import Verdict

        outcomes = self.check(case, transform, params, prepared=prepared)
        failures = [o for o in outcomes if o.verdict is Verdict.FAIL]
        if failures:
            pytest.fail("\n\n".join(o.describe() for o in failures), pytrace=False)
        return outcomes


@pytest.fixture
def conform(request: pytest.FixtureRequest, conform_devices: tuple[str, ...]) -> Checker:
    return Checker(request.node, conform_devices, request.config.getoption("conform_report"))


class _Session:
    """Collects outcomes from every report (local or from xdist workers) on the controller."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.outcomes: list[Any] = []
        self.started = time.monotonic()
        self.is_worker = hasattr(config, "workerinput")

    @pytest.hookimpl(trylast=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        report_dir = self.config.getoption("conform_report")
        if report_dir and not self.is_worker:
            from conform import record
            from conform.errors import UsageError

            try:
                record.prepare_report_dir(Path(report_dir), force=False)
            except UsageError as exc:
                raise pytest.UsageError(f"fx-conform: --conform-report: {exc}") from None

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "call" or self.is_worker:
            return
        for name, value in report.user_properties:
            if name == PROPERTY:
                from conform.outcome import Outcome

                self.outcomes.append(Outcome.from_json(json.loads(value)))

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        report_dir = self.config.getoption("conform_report")
        if self.is_worker or not report_dir:
            return
        from conform import campaign, record

        path = Path(report_dir)
        recorder = record.Recorder(path, "pytest")
        recorder.record(self.outcomes)
        recorder.close()
        meta = {
            "duration_s": round(time.monotonic() - self.started, 3),
            "seed": self.config.getoption("conform_seed"),
            "profile": self.config.getoption("conform_profile"),
            "environment": record.environment(),
        }
        # witnesses are replayed by the project's own tests (tests/unit/test_known.py), not here
        campaign.finish(path, meta=meta)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.is_worker or not self.outcomes:
            return
        from collections import Counter

        counts = Counter(o.verdict.value for o in self.outcomes)
        line = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        terminalreporter.write_sep("-", "fx-conform")
        terminalreporter.write_line(f"{len(self.outcomes)} outcomes: {line}")
        report_dir = self.config.getoption("conform_report")
        if report_dir:
            terminalreporter.write_line(f"report: {Path(report_dir) / 'index.html'}")
