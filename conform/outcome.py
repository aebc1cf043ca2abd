"""Outcomes: what checking one case with one transform produced, as data.

A failure is never an exception that escapes the engine: every stage returns a value and
the engine folds those values into :class:`Outcome` records. The vocabulary is closed: a
:class:`Stage` (where it went wrong) and a :class:`Symptom` (what went wrong).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from enum import StrEnum
from typing import Any


class Stage(StrEnum):
    GENERATE = "generate"
    TRACE = "trace"
    TRANSFORM_REFERENCE = "transform-reference"
    TRANSFORM_UPSTREAM = "transform-upstream"
    EXECUTE = "execute"
    COMPARE = "compare"


class Symptom(StrEnum):
    CRASH = "crash"
    TIMEOUT = "timeout"
    EAGER_MISMATCH = "eager-mismatch"
    IMPL_DIVERGENCE = "impl-divergence"
    DEVICE_DIVERGENCE = "device-divergence"
    INVALID_GRAPH = "invalid-graph"
    METAMORPHIC = "metamorphic"  # the output breaks a relation it must satisfy on its own
    UNSUPPORTED = "unsupported"


class Verdict(StrEnum):
    """How an outcome counts: ``pass`` and ``skip`` are quiet, ``known`` matched the
    known-divergence registry, ``fail`` is a new divergence."""

    PASS = "pass"
    SKIP = "skip"
    KNOWN = "known"
    FAIL = "fail"


def stable_key(*parts: Any) -> str:
    """A short hash of JSON-able parts, identical across processes and runs."""
    blob = json.dumps(parts, sort_keys=True, default=repr, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


#: The implementation a symptom belongs to (``Outcome.side``); ``user`` is a user's own pass
#: checked one-sided (:mod:`conform.user_pass`).
SIDES = ("reference", "upstream", "both", "user")


@dataclasses.dataclass
class DiffEntry:
    """One differing path of a comparison, as data.

    ``path`` is where the two values differ (``"fingerprint.nodes.add_1[2]"``,
    ``"output[0]"``, ``"exception"``); ``left`` and ``right`` are the values on the
    :class:`Mismatch`'s two sides, rendered short, or None where the path exists on one side
    only.
    """

    path: str
    left: str | None = None
    right: str | None = None


@dataclasses.dataclass
class Mismatch:
    """A labelled difference between two sides (``left`` and ``right`` name them).

    ``detail`` is the rendered difference a person reads; ``entries`` are the differing
    paths and values as data, what the known-divergence registry matches.
    """

    left: str
    right: str
    what: str  # "outputs", "fingerprint", "error", "inputs after call", ...
    detail: str
    node: str | None = None  # the first node whose values diverge, when known
    entries: list[DiffEntry] = dataclasses.field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Mismatch:
        """A Mismatch from :meth:`to_json`'s output; records written before diffs carried
        entries have none."""
        fields = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in fields}
        kwargs["entries"] = [DiffEntry(**e) for e in kwargs.get("entries") or []]
        return cls(**kwargs)

    def render(self) -> str:
        head = f"{self.what}: {self.left} vs {self.right}"
        if self.node:
            head += f" (first diverging node: {self.node})"
        return f"{head}\n{self.detail}"


@dataclasses.dataclass
class Outcome:
    """One (case, transform, device) result.

    ``origin`` deduplicates: two outcomes with the same origin are the same bug seen twice.
    ``message`` is the engine's prose for people; ``side``, ``exception``, ``error``,
    ``place``, ``node`` and the diffs' entries are the data a known divergence matches.
    """

    key: str
    case_id: str
    source: str
    transform: str
    device: str
    verdict: Verdict
    stage: Stage | None = None
    symptom: Symptom | None = None
    message: str = ""
    exception: str | None = None
    error: str | None = None  # the raised exception's own message, as torch/upstream/reference wrote it
    side: str | None = None  # one of SIDES: the implementation the symptom belongs to
    place: str | None = None
    node: str | None = None
    diffs: list[Mismatch] = dataclasses.field(default_factory=list)
    known_id: str | None = None
    spec: Any = None
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    seed: int = 0
    repro: str | None = None
    duration_s: float = 0.0
    notes: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def origin(self) -> str:
        """transform/stage/symptom/exception type/place, the deduplication identity."""
        parts = [
            self.transform,
            self.stage.value if self.stage else "-",
            self.symptom.value if self.symptom else "-",
            self.exception or "-",
            self.place or "-",
        ]
        return "|".join(parts)

    @property
    def is_divergence(self) -> bool:
        return self.verdict in (Verdict.FAIL, Verdict.KNOWN)

    def describe(self) -> str:
        """The one-paragraph message a person reads: transform, stage, node, rule, replay."""
        if self.verdict in (Verdict.PASS, Verdict.SKIP):
            return f"{self.transform} [{self.case_id}]: {self.verdict.value} {self.message}".rstrip()
        where = f" at node {self.node}" if self.node else ""
        lines = [
            f"{self.transform} diverges on {self.case_id} ({self.device}): "
            f"{self.stage.value if self.stage else '?'} / {self.symptom.value if self.symptom else '?'}{where}",
        ]
        if self.known_id:
            lines.append(f"known divergence: {self.known_id}")
        if self.message:
            lines.append(self.message)
        lines.extend(d.render() for d in self.diffs)
        lines.append(f"replay: conform replay {self.key}{self.replay_options}")
        return "\n".join(lines)

    @property
    def replay_options(self) -> str:
        """What ``conform replay`` must be told besides the key: a pass of the user's own
        (``MODULE:ATTR``) is imported only when it is named again."""
        return f" --transform {self.transform}" if ":" in self.transform else ""

    def to_json(self) -> dict[str, Any]:
        """A JSON-able view of the outcome. Containers (params, notes) are shared with the
        outcome rather than copied: serialize the result, do not edit it."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["diffs"] = [d.to_json() for d in self.diffs]
        data["verdict"] = self.verdict.value
        data["stage"] = self.stage.value if self.stage else None
        data["symptom"] = self.symptom.value if self.symptom else None
        data["origin"] = self.origin
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Outcome:
        fields = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in fields}
        kwargs["verdict"] = Verdict(kwargs["verdict"])
        kwargs["stage"] = Stage(kwargs["stage"]) if kwargs.get("stage") else None
        kwargs["symptom"] = Symptom(kwargs["symptom"]) if kwargs.get("symptom") else None
        kwargs["diffs"] = [Mismatch.from_json(d) for d in kwargs.get("diffs") or []]
        return cls(**kwargs)
