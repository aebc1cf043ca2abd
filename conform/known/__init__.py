"""The known-divergence registry: every accepted difference, declared once, with its reason.

An outcome that matches an entry is reported as *known* rather than as a failure. Each
entry carries a *witness*: a ``"module:function"`` returning a :class:`Witness` (a case,
the transform and its parameters) that shows the divergence. A test and every campaign
replay the witnesses; an entry whose witness no longer diverges is reported as *stale*.

The entries live in one module per family, named as the families of :mod:`conform.traits`
and :mod:`conform.witnesses` are: :mod:`~conform.known.split`, :mod:`~conform.known.graph_utils`,
:mod:`~conform.known.normalize` (with meta_trace and rewrite), :mod:`~conform.known.optimization`
(with the validator) and :mod:`~conform.known.partition`; :data:`KNOWN` is all of them, in that
order. An entry matches structured fields of an outcome (stage, symptom, side, exception type,
the exception's own message, place, node, diff paths and values, the case's traits), never the
engine's wording, which lives in :mod:`conform.messages` and may change at any time.

To add an entry, append a :class:`KnownDivergence` to its family's ``KNOWN`` (``issue`` is the
PyTorch issue that reports the bug, or ``"unfiled"``)::

    KnownDivergence(
        id="split-module-inplace-only-partition",
        transform="split_module",
        kind=Kind.UPSTREAM_BUG,
        reason="upstream drops the output of a partition holding only an in-place op",
        issue="https://github.com/pytorch/pytorch/issues/NNNNN",
        match=Match(stage=Stage.TRANSFORM_UPSTREAM, symptom=Symptom.CRASH, side="upstream",
                    exception="KeyError", error="getitem"),
        witness="conform.witnesses.split:inplace_only_partition",
    )
"""


from __future__ import annotations

from typing import Any

from conform.known import graph_utils, normalize, optimization, partition, split
from conform.known.core import (
    ABSENT,
    APPLYING,
    AnyMatch,
    Diff,
    Kind,
    KnownDivergence,
    Match,
    Witness,
)
from conform.outcome import Outcome
from generators.sources import trust_factory

__all__ = [
    "ABSENT", "APPLYING", "KNOWN", "AnyMatch", "Diff", "Kind", "KnownDivergence", "Match", "Witness", "by_id",
    "classify", "entries", "load_witness", "traits_for",
]

KNOWN: tuple[KnownDivergence, ...] = (
    *split.KNOWN,
    *graph_utils.KNOWN,
    *normalize.KNOWN,
    *optimization.KNOWN,
    *partition.KNOWN,
)


def _trust_witness_modules() -> None:
    """Witness cases are factory cases of the witness modules: trust the functions those
    modules define, so a recorded witness replays (nothing else they import is trusted)."""
    for module_name in sorted({entry.witness.partition(":")[0] for entry in KNOWN}):
        trust_factory(f"{module_name}:*")


_trust_witness_modules()


_CACHE: dict[str, Any] = {}


def entries() -> tuple[KnownDivergence, ...]:
    """Every registered entry: the built-in :data:`KNOWN` and the entries plugins add."""
    from conform import plugins

    stamp = (plugins.generation(), id(KNOWN))
    if _CACHE.get("stamp") != stamp:
        _CACHE["entries"] = tuple(plugins.collect("conform_known"))
        _CACHE["stamp"] = stamp
    return _CACHE["entries"]


def traits_for(transform: str) -> list[str]:
    """The trait predicates that entries for ``transform`` name, in registry order."""
    return list(dict.fromkeys(c for e in entries() if e.transform == transform for c in e.match.cases))


def classify(outcome: Outcome) -> KnownDivergence | None:
    """The first registry entry matching ``outcome``, or None."""
    for entry in entries():
        if entry.matches(outcome):
            return entry
    return None


def by_id() -> dict[str, KnownDivergence]:
    return {entry.id: entry for entry in entries()}


def load_witness(entry: KnownDivergence) -> Witness:
    """Call the entry's witness function."""
    from conform.registry import load

    witness = load(entry.witness)()
    if not isinstance(witness, Witness):
        raise TypeError(f"witness {entry.witness} returned {type(witness).__name__}, expected Witness")
    return witness
