from __future__ import annotations

import json

from conform.outcome import Mismatch, Outcome, Stage, Symptom, Verdict, stable_key


def _outcome(**overrides) -> Outcome:
    base = dict(key="k1", case_id="samples:two_adds#0", source="samples", transform="split_module",
                device="cpu", verdict=Verdict.FAIL, stage=Stage.COMPARE, symptom=Symptom.EAGER_MISMATCH,
                message="differs", place="reference:outputs", node="add_1",
                diffs=[Mismatch("eager", "reference", "outputs", "output: 1 vs 2", "add_1")],
                params={"partition": {"add": 1}})
    base.update(overrides)
    return Outcome(**base)


def test_json_round_trip() -> None:
    o = _outcome()
    back = Outcome.from_json(json.loads(json.dumps(o.to_json())))
    assert back == o
    assert back.origin == o.origin


def test_origin_ignores_case_and_params() -> None:
    a = _outcome(case_id="x", params={"partition": {}})
    b = _outcome(case_id="y", params={"partition": {"add": 3}})
    assert a.origin == b.origin == "split_module|compare|eager-mismatch|-|reference:outputs"


def test_describe_names_transform_stage_node_and_replay() -> None:
    text = _outcome().describe()
    assert "split_module" in text and "compare / eager-mismatch" in text
    assert "at node add_1" in text
    assert text.rstrip().endswith("conform replay k1")


def test_stable_key_is_order_insensitive_for_dicts() -> None:
    assert stable_key({"a": 1, "b": 2}) == stable_key({"b": 2, "a": 1})
    assert stable_key(1, 2) != stable_key(2, 1)


def test_divergence_verdicts() -> None:
    assert _outcome(verdict=Verdict.FAIL).is_divergence
    assert _outcome(verdict=Verdict.KNOWN).is_divergence
    assert not _outcome(verdict=Verdict.PASS).is_divergence
