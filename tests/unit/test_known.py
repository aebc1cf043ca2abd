from __future__ import annotations

import dataclasses

import pytest

from conform import campaign, known
from conform.case import Case
from conform.engine import check
from conform.known import ABSENT, KNOWN, AnyMatch, Diff, Kind, KnownDivergence, Match, Witness
from conform.outcome import DiffEntry, Mismatch, Outcome, Stage, Symptom, Verdict
from conform.selfcheck import PLANTED

TWO_ADDS = Case("samples", {"sample": "two_adds"})


def planted_witness() -> Witness:
    return Witness(case=TWO_ADDS, params={})


def clean_witness() -> Witness:
    return Witness(case=Case("samples", {"sample": "linear_relu"}), params={})


def _entry(witness: str = "test_known:planted_witness", **match: object) -> KnownDivergence:
    return KnownDivergence(
        id="planted-upstream-crash",
        transform="planted_upstream_crash",
        kind=Kind.UPSTREAM_BUG,
        reason="the planted upstream side raises KeyError on every case",
        match=Match(**match),
        witness=f"{__name__}:{witness.split(':')[1]}",
    )


def _outcome(**kw: object) -> Outcome:
    base = dict(key="k", case_id="c", source="samples", transform="planted_upstream_crash", device="cpu",
                verdict=Verdict.FAIL, stage=Stage.TRANSFORM_UPSTREAM, symptom=Symptom.CRASH,
                exception="KeyError", error="'lost'", side="upstream", place="split_module.py:12",
                message="upstream raises KeyError: lost", params={"mode": "x"})
    base.update(kw)
    return Outcome(**base)


@pytest.mark.parametrize(
    ("match", "matches"),
    [
        ({}, True),
        ({"stage": Stage.TRANSFORM_UPSTREAM, "symptom": Symptom.CRASH}, True),
        ({"stage": Stage.TRANSFORM_REFERENCE}, False),
        ({"exception": "KeyError"}, True),
        ({"exception": "ValueError"}, False),
        ({"error": r"lost"}, True),
        ({"error": r"^nothing$"}, False),
        ({"side": "upstream"}, True),
        ({"side": "reference"}, False),
        ({"place": r"split_module\.py:\d+"}, True),
        ({"place": r"split_module"}, False),  # in full
        ({"source": "random"}, False),
        ({"params": (("mode", "x"),)}, True),
        ({"params": (("mode", "y"),)}, False),
        ({"node": "add"}, False),
    ],
)
def test_matcher_fields(match: dict, matches: bool) -> None:
    assert _entry(**match).matches(_outcome()) is matches


def test_nothing_matches_the_engine_prose() -> None:
    """The message and a diff's rendered detail are for people: no matcher field reads them."""
    fields = {f.name for f in dataclasses.fields(Match)}
    assert not fields & {"message", "detail", "text"}
    with pytest.raises(TypeError):
        Match(message="upstream raises")  # type: ignore[call-arg]
    prose = _outcome(message="KeyError 'lost'", error=None,
                     diffs=[Mismatch("upstream", "reference", "error", "fingerprint.a: 1 vs 2")])
    assert not _entry(error="lost").matches(prose)
    assert not _entry(diffs=(Diff(r"fingerprint\.a"),)).matches(prose)  # rendered text is not an entry


def _fingerprint(*entries: DiffEntry) -> Outcome:
    return _outcome(stage=Stage.COMPARE, symptom=Symptom.IMPL_DIVERGENCE, exception=None, error=None,
                    side=None, place="fingerprint",
                    diffs=[Mismatch("upstream", "reference", "fingerprint", "rendered", entries=list(entries))])


@pytest.mark.parametrize(
    ("diffs", "only", "matches"),
    [
        ((Diff(r"fingerprint\.nodes\.add\[\d+\]"),), False, True),
        ((Diff(r"fingerprint\.nodes"),), False, False),  # a path matches in full
        ((Diff(r".*\.alpha", left=ABSENT),), False, True),
        ((Diff(r".*\.alpha", right=ABSENT),), False, False),
        ((Diff(r".*\[1\]", left=r"(\w+)", right=r"\*\*\1"),), False, True),  # right refers back to left
        ((Diff(r".*\[1\]", left=r"(\w+)", right=r"\*\1"),), False, False),
        ((Diff(r".*\[1\]", left="kw"), Diff(r".*\.alpha")), False, True),  # each pattern some entry
        ((Diff(r".*\[1\]", left="kw"), Diff(r".*\.beta")), False, False),
        ((Diff(r"fingerprint\.nodes\..*"),), True, True),
        ((Diff(r".*\[1\]"),), True, False),  # another entry is outside the patterns
    ],
)
def test_diff_patterns(diffs: tuple, only: bool, matches: bool) -> None:
    outcome = _fingerprint(DiffEntry("fingerprint.nodes.add[1]", "kw", "**kw"),
                           DiffEntry("fingerprint.nodes.add[3].alpha", None, "2"))
    assert _entry(diffs=diffs, diffs_only=only).matches(outcome) is matches


