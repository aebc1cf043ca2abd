"""The engine's prose is for people: rewording every message in conform.messages changes no
verdict and turns no known divergence stale, because entries match structured fields only."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from conform import known, messages
from conform.engine import check
from conform.known import Kind, KnownDivergence, Match
from conform.outcome import Outcome

ENTRIES = known.KNOWN


def _reworded(template: str) -> str:
    """The template with every word of prose replaced: only the data it fills in is left."""
    return "<reworded> " + " | ".join("{" + name + "}" for name in messages.placeholders(template))


def _replay(entries: tuple[KnownDivergence, ...]) -> dict[str, tuple[bool, dict[str, Any], list[str]]]:
    """Per entry: whether its witness still shows it, each outcome's verdict and known entry
    by key, and the outcomes' messages."""
    seen = {}
    for entry in entries:
        witness = known.load_witness(entry)
        outcomes = check(witness.case, entry.transform, params=witness.params)
        seen[entry.id] = (
            any(o.is_divergence and entry.matches(o) for o in outcomes),
            {o.key: (o.verdict, o.known_id) for o in outcomes},
            [o.message for o in outcomes],
        )
    return seen


def _reword(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(messages, "MESSAGES", {k: _reworded(v) for k, v in messages.MESSAGES.items()})


def test_every_template_is_reworded_with_its_fields() -> None:
    for key, template in messages.MESSAGES.items():
        text = _reworded(template)
        assert text != template and messages.placeholders(text) == messages.placeholders(template), key


def test_rewording_every_engine_message_changes_no_verdict(monkeypatch: pytest.MonkeyPatch) -> None:
    before = _replay(ENTRIES)
    _reword(monkeypatch)
    after = _replay(ENTRIES)
    stale = [entry_id for entry_id, (shown, _, _) in after.items() if not shown]
    assert not stale, f"entries that matched the engine's wording: {stale}"
    for entry_id, (_, verdicts, texts) in after.items():
        assert verdicts == before[entry_id][1], entry_id
        # the rewording reached every divergence's message (the engine wrote none outside the table)
        assert all(t.startswith("<reworded>") for t in texts if t), (entry_id, texts)


@dataclasses.dataclass(frozen=True)
class _ProseMatch:
    """What the registry no longer allows: a matcher over the engine's wording."""

    text: str
    cases: tuple[str, ...] = ()

    def __call__(self, outcome: Outcome) -> bool:
        return self.text in outcome.message


def test_the_rewording_catches_an_entry_that_matches_engine_prose(monkeypatch: pytest.MonkeyPatch) -> None:
    entry = known.by_id()["split-module-keep-order-returned-attribute"]
    prose = dataclasses.replace(entry, id="matches-prose", match=_ProseMatch("upstream raises KeyError"))
    structured = dataclasses.replace(entry, id="matches-data", kind=Kind.UPSTREAM_BUG,
                                     match=Match(side="upstream", exception="KeyError"))
    assert _replay((prose,))["matches-prose"][0] and _replay((structured,))["matches-data"][0]
    _reword(monkeypatch)
    after = _replay((prose, structured))
    assert after["matches-prose"][0] is False  # stale once the engine words it otherwise
    assert after["matches-data"][0] is True
