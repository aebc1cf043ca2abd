"""The known-divergence registry's vocabulary: :class:`Kind`, the matchers (:class:`Match`,
:class:`AnyMatch`, :class:`Diff`), :class:`Witness` and :class:`KnownDivergence`.

The entries live in one module per family beside this one; :mod:`conform.known` gathers them
and looks outcomes up.
"""

from __future__ import annotations

import dataclasses
import re
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from conform.outcome import SIDES, Stage, Symptom

if TYPE_CHECKING:
    from conform.case import Case
    from conform.outcome import DiffEntry, Outcome


class Kind(StrEnum):
    UPSTREAM_BUG = "upstream-bug"  # upstream is wrong; the reference does the right thing
    BY_DESIGN = "by-design"  # a deliberate difference (an upstream limitation not copied, ...)


#: A :class:`Diff` value pattern for "the path exists on the other side only".
ABSENT = "<absent>"

#: A ``place`` pattern for a crash while applying the transform itself: not a metamorphic
#: oracle's second application or re-run (``"retrace:upstream"``, ...) and not the harness's
#: fingerprinting of the result.
APPLYING = r"(?!(retrace|idempotent|roundtrip|compose):|conform/fingerprints/).*"


@dataclasses.dataclass(frozen=True)
class Diff:
    r"""A pattern for one diff entry (:class:`~conform.outcome.DiffEntry`) of an outcome.

    ``path`` is a regular expression the entry's path must match in full
    (``r"fingerprint\.nodes\.nonzero(_\d+)?\[.*"``). ``left`` and ``right``, when set, must
    match the entry's two values in full (the :class:`~conform.outcome.Mismatch`'s sides:
    upstream and reference for a fingerprint or output comparison, eager and the
    implementation for an eager mismatch, reference and upstream for two exception types);
    ``right`` may refer back to a group of ``left`` (``left=r"(\w+)", right=r"\*{1,2}\1"``).
    :data:`ABSENT` matches a path that the side does not have.
    """

    path: str
    left: str | None = None
    right: str | None = None

    def __call__(self, entry: DiffEntry) -> bool:
        if not re.fullmatch(self.path, entry.path, re.S):
            return False
        patterns = []
        for pattern, value in ((self.left, entry.left), (self.right, entry.right)):
            if pattern == ABSENT:
                if value is not None:
                    return False
                pattern = None
            elif pattern is not None and value is None:
                return False
            patterns.append(pattern or ".*")
        if self.left in (None, ABSENT) and self.right in (None, ABSENT):
            return True
        # one expression over both values, so the right one may refer back to the left's groups
        joined = f"(?:{patterns[0]})\x00(?:{patterns[1]})"
        return re.fullmatch(joined, f"{entry.left or ''}\x00{entry.right or ''}", re.S) is not None


