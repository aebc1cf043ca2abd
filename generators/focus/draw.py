"""Random-module specs drawn from a transform's :class:`~generators.focus.focus.Focus`.

Each draw first decides whether it uses the focus (``focus.share`` of draws) or the general
vocabulary. A focused draw then takes a *swarm* subset of the focus (Groce et al., "Swarm
testing", ISSTA 2012): every op kind and pattern is left out with probability one half, so
features that mask one another also appear apart, and each case stresses a few features
heavily instead of all of them thinly. The genome is then drawn and planned as any other
(:func:`generators.random_modules.genomes`), so patterns are genes that hypothesis deletes
and simplifies while shrinking, and every draw is a valid spec.
"""

from __future__ import annotations

import functools
from typing import Any

from hypothesis import strategies as st

from generators.focus.focus import Focus
from generators.random_modules import Config, genomes, realize
from generators.vocab import VOCABULARY, kinds_by_category

PATTERN_CATEGORY = "pattern"


def features(focus: Focus) -> list[tuple[str, float]]:
    """``(kind name, weight)`` of every op kind and pattern the focus draws from, in a fixed
    order (general kinds first, then patterns). Categories expand to their kinds."""
    cats = kinds_by_category()
    table: dict[str, float] = {}
    for key, weight in focus.weights.items():
        names = cats.get(key, [key])
        for name in names:
            if name not in VOCABULARY or VOCABULARY[name].category == PATTERN_CATEGORY:
                raise ValueError(f"focus weight names {key!r}, which is not an op kind or category")
            table[name] = float(weight)
    for name, weight in focus.patterns.items():
        if name not in VOCABULARY or VOCABULARY[name].category != PATTERN_CATEGORY:
            raise ValueError(f"focus pattern {name!r} is not a pattern kind")
        table[name] = float(weight)
    return [(name, w) for name, w in table.items() if w > 0]


def swarm(focus: Focus, omit: list[bool]) -> tuple[tuple[str, float], ...]:
    """The subset of :func:`features` that ``omit`` keeps. At least one pattern (when the
    focus has any) and one kind always remain: an empty subset keeps every feature."""
    table = features(focus)
    kept = [row for row, drop in zip(table, omit) if not drop]
    patterns = [row for row in table if row[0] in focus.patterns]
    if patterns and not any(row[0] in focus.patterns for row in kept):
        kept += patterns
    return tuple(kept) or tuple(table)


@functools.lru_cache(maxsize=512)
def _config(table: tuple[tuple[str, float], ...], max_nodes: int, dtypes: tuple[str, ...], training: bool | None) -> Config:
    return Config(table=table, max_nodes=max_nodes, dtypes=dtypes, training=training)


@functools.lru_cache(maxsize=1)
def _general() -> Config:
    return Config.make()


def focused_config(focus: Focus, omit: list[bool] | None = None) -> Config:
    """The random-module config of a focused draw (``omit``: the swarm's left-out flags)."""
    table = swarm(focus, omit) if omit is not None else tuple(features(focus))
    return _config(table, focus.max_nodes, focus.dtypes, focus.training)


@st.composite
def _focused(draw: st.DrawFn, focus: Focus, use_swarm: bool) -> dict[str, Any]:
    # 0 (where hypothesis shrinks to) is a focused draw
    if draw(st.integers(0, 99)) >= round(focus.share * 100):
        config = _general()
    else:
        omit = None
        if use_swarm:
            n = len(features(focus))
            omit = draw(st.lists(st.booleans(), min_size=n, max_size=n))
        config = focused_config(focus, omit)
    genome = draw(genomes(config))
    return realize(genome, config)


def focused_specs(focus: Focus, *, swarm: bool = True) -> st.SearchStrategy[dict[str, Any]]:
    """Random-module specs directed by ``focus``.

    Args:
        focus: the transform's focus.
        swarm: draw a random subset of the focus's kinds and patterns per case.

    Returns:
        A strategy of specs :func:`generators.spec.build` materializes.
    """
    features(focus)  # a bad focus fails here, not inside a draw
    return _focused(focus, swarm)
