"""The :class:`Focus` of a transform: op-kind weights and patterns, with the share of draws
that use them."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

#: Share of a focused transform's draws that use its focus (the rest use the general
#: vocabulary, so the focus never becomes a blind spot).
DEFAULT_SHARE = 0.75


@dataclasses.dataclass(frozen=True)
class Focus:
    """What a transform is sensitive to.

    Args:
        weights: general op kind or category name -> relative weight.
        patterns: pattern kind name -> relative weight (kinds of category ``pattern``).
        share: fraction of draws that use the focus.
        training: fix the module's training flag (None draws it as the general vocabulary does).
        dtypes: float dtypes of focused draws.
        max_nodes: node budget of focused draws (small graphs keep checks fast).
    """

    weights: Mapping[str, float]
    patterns: Mapping[str, float]
    share: float = DEFAULT_SHARE
    training: bool | None = False
    dtypes: tuple[str, ...] = ("float32",)
    max_nodes: int = 60

    def __post_init__(self) -> None:
        if not 0.0 <= self.share <= 1.0:
            raise ValueError(f"focus share must be in [0, 1], got {self.share}")
        if not self.patterns and not self.weights:
            raise ValueError("a focus needs op-kind weights or patterns")
