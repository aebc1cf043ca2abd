"""The Ray backend, end to end on a local cluster: the same seed and case count give the same
distinct keys as the local process pool."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_supervisor import COMMON, conform

from conform.store import Store


def _keys(report: Path) -> set[str]:
    with Store.open(report) as store:
        return {o.key for o in store.outcomes()}


@pytest.mark.slow
def test_a_ray_campaign_checks_what_a_local_one_checks(tmp_path: Path) -> None:
    argv = ("run", "--source", "samples", "--source", "random", "--transform", "shape_prop",
            "--transform", "split_module", "--max-cases", "8", "--seed", "5", "--no-shrink", *COMMON)
    local = conform(*argv, "--workers", "1", "--report", str(tmp_path / "local"), timeout=600)
    assert local.returncode == 0, local.stderr
    on_ray = conform(*argv, "--workers", "1", "--backend", "ray", "--report", str(tmp_path / "ray"), timeout=900)
    assert on_ray.returncode == 0, on_ray.stderr
    keys = _keys(tmp_path / "local")
    assert len(keys) >= 8
    assert _keys(tmp_path / "ray") == keys


@pytest.mark.slow
def test_a_ray_campaign_on_two_tasks_records_every_check_once(tmp_path: Path) -> None:
    done = conform("run", "--source", "samples", "--source", "random", "--transform", "shape_prop",
                   "--transform", "split_module", "--max-cases", "8", "--seed", "5", "--no-shrink", *COMMON,
                   "--workers", "2", "--backend", "ray", "--report", str(tmp_path / "ray"), timeout=900)
    assert done.returncode == 0, done.stderr
    with Store.open(tmp_path / "ray") as store:
        outcomes = store.outcomes()
        (run,) = store.runs()
    assert len({o.key for o in outcomes}) == len(outcomes) >= 8
    assert run["meta"]["backend"] == "ray" and run["meta"]["checks"] == 8


def test_an_unreachable_cluster_is_a_usage_error(tmp_path: Path) -> None:
    done = conform("run", "--source", "samples", "--transform", "shape_prop", "--max-cases", "1",
                   "--backend", "ray", "--address", "127.0.0.1:1", "--report", str(tmp_path / "r"), *COMMON,
                   timeout=300)
    assert done.returncode == 2, done.stderr
    assert "cannot reach a Ray cluster at '127.0.0.1:1'" in done.stderr