def test_any_match_holds_when_one_alternative_does() -> None:
    either = Match(side="reference") | Match(exception="KeyError", case=None)
    assert isinstance(either, AnyMatch) and len(either.matches) == 2
    assert _entry().__class__(**{**_entry().__dict__, "match": either}).matches(_outcome())
    neither = Match(side="reference") | Match(exception="ValueError")
    assert not neither(_outcome())
    with pytest.raises(ValueError, match="expected one of reference, upstream, both, user"):
        Match(side="left")


def test_matcher_requires_the_transform() -> None:
    assert not _entry().matches(_outcome(transform="split_module"))


def test_known_outcome_is_reported_as_known(monkeypatch: pytest.MonkeyPatch) -> None:
    entry = _entry(stage=Stage.TRANSFORM_UPSTREAM, exception="KeyError")
    monkeypatch.setattr(known, "KNOWN", (entry,))
    (o,) = check(TWO_ADDS, PLANTED["planted_upstream_crash"], params={})
    assert o.verdict is Verdict.KNOWN and o.known_id == entry.id


def test_stale_entry_is_flagged(monkeypatch: pytest.MonkeyPatch) -> None:
    import conform.registry as registry

    monkeypatch.setattr(registry, "TRANSFORMS", (*registry.TRANSFORMS, PLANTED["planted_upstream_crash"]))
    live = _entry(stage=Stage.TRANSFORM_UPSTREAM)
    stale = KnownDivergence(**{**live.__dict__, "id": "no-longer", "match": Match(exception="ValueError")})
    monkeypatch.setattr(known, "KNOWN", (live, stale))
    status = campaign.check_witnesses([live, stale])
    assert status[live.id]["stale"] is False
    assert status["no-longer"]["stale"] is True
    assert "witness now gives" in status["no-longer"]["stale_reason"]


def test_registry_ids_are_unique() -> None:
    ids = [entry.id for entry in KNOWN]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("entry", KNOWN, ids=[e.id for e in KNOWN])
def test_registered_divergence_still_reproduces(entry: KnownDivergence) -> None:
    """A registered divergence whose witness no longer diverges is stale: fix the registry."""
    assert entry.reason and entry.kind in Kind
    witness = known.load_witness(entry)
    outcomes = check(witness.case, entry.transform, params=witness.params)
    assert any(o.is_divergence and entry.matches(o) for o in outcomes), (
        f"{entry.id} is stale: its witness gives " + "; ".join(o.describe() for o in outcomes))


def has_two_adds(graph_module, built, params) -> bool:
    import operator

    return sum(n.target is operator.add for n in graph_module.graph.nodes) >= 2


def test_trait_limits_an_entry_to_cases_of_its_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    entry = KnownDivergence(
        id="planted-sub-on-two-adds", transform="planted_add_becomes_sub", kind=Kind.UPSTREAM_BUG,
        reason="planted: any symptom on a graph with two additions",
        match=Match(case=f"{__name__}:has_two_adds"), witness=f"{__name__}:planted_witness")
    monkeypatch.setattr(known, "KNOWN", (entry,))
    on_two_adds = check(TWO_ADDS, PLANTED["planted_add_becomes_sub"], params={"partition": {"add_1": 1}})
    assert {o.verdict for o in on_two_adds} == {Verdict.KNOWN}
    assert {o.symptom for o in on_two_adds} == {Symptom.EAGER_MISMATCH, Symptom.IMPL_DIVERGENCE}
    assert on_two_adds[0].notes["traits"] == [f"{__name__}:has_two_adds"]
    one_add = Case("samples", {"sample": "linear_relu"})
    elsewhere = check(one_add, PLANTED["planted_add_becomes_sub"], params={})
    assert {o.verdict for o in elsewhere} == {Verdict.FAIL}


def test_the_registry_is_split_by_family() -> None:
    """One module per family, named as conform/traits and conform/witnesses name theirs; each
    entry's witness and traits come from its own family; KNOWN is the families in order."""
    import importlib
    from pathlib import Path

    import conform.known as package

    families = ("split", "graph_utils", "normalize", "optimization", "partition")
    modules = [importlib.import_module(f"conform.known.{name}") for name in families]
    assert KNOWN == tuple(entry for module in modules for entry in module.KNOWN)
    for name, module in zip(families, modules, strict=True):
        assert importlib.util.find_spec(f"conform.traits.{name}") and importlib.util.find_spec(
            f"conform.witnesses.{name}")
        for entry in module.KNOWN:
            assert entry.witness.startswith(f"conform.witnesses.{name}:"), entry.id
            assert all(c.startswith(f"conform.traits.{name}:") for c in entry.match.cases), entry.id
    for path in Path(package.__file__).parent.glob("*.py"):
        assert len(path.read_text().splitlines()) < 600, path
