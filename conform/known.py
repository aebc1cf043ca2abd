"""The known-divergence registry: every accepted difference, declared once, with its reason.

An outcome that matches an entry is reported as *known* rather than as a failure. Each
entry carries a *witness*: a ``"module:function"`` returning a :class:`Witness` (a case,
the transform and its parameters) that shows the divergence. A test and every campaign
replay the witnesses; an entry whose witness no longer diverges is reported as *stale*.

To add an entry, append a :class:`KnownDivergence` to :data:`KNOWN`::

    KnownDivergence(
        id="split-module-inplace-only-partition",
        transform="split_module",
        kind=Kind.UPSTREAM_BUG,
        reason="upstream drops the output of a partition holding only an in-place op",
        issue="https://github.com/pytorch/pytorch/issues/NNNNN",
        match=Match(stage=Stage.TRANSFORM_UPSTREAM, symptom=Symptom.CRASH, exception="KeyError"),
        witness="conform.witnesses.split:inplace_only_partition",
    )
"""

from __future__ import annotations

import dataclasses
import re
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from conform.outcome import Outcome, Stage, Symptom

if TYPE_CHECKING:
    from conform.case import Case


class Kind(StrEnum):
    UPSTREAM_BUG = "upstream-bug"  # upstream is wrong; the reference does the right thing
    BY_DESIGN = "by-design"  # a deliberate difference (an upstream limitation not copied, ...)


@dataclasses.dataclass(frozen=True)
class Match:
    """Declarative matcher; every field that is set must hold.

    ``message`` and ``node`` are regular expressions searched in the outcome's message (and
    rendered diffs) and first diverging node name; ``source`` is a case source name;
    ``params`` holds key/value pairs the outcome's parameters must contain.
    """

    stage: Stage | None = None
    symptom: Symptom | None = None
    exception: str | None = None
    message: str | None = None
    node: str | None = None
    source: str | None = None
    params: tuple[tuple[str, Any], ...] = ()

    def __call__(self, outcome: Outcome) -> bool:
        if self.stage is not None and outcome.stage != self.stage:
            return False
        if self.symptom is not None and outcome.symptom != self.symptom:
            return False
        if self.exception is not None and outcome.exception != self.exception:
            return False
        if self.source is not None and outcome.source != self.source:
            return False
        if self.message is not None:
            text = "\n".join([outcome.message, *(d.render() for d in outcome.diffs)])
            if not re.search(self.message, text, re.S):
                return False
        if self.node is not None and not (outcome.node and re.search(self.node, outcome.node)):
            return False
        return all(outcome.params.get(k) == v for k, v in self.params)


@dataclasses.dataclass(frozen=True)
class Witness:
    """A case that shows a known divergence: the engine checks ``case`` with ``transform``
    and ``params`` and expects an outcome matching the entry."""

    case: Case
    params: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class KnownDivergence:
    id: str
    transform: str
    kind: Kind
    reason: str
    match: Match
    witness: str
    issue: str | None = None

    def matches(self, outcome: Outcome) -> bool:
        return outcome.transform == self.transform and self.match(outcome)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "transform": self.transform,
            "kind": self.kind.value,
            "reason": self.reason,
            "issue": self.issue,
            "witness": self.witness,
        }


KNOWN: tuple[KnownDivergence, ...] = ()


def classify(outcome: Outcome) -> KnownDivergence | None:
    """The first registry entry matching ``outcome``, or None."""
    for entry in KNOWN:
        if entry.matches(outcome):
            return entry
    return None


def by_id() -> dict[str, KnownDivergence]:
    return {entry.id: entry for entry in KNOWN}


def load_witness(entry: KnownDivergence) -> Witness:
    """Call the entry's witness function."""
    from conform.registry import load

    witness = load(entry.witness)()
    if not isinstance(witness, Witness):
        raise TypeError(f"witness {entry.witness} returned {type(witness).__name__}, expected Witness")
    return witness
