"""The random-module vocabulary: every op kind a random spec may contain, by name.

:data:`VOCABULARY` maps a kind name (the ``"op"`` of a spec node) to its
:class:`~generators.vocab.base.OpKind`; :func:`kinds_by_category` groups them for
include/exclude by category.
"""

from __future__ import annotations

# The focus patterns (generators.focus) are internal kinds: only a transform's focus draws
# them. They import generators.vocab.base only, so importing them here is safe.
from generators.focus import graph_utils as _focus_graph_utils
from generators.focus import normalize as _focus_normalize
from generators.focus import optimization as _focus_optimization
from generators.focus import rewrite as _focus_rewrite
from generators.focus import split as _focus_split
from generators.vocab import blocks, layers, linalg, patterns, pointwise, structure
from generators.vocab.base import OpKind

_FOCUS_KINDS = (*_focus_optimization.KINDS, *_focus_normalize.KINDS, *_focus_graph_utils.KINDS, *_focus_split.KINDS,
               *_focus_rewrite.KINDS)

VOCABULARY: dict[str, OpKind] = {}
for _kind in (*pointwise.KINDS, *structure.KINDS, *linalg.KINDS, *layers.KINDS, *blocks.KINDS, *patterns.KINDS, *_FOCUS_KINDS):
    if _kind.name in VOCABULARY:
        raise RuntimeError(f"duplicate op kind {_kind.name!r}")
    VOCABULARY[_kind.name] = _kind

_clash = {kind.category for kind in VOCABULARY.values()} & set(VOCABULARY)
if _clash:
    raise RuntimeError(f"category names {sorted(_clash)} are also kind names: include/exclude would be ambiguous")

#: Kinds that only appear as part of another kind's plan and are never drawn on their own.
INTERNAL = frozenset(name for name, kind in VOCABULARY.items() if kind.weight == 0.0)


def kinds_by_category() -> dict[str, list[str]]:
    """Category name -> the kind names in it (drawable kinds only)."""
    out: dict[str, list[str]] = {}
    for name, kind in VOCABULARY.items():
        if name not in INTERNAL:
            out.setdefault(kind.category, []).append(name)
    return out
