from __future__ import annotations

from pathlib import Path

import pytest

from conform import campaign, plugins
from conform.errors import UsageError
from conform.store import Store


@pytest.fixture
def planted() -> None:
    plugins.load(["conform.selfcheck"])


def _config(tmp_path: Path, **kw: object) -> campaign.CampaignConfig:
    base = dict(sources=("samples",), devices=("cpu",), budget_s=60.0, report_dir=str(tmp_path), workers=1,
                plugins=tuple(plugins.loaded()), database=None)
    base.update(kw)
    return campaign.CampaignConfig(**base)


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("transforms", ("nope",), "unknown transform 'nope'"),
        ("sources", ("nope",), "unknown source 'nope'"),
        ("sources", (), "no source selected"),
        ("devices", ("tpu",), "unknown device 'tpu'"),
        ("budget_s", -1.0, "budget must be a positive number"),
        ("max_cases", 0, "max-cases must be a positive integer"),
        ("workers", 0, "workers must be a positive integer"),
    ],
)
def test_validation(tmp_path: Path, field: str, value: object, needle: str) -> None:
    with pytest.raises(UsageError, match=needle):
        _config(tmp_path, **{field: value}).validate()


def test_report_path_that_is_a_file(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_text("keep me")
    with pytest.raises(UsageError, match="not a directory"):
        _config(path).validate()
    assert path.read_text() == "keep me"


def test_max_cases_is_shared_between_workers(tmp_path: Path) -> None:
    summary = campaign.run(_config(tmp_path, transforms=("shape_prop",), max_cases=7))
    assert summary["cases"] == 7 and summary["outcomes"] == 7


def test_same_seed_same_cases(tmp_path: Path) -> None:
    a = campaign.run(_config(tmp_path / "a", transforms=("shape_prop",), max_cases=6, seed=3))
    b = campaign.run(_config(tmp_path / "b", transforms=("shape_prop",), max_cases=6, seed=3))
    keys = [[o.key for o in Store.open(tmp_path / d).outcomes()] for d in ("a", "b")]
    assert keys[0] == keys[1]
    assert a["cases"] == b["cases"] == 6


def test_new_divergence_is_shrunk(tmp_path: Path, planted: None) -> None:
    from generators.spec import op_count

    summary = campaign.run(_config(tmp_path, sources=("random",), transforms=("planted_crash_on_mul",),
                                   max_cases=12, shrink_budget_s=20.0,
                                   source_options={"random": {"include": ("mul", "relu")}}))
    assert summary["new_divergences"] > 0
    outcomes = [o.to_json() for o in Store.open(tmp_path).outcomes()]
    shrunk = [o for o in outcomes if o["notes"].get("shrunk_from")]
    assert len(shrunk) == 1, "the first divergence of each origin is shrunk, once"
    original = next(o for o in outcomes if o["key"] == shrunk[0]["notes"]["shrunk_from"])
    assert original["origin"] == shrunk[0]["origin"]
    # smaller, and still holding the multiplication the planted bug needs
    assert op_count(shrunk[0]["spec"]) < op_count(original["spec"])
    assert any(node["op"] == "mul" for node in shrunk[0]["spec"]["nodes"])
    assert shrunk[0]["repro"]


def test_no_shrink_records_only_generated_cases(tmp_path: Path, planted: None) -> None:
    summary = campaign.run(_config(tmp_path, transforms=("planted_upstream_crash",), max_cases=4, shrink=False))
    assert summary["cases"] == 4
    assert summary["new_divergences"] == 4
    origins = summary["new_origins"]
    assert all(origin.startswith("planted_upstream_crash|") for origin in origins)
    assert any(origin.startswith("planted_upstream_crash|transform-upstream|crash|KeyError|") for origin in origins)
    assert not any(o.notes.get("shrunk_from") for o in Store.open(tmp_path).outcomes())


def test_two_workers_in_processes(tmp_path: Path) -> None:
    summary = campaign.run(_config(tmp_path, transforms=("shape_prop",), max_cases=6, workers=2))
    assert summary["checks"] == 6 and summary["outcomes"] == 6
    assert [w["checks"] for w in summary["worker_stats"]] == [3, 3]
    (run,) = Store.open(tmp_path).runs()  # the supervisor wrote both workers' outcomes into one run
    assert run["meta"]["workers"] == 2 and run["status"] == "finished"
    assert run["counts"]["outcomes"] == 6


def test_campaign_flags_a_stale_known_divergence(tmp_path: Path, planted: None) -> None:
    plugins.load(["_stale_plugin"])
    summary = campaign.run(_config(tmp_path, transforms=("planted_upstream_crash",), max_cases=2, shrink=False))
    assert summary["known"]["planted-no-longer"]["stale"] is True
    assert summary["known"]["planted-live"]["stale"] is False
    assert summary["known"]["planted-live"]["seen"] == 2
    assert "stale" in (tmp_path / "index.html").read_text()


def _batch(row_name: str, **config: object) -> object:
    from conform.registry import get
    from conform.worker import _Batch

    return _Batch(row=get(row_name), config=campaign.CampaignConfig(transforms=(row_name,), **config),
                  channel=None, seeds=None, deadline=0.0, quota=[0], seen=set(), seen_origins=set())


def test_workers_draw_random_cases_through_the_rows_focus() -> None:
    from hypothesis import find, settings

    batch = _batch("fuse")
    strategy = batch.specs("random")
    assert batch.specs("random") is strategy  # built once per batch
    # a layer's weight read in forward is planted only by the fuse focus's fold_pair pattern
    spec = find(strategy, lambda s: any(node["op"] == "weight_read" for node in s["nodes"]),
                settings=settings(max_examples=2000, database=None))
    assert spec["nodes"]


def test_configured_random_source_is_drawn_as_configured() -> None:
    # options on the random source replace the row's focus: no planted patterns
    from hypothesis import given, settings

    batch = _batch("fuse", source_options={"random": {"max_nodes": 3}})

    @settings(max_examples=20, database=None, deadline=None)
    @given(spec=batch.specs("random"))
    def drawn(spec: dict) -> None:
        assert not any(node["op"] == "weight_read" for node in spec["nodes"])

    drawn()
