"""The batch scheduler: warm-up round robin, then more batches where discoveries continue."""

from __future__ import annotations

from collections import Counter

import pytest

from conform.errors import UsageError
from conform.scheduler import Scheduler

NAMES = ["split_module", "partition", "fuse"]


def _run(scheduler: Scheduler, batches: int, finds: dict[str, int]) -> list[str]:
    """Hand out ``batches`` batches; each reports 2 s and ``finds[name]`` new lines."""
    picks = []
    for _ in range(batches):
        name = scheduler.next()
        picks.append(name)
        scheduler.report(name, seconds=2.0, cases=10, new_lines=finds.get(name, 0), new_origins=0)
    return picks


def test_warmup_is_round_robin_in_the_given_order() -> None:
    scheduler = Scheduler(NAMES, seed=3, warmup=2)
    # reports during warm-up do not change its order, however lopsided
    picks = _run(scheduler, 6, {"fuse": 100})
    assert picks == NAMES * 2


def test_a_transform_still_finding_coverage_gets_more_batches() -> None:
    scheduler = Scheduler(NAMES, seed=0, warmup=2)
    picks = []
    for _ in range(300):
        name = scheduler.next()
        picks.append(name)
        # partition keeps finding new lines; the others saturated after warm-up
        found = 5 if name == "partition" else (3 if scheduler.stats[name].reported < 2 else 0)
        scheduler.report(name, seconds=1.0, cases=10, new_lines=found, new_origins=0)
    counts = Counter(picks[6:])
    assert counts["partition"] > 3 * counts["split_module"]
    assert counts["partition"] > 3 * counts["fuse"]


def test_new_origins_count_as_discoveries() -> None:
    scheduler = Scheduler(["a", "b"], seed=1, warmup=1)
    for _ in range(200):
        name = scheduler.next()
        scheduler.report(name, seconds=1.0, cases=5, new_lines=0, new_origins=1 if name == "b" else 0)
    assert scheduler.stats["b"].issued > 2 * scheduler.stats["a"].issued


def test_no_transform_starves() -> None:
    floor = 0.2
    scheduler = Scheduler(NAMES, seed=7, warmup=1, floor=floor)
    picks = _run(scheduler, 600, {"partition": 50})
    counts = Counter(picks)
    for name in ("split_module", "fuse"):
        # at least half the floor's share, whatever the others find
        assert counts[name] >= 0.5 * floor / len(NAMES) * len(picks), counts
    weights = scheduler.weights()
    assert all(w >= floor / len(NAMES) - 1e-9 for w in weights.values())
    assert sum(weights.values()) == pytest.approx(1.0)


def test_rates_decay_so_a_transform_that_saturates_loses_its_lead() -> None:
    scheduler = Scheduler(["a", "b"], seed=2, warmup=1, half_life=2.0)
    for _ in range(10):
        scheduler.report("a", seconds=1.0, cases=1, new_lines=10, new_origins=0)
    scheduler.report("b", seconds=1.0, cases=1, new_lines=1, new_origins=0)
    assert scheduler.weights()["a"] > scheduler.weights()["b"]
    for _ in range(12):
        scheduler.report("a", seconds=1.0, cases=1, new_lines=0, new_origins=0)
    assert scheduler.weights()["a"] < scheduler.weights()["b"]


def test_deterministic_given_seed_and_reports() -> None:
    finds = {"split_module": 3, "partition": 1}
    first = _run(Scheduler(NAMES, seed=11), 100, finds)
    again = _run(Scheduler(NAMES, seed=11), 100, finds)
    other = _run(Scheduler(NAMES, seed=12), 100, finds)
    assert first == again
    assert first != other


def test_uniform_while_nothing_is_found() -> None:
    scheduler = Scheduler(NAMES, seed=0, warmup=0)
    assert scheduler.weights() == {name: pytest.approx(1 / 3) for name in NAMES}
    counts = Counter(_run(scheduler, 300, {}))
    assert all(counts[name] > 60 for name in NAMES)


def test_state_is_json_able_and_counts_batches() -> None:
    import json

    scheduler = Scheduler(NAMES, seed=0, warmup=1)
    _run(scheduler, 3, {"fuse": 4})
    state = scheduler.state()
    assert state["fuse"]["batches"] == 1 and state["fuse"]["found"] == 4 and state["fuse"]["seconds"] == 2.0
    json.dumps(state)


@pytest.mark.parametrize(("args", "kwargs", "needle"), [
    ([], {}, "at least one transform"),
    (["a", "a"], {}, "listed twice"),
    (["a"], {"floor": 1.5}, "floor"),
    (["a"], {"half_life": 0}, "half_life"),
])
def test_bad_arguments_say_what_is_wrong(args: list[str], kwargs: dict, needle: str) -> None:
    with pytest.raises(UsageError, match=needle):
        Scheduler(args, seed=0, **kwargs)


def test_report_for_an_unknown_transform_lists_the_known_ones() -> None:
    scheduler = Scheduler(["a", "b"], seed=0)
    with pytest.raises(UsageError, match=r"unknown transform 'c' \(valid: a, b\)"):
        scheduler.report("c", seconds=1.0, cases=1, new_lines=0, new_origins=0)
    with pytest.raises(UsageError, match="non-negative"):
        scheduler.report("a", seconds=-1.0, cases=1, new_lines=0, new_origins=0)
