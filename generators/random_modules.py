"""The ``random`` source: random ``nn.Module`` specs drawn by hypothesis.

A draw is a *genome* (dtype, training flag, input shapes, and a list of genes, each a kind
choice plus eight small integers) that :func:`realize` plans into a spec
(:mod:`generators.spec`). Planning reads one gene at a time and asks the chosen op kind
(:mod:`generators.vocab`) to add a node whose operands and attributes are valid for the
shapes and dtypes seen so far. Any genome plans to a valid spec, so when hypothesis shrinks
a failing draw (deleting genes, lowering integers) every intermediate module still builds,
traces and runs: shrinking removes nodes and shrinks shapes toward size one.

Genes are drawn as lists of lists (of lists, for the largest size class), each with at
least one element: nesting is how long gene lists arise (hypothesis keeps each list short on
average), and the shrinker may delete every gene but one.

Knobs (keyword-only on :class:`RandomSource` and :func:`modules`; None means the default):

* ``include``: kind or category names to draw from (default: every kind);
* ``exclude``: kind or category names never to draw;
* ``weights``: ``{kind or category: relative weight}`` overriding the defaults (0 removes);
* ``max_nodes``: an upper bound on the traced graph's size (default 200);
* ``dtypes``: float dtypes to draw from (default float32, float64, bfloat16);
* ``training``: fix ``module.train(...)`` instead of drawing it.

Example::

    >>> from hypothesis import given
    >>> @given(modules(include=["matmul", "binary"], max_nodes=20))
    ... def test_traces(spec):
    ...     built = build(spec, seed=0)
    ...     torch.fx.symbolic_trace(built.module, concrete_args=built.concrete_args)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from hypothesis import strategies as st

from generators import spec as spec_mod
from generators.sources import Built, Source
from generators.vocab import INTERNAL, VOCABULARY, kinds_by_category
from generators.vocab.base import FLOAT_DTYPES, GENE_MAX, GENE_WIDTH, MAX_DIM, Gene, Planner

DEFAULT_MAX_NODES = 200
#: Default share of each float dtype among draws (float32 twice as often as the others).
DEFAULT_DTYPES: tuple[str, ...] = ("float32", "float32", "float64", "bfloat16")
#: Size classes: the longest list at each nesting level. Small graphs are common; graphs
#: near ``max_nodes`` still appear.
#: Classes whose most genes exceed twice the node budget are not drawn (their genes could
#: not fit, and they only slow generation and shrinking down).
SIZE_CLASSES: tuple[tuple[int, ...], ...] = ((10,), (10,), (6, 10), (6, 8, 8))


def vocabulary() -> list[str]:
    """Names of every drawable op kind."""
    return [name for name in VOCABULARY if name not in INTERNAL]


def _expand(names: Iterable[str], what: str) -> set[str]:
    cats = kinds_by_category()
    out: set[str] = set()
    for name in names:
        if name in cats:
            out.update(cats[name])
        elif name in VOCABULARY and name not in INTERNAL:
            out.add(name)
        else:
            valid = sorted(set(vocabulary()) | set(cats))
            raise ValueError(f"unknown op kind or category {name!r} in {what} (valid: {', '.join(valid)})")
    return out


@dataclasses.dataclass(frozen=True)
class Config:
    """The resolved knobs of a random-module strategy (see the module docstring)."""

    table: tuple[tuple[str, float], ...]
    max_nodes: int = DEFAULT_MAX_NODES
    dtypes: tuple[str, ...] = DEFAULT_DTYPES
    training: bool | None = None

    @classmethod
    def make(
        cls,
        *,
        include: Sequence[str] | None = None,
        exclude: Sequence[str] | None = None,
        weights: Mapping[str, float] | None = None,
        max_nodes: int | None = None,
        dtypes: Sequence[str] | None = None,
        training: bool | None = None,
    ) -> Config:
        chosen = _expand(include, "include") if include is not None else set(vocabulary())
        chosen -= _expand(exclude or (), "exclude")
        table = {name: VOCABULARY[name].weight for name in vocabulary() if name in chosen}
        cats = kinds_by_category()
        for key, value in (weights or {}).items():
            if value < 0:
                raise ValueError(f"weight of {key!r} is negative ({value})")
            # a category weight sets every kind in it; a kind weight overrides that
            for name in _expand([key], "weights") if key in cats else ():
                if name in table:
                    table[name] = float(value)
        for key, value in (weights or {}).items():
            if key not in cats:
                _expand([key], "weights")
                if key in table:
                    table[key] = float(value)
        rows = tuple((name, w) for name, w in table.items() if w > 0)
        if not rows:
            raise ValueError("include/exclude/weights leave no op kind to draw")
        if max_nodes is not None and max_nodes < 3:
            raise ValueError(f"max_nodes must be at least 3 (an input, an op, the output), got {max_nodes}")
        for d in dtypes or ():
            if d not in FLOAT_DTYPES:
                raise ValueError(f"unknown dtype {d!r} (valid: {', '.join(FLOAT_DTYPES)})")
        return cls(
            table=rows,
            max_nodes=max_nodes or DEFAULT_MAX_NODES,
            dtypes=tuple(dtypes) if dtypes else DEFAULT_DTYPES,
            training=training,
        )

    def kind_choices(self) -> tuple[str, ...]:
        """Kind names repeated in proportion to their weights, for a uniform draw."""
        # the lightest kind gets four entries; cap the table so extreme ratios stay cheap
        scale = 4.0 / min(w for _, w in self.table)
        scale = min(scale, 50_000 / sum(w for _, w in self.table))
        out: list[str] = ["skip"]  # index 0: where a shrunk kind choice lands (no node)
        for name, w in self.table:
            out.extend([name] * max(1, round(w * scale)))
        return tuple(out)


_GENE = st.lists(st.integers(0, GENE_MAX), min_size=GENE_WIDTH, max_size=GENE_WIDTH)
_INPUT = st.tuples(st.integers(0, 3), st.lists(st.integers(0, MAX_DIM - 1), min_size=4, max_size=4))


def genomes(config: Config) -> st.SearchStrategy[dict[str, Any]]:
    """Raw genomes for ``config`` (what hypothesis draws and shrinks)."""
    choices = config.kind_choices()
    budget = max(1, config.max_nodes - 2)
    classes = [c for c in SIZE_CLASSES if math.prod(c) <= 2 * budget] or [SIZE_CLASSES[0]]

    @st.composite
    def draw_genome(draw: st.DrawFn) -> dict[str, Any]:
        dtype = draw(st.sampled_from(config.dtypes))
        # eval mode three times in four: fusion and inference passes only take eval modules
        training = config.training if config.training is not None else draw(st.sampled_from((False, False, False, True)))
        inputs = draw(st.lists(_INPUT, min_size=1, max_size=3))
        nested: st.SearchStrategy[Any] = st.tuples(st.sampled_from(choices), _GENE)
        for longest in reversed(draw(st.sampled_from(classes))):
            # at least one gene at every level: an empty module checks nothing, and without
            # a minimum hypothesis draws empty lists often (a third of all draws)
            nested = st.lists(nested, min_size=1, max_size=longest)
        genes = _flatten(draw(nested))[: 2 * budget]  # later genes could not fit anyway
        output = draw(st.integers(0, 3))
        return {"dtype": dtype, "training": training, "inputs": inputs, "genes": genes, "output": output}

    return draw_genome()


def _structure(sinks: list[str], style: int) -> Any:
    if len(sinks) == 1 and style == 0:
        return sinks[0]
    if style == 1:
        return {"list": sinks}
    if style == 2:
        return {"dict": {f"out{i}": s for i, s in enumerate(sinks)}}
    if style == 3 and len(sinks) >= 2:
        return {"tuple": [sinks[0], {"dict": {"rest": {"tuple": sinks[1:]}}}]}
    return {"tuple": sinks}


def _flatten(nested: Any) -> list[tuple[str, list[int]]]:
    if isinstance(nested, tuple):
        return [nested]
    return [gene for item in nested for gene in _flatten(item)]


def realize(genome: dict[str, Any], config: Config | None = None) -> dict[str, Any]:
    """Plan a genome into a spec (deterministic; always valid)."""
    config = config or Config.make()
    p = Planner(genome["dtype"], genome["training"], config.max_nodes)
    for rank, dims in genome["inputs"]:
        p.new_input([d + 1 for d in dims[: rank + 1]])
    for kind_name, ints in genome["genes"]:
        kind = VOCABULARY[kind_name]
        cp = p.checkpoint()
        before = p.cost
        made = kind.plan(p, Gene(ints))
        # a kind's declared cost is what its plan traces to at most: count at least that
        p.cost = max(p.cost, before + kind.cost)
        if made is None or p.cost > config.max_nodes:
            p.rollback(cp)
    # when no gene left a value to return (all failed, or only asserts and dead code were
    # drawn) the module returns its first input: a graph of a placeholder and an output
    sinks = p.sinks() or [p.inputs[0]["name"]]
    return {
        "format": spec_mod.SPEC_FORMAT,
        "dtype": p.dtype,
        "training": p.training,
        "inputs": p.inputs,
        "signature": p.signature,
        "nodes": p.nodes,
        "outputs": _structure(sinks, genome["output"]),
        "stochastic": p.stochastic,
    }


def modules(
    *,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    weights: Mapping[str, float] | None = None,
    max_nodes: int | None = None,
    dtypes: Sequence[str] | None = None,
    training: bool | None = None,
) -> st.SearchStrategy[dict[str, Any]]:
    """A hypothesis strategy of random-module specs (JSON-able dicts).

    Args:
        include / exclude: op kind or category names (see :func:`vocabulary` and
            :func:`generators.vocab.kinds_by_category`); None draws from all.
        weights: relative weights by kind or category; None keeps the defaults.
        max_nodes: bound on the traced graph's node count; None is 200.
        dtypes: float dtypes to draw from; None draws float32, float64 and bfloat16.
        training: fix the module's training flag; None draws it.

    Returns:
        A strategy whose values :func:`generators.spec.build` materializes.
    """
    config = Config.make(include=include, exclude=exclude, weights=weights, max_nodes=max_nodes, dtypes=dtypes, training=training)
    return genomes(config).map(lambda g: realize(g, config))


class RandomSource(Source):
    """Random modules from the spec strategy :func:`modules`; the keyword-only knobs are
    those of :func:`modules` (None means the default)."""

    name = "random"
    description = "random nn.Modules planned from a JSON spec (valid shapes and dtypes by construction)"

    def __init__(
        self,
        *,
        include: Sequence[str] | None = None,
        exclude: Sequence[str] | None = None,
        weights: Mapping[str, float] | None = None,
        max_nodes: int | None = None,
        dtypes: Sequence[str] | None = None,
        training: bool | None = None,
    ) -> None:
        self.config = Config.make(include=include, exclude=exclude, weights=weights, max_nodes=max_nodes, dtypes=dtypes, training=training)

    def specs(self) -> st.SearchStrategy[dict[str, Any]]:
        config = self.config
        return genomes(config).map(lambda g: realize(g, config))

    def validate(self, spec: Any) -> None:
        spec_mod.validate(spec)

    def build(self, spec: Any, seed: int) -> Built:
        return spec_mod.build(spec, seed)

    def source_code(self, spec: Any, seed: int) -> str:
        return spec_mod.standalone_source(spec, seed)

    def label(self, spec: Any) -> str:
        return f"{spec_mod.op_count(spec)}ops-{spec['dtype']}-{spec_mod.digest(spec)}"

    def count(self) -> int | None:
        return None