@dataclasses.dataclass(frozen=True)
class Match:
    """Declarative matcher over an outcome's structured fields; every field that is set must hold.

    Nothing here reads the engine's own prose (``outcome.message``, a diff's rendered
    ``detail``): a match names data the outcome carries, so rewording a message never turns an
    entry stale.

    ``stage``, ``symptom``, ``exception`` (the exception type's name), ``side`` (the
    implementation the symptom belongs to: ``"reference"``, ``"upstream"``, ``"both"`` or
    ``"user"``) and ``source`` (a case source name) compare equal. ``params`` holds key/value
    pairs the outcome's parameters must contain.

    ``place`` is a regular expression the outcome's place must match in full (an execution
    crash's place is ``"<impl>@<file:line:function>"``, an eager mismatch's
    ``"<impl>:outputs"``; the metamorphic oracles' places are ``"<oracle>:<impl>"``,
    ``"retrace:upstream"`` say; :data:`APPLYING` is any crash while applying the transform).
    ``node`` is a regular expression searched in the first diverging node's name. ``error`` is
    a regular expression searched in the raised exception's own message (``outcome.error``:
    what torch, upstream or the reference wrote, never the engine).

    ``diffs`` are :class:`Diff` patterns over the outcome's diff entries: each must match some
    entry. With ``diffs_only`` every entry must match one of them (a fingerprint that differs
    only under ``parent``, say).

    ``case`` names a *trait*, a ``"module:function"`` predicate over the case,
    ``(graph_module, built, params) -> bool`` (the traced module, the
    :class:`~generators.sources.Built` case and the transform's parameters). The engine
    evaluates the traits that the registry's entries for a transform name and records the
    ones that hold in ``outcome.notes["traits"]``; the entry matches only when its trait is
    among them. A trait lets an entry claim every symptom a bug causes on the cases that have
    the bug's shape (a conv module called twice, say) without claiming the same symptom on
    other cases.

    One bug often shows as several symptoms: ``Match(...) | Match(...)`` is an
    :class:`AnyMatch`, which holds when any of its matches does.
    """

    stage: Stage | None = None
    symptom: Symptom | None = None
    exception: str | None = None
    side: str | None = None
    place: str | None = None
    node: str | None = None
    source: str | None = None
    params: tuple[tuple[str, Any], ...] = ()
    case: str | None = None
    error: str | None = None
    diffs: tuple[Diff, ...] = ()
    diffs_only: bool = False

    def __post_init__(self) -> None:
        if self.side is not None and self.side not in SIDES:
            raise ValueError(f"Match(side={self.side!r}): expected one of {', '.join(SIDES)}")

    @property
    def cases(self) -> tuple[str, ...]:
        return (self.case,) if self.case else ()

    def __or__(self, other: Match | AnyMatch) -> AnyMatch:
        return AnyMatch((self,)) | other

    def __call__(self, outcome: Outcome) -> bool:
        if self.case is not None and self.case not in outcome.notes.get("traits", ()):
            return False
        if self.stage is not None and outcome.stage != self.stage:
            return False
        if self.symptom is not None and outcome.symptom != self.symptom:
            return False
        if self.exception is not None and outcome.exception != self.exception:
            return False
        if self.side is not None and outcome.side != self.side:
            return False
        if self.source is not None and outcome.source != self.source:
            return False
        if self.place is not None and not (outcome.place and re.fullmatch(self.place, outcome.place)):
            return False
        if self.node is not None and not (outcome.node and re.search(self.node, outcome.node)):
            return False
        if self.error is not None and not (outcome.error is not None and re.search(self.error, outcome.error, re.S)):
            return False
        if self.diffs or self.diffs_only:
            entries = [e for d in outcome.diffs for e in d.entries]
            if not all(any(pattern(e) for e in entries) for pattern in self.diffs):
                return False
            if self.diffs_only and not (entries and all(any(p(e) for p in self.diffs) for e in entries)):
                return False
        return all(outcome.params.get(k) == v for k, v in self.params)


@dataclasses.dataclass(frozen=True)
class AnyMatch:
    """Several matchers of which any may hold: one bug seen as several symptoms."""

    matches: tuple[Match, ...]

    @property
    def cases(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(c for m in self.matches for c in m.cases))

    @property
    def case(self) -> str | None:
        """The trait every alternative names, or None when they do not share one."""
        cases = {m.case for m in self.matches}
        return cases.pop() if len(cases) == 1 else None

    @property
    def place(self) -> str | None:
        places = {m.place for m in self.matches}
        return places.pop() if len(places) == 1 else None

    def __or__(self, other: Match | AnyMatch) -> AnyMatch:
        more = other.matches if isinstance(other, AnyMatch) else (other,)
        return AnyMatch((*self.matches, *more))

    def __call__(self, outcome: Outcome) -> bool:
        return any(m(outcome) for m in self.matches)


@dataclasses.dataclass(frozen=True)
class Witness:
    """A case that shows a known divergence: the engine checks ``case`` with ``transform``
    and ``params`` and expects an outcome matching the entry."""

    case: Case
    params: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class KnownDivergence:
    """One accepted difference between upstream and the reference.

    ``id`` names the entry in reports; ``transform`` is the registry transform it belongs to;
    ``kind`` says whether upstream is wrong or the difference is deliberate; ``reason`` explains
    the difference; ``match`` decides which outcomes the entry claims; ``witness`` is the
    ``"module:function"`` returning the :class:`Witness` that shows it.

    ``issue`` is a PyTorch issue URL (``https://github.com/pytorch/pytorch/issues/N``, or
    ``/pull/N`` when a pull request is the only report of the bug) that reports this very bug:
    same function, same trigger, same wrong behaviour. It is ``"unfiled"`` when no such report
    exists; a by-design entry links an issue only when one documents the limitation.
    """

    id: str
    transform: str
    kind: Kind
    reason: str
    match: Match | AnyMatch
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
