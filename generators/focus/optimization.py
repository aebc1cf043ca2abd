"""Patterns and foci of the optimization family: ``fuse``, ``remove_dropout``,
``optimize_for_inference`` and ``merge_matmul``.

Each pattern plants the construct behind known divergences and the branches upstream takes
on it (see ``torch/fx/experimental/optimization.py`` and ``merge_matmul.py``):

* ``fold_pair``: conv/Linear followed by a batch norm, with the layer called again, its
  weight read, its output used elsewhere (fusion skips the pair), or the norm shared;
* ``linear_norm``, ``linear_norm_other_channels``: Linear + BatchNorm1d over a 2-d or 3-d
  output, with the norm's channels equal to the Linear's features or not;
  ``norm_without_affine``: the norm without affine parameters;
* ``conv_functional_norm``: conv followed by ``F.batch_norm`` (never fused);
* ``keyword_dropout``: dropout module or function called with its input by keyword;
* ``channel_gate``, ``uneven_pool``, ``reduced_in_region``, ``number_in_region``: the
  MKLDNN layout pass's regions (broadcasting add/mul, adaptive pools, 0-dim values, numbers);
* ``matmul_group``, ``keyword_matmul``, ``matmul_update_between``: ``torch.matmul`` calls
  sharing a right operand (2-d or batched), with left operands of the same or mixed ranks,
  an operand by keyword, or an in-place update between them.

Constructs that make upstream fail early (a norm without affine parameters, a keyword
operand) are patterns of their own, so swarm subsets draw them apart from the others.
"""

from __future__ import annotations

import math
from typing import Any

from generators.focus import _plant
from generators.focus._plant import Pattern
from generators.focus.focus import Focus
from generators.vocab.base import (
    FLOAT_LIMIT,
    MAX_DIM,
    MAX_ELEMENTS,
    Gene,
    OpKind,
    Planner,
    Value,
    Writer,
    numel,
)
from generators.vocab.schema import Name, OneOf


class WeightRead(OpKind):
    """``x + self.<layer>.weight.mean()``: a read of a layer's parameter in forward (a second
    use of the layer's qualified name). Planted by :class:`FoldPair`."""

    name = "weight_read"
    category = "state"
    weight = 0.0
    cost = 3

    def plan(self, p: Planner, g: Gene) -> Value | None:
        return None

    def emit(self, node: dict[str, Any], w: Writer) -> None:
        w.assign(node, f"{node['in'][0]} + self.{node['attrs']['attr']}.weight.mean()")

    def fields(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # the layer an earlier node creates (``new`` False: the spec check finds it defined)
        return {"attr": Name("fc", "conv"), "new": OneOf((False,))}


def _feature_map(p: Planner, g: Gene, nd: int) -> Value:
    if nd == 0:
        return _plant.value_of_rank(p, g, 2, (g.int(2, 4), g.int(1, MAX_DIM)))
    default = (g.int(1, 2), g.int(1, 3), *[g.int(3, 5) for _ in range(nd)])
    return _plant.value_of_rank(p, g, nd + 2, default)


def _layer(p: Planner, g: Gene, x: Value, nd: int, reuse: dict[str, Any] | None = None) -> Value | None:
    if nd == 0:
        return _plant.linear(p, x, out=g.int(1, MAX_DIM), bias=not g.chance(25), reuse=reuse)
    k = g.int(1, min(3, min(x.shape[2:])))
    return _plant.conv(p, x, cout=g.int(1, 4), k=k, pad=g.int(0, 1), bias=not g.chance(25), reuse=reuse)


class FoldPair(Pattern):
    """conv/Linear + batch norm, the layer called again, its weight read, its output also
    used elsewhere (fusion skips the pair), or the norm called again on another value."""

    name = "fold_pair"

    def plan(self, p: Planner, g: Gene) -> Value | None:
        nd = g.int(0, 3)  # 0: Linear + BatchNorm1d, else ConvNd + BatchNormNd
        x = _feature_map(p, g, nd)
        y = _layer(p, g, x, nd)
        if y is None:
            return None
        layer = p.modules[-1]
        z = _plant.batch_norm(p, y)
        if z is None:
            return None
        norm = p.modules[-1]
        style = g.int(0, 4)  # 0: fold alone, 1: layer called again, 2: weight read, 3: output reused, 4: norm shared
        if style == 1:
            other = p.new_input(x.shape) if g.chance(50) else x
            again = _layer(p, g, other, nd, reuse=layer)
            return z if again is None else _plant.binary(p, "add", z, again) or z
        if style == 2:
            return p.add("weight_read", [z], {"attr": layer["attr"], "new": False}, z.shape, z.dtype, z.bound + 1.0)
        if style == 3:
            return _plant.binary(p, "add", z, _plant.unary(p, "relu", y)) or z
        if style == 4:
            other = p.new_input(y.shape)
            again = _plant.batch_norm(p, other, reuse=norm)
            return z if again is None else _plant.binary(p, "add", z, again) or z
        if g.chance(50):
            return _plant.unary(p, "relu", z, style=g.int(0, 2))
        return z


class LinearNorm(Pattern):
    """Linear + BatchNorm1d over a 2-d output, or over a 3-d (N, L, C) output whose L equals
    the Linear's features (the pair looks foldable)."""

    name = "linear_norm"
    other_channels = False

    def plan(self, p: Planner, g: Gene) -> Value | None:
        rank = 3 if self.other_channels else g.int(2, 3)
        default = (g.int(2, 4), g.int(1, MAX_DIM)) if rank == 2 else (g.int(2, 3), g.int(2, 4), g.int(1, MAX_DIM))
        x = _plant.value_of_rank(p, g, rank, default)
        # over a sequence the norm's channels are dim 1, equal to the features or not
        out = g.int(1, MAX_DIM)
        if rank == 3:
            out = x.shape[1] if not self.other_channels else (out if out != x.shape[1] else out + 1)
        y = _plant.linear(p, x, out=out, bias=not g.chance(25))
        if y is None:
            return None
        return _plant.batch_norm(p, y)


class LinearNormOtherChannels(LinearNorm):
    """Linear + BatchNorm1d over a 3-d (N, L, C) output whose L differs from the Linear's
    features: the pair cannot be folded."""

    name = "linear_norm_other_channels"
    other_channels = True


class NormWithoutAffine(Pattern):
    """Linear or conv followed by a batch norm without affine parameters (``bn.weight`` is
    None), alone in its pattern so the error it may cause does not hide the others."""

    name = "norm_without_affine"
    cost = 3

    def plan(self, p: Planner, g: Gene) -> Value | None:
        nd = g.pick((0, 0, 1, 2))
        x = _feature_map(p, g, nd)
        y = _layer(p, g, x, nd)
        return None if y is None else _plant.batch_norm(p, y, affine=False)


class ConvFunctionalNorm(Pattern):
    """A conv followed by ``F.batch_norm`` with registered statistics (never fused)."""

    name = "conv_functional_norm"

    def plan(self, p: Planner, g: Gene) -> Value | None:
        nd = g.int(1, 2)
        x = _feature_map(p, g, nd)
        y = _layer(p, g, x, nd)
        return None if y is None else _plant.batch_norm(p, y, affine=g.chance(50), functional=True)


class KeywordDropout(Pattern):
    """``self.drop(input=x)``: an ``nn.Dropout`` called with its input by keyword."""

    name = "keyword_dropout"
    cost = 2

    def plan(self, p: Planner, g: Gene) -> Value | None:
        x = p.float_value(g)
        if x is None:
            return None
        if p.training:
            p.stochastic = True
        # self.drop(input=x)
        return p.add("dropout", [x], {"style": 2, "attr": p.fresh("drop")}, x.shape, x.dtype, 2.0 * x.bound)


def _conv_relu(p: Planner, g: Gene) -> Value | None:
    x = _plant.value_of_rank(p, g, 4, (1, g.int(1, 3), g.int(3, 6), g.int(3, 6)))
    y = _plant.conv(p, x, cout=g.int(1, 4), k=g.int(1, 3), pad=1)
    return None if y is None else _plant.unary(p, "relu", y, style=g.int(0, 2))


class ChannelGate(Pattern):
    """Squeeze-and-excite: ``y * sigmoid(conv1x1(pool(y)))``, or ``y + bias`` with a
    per-channel parameter: add/mul of differently shaped values inside a region."""

    name = "channel_gate"

    def plan(self, p: Planner, g: Gene) -> Value | None:
        y = _conv_relu(p, g)
        if y is None:
            return None
        op = g.pick(("mul", "add"))
        if g.chance(50):
            bias = p.new_param((y.shape[1], 1, 1))
            return _plant.binary(p, op, y, bias)
        attrs = {"nd": 2, "out": [1, 1], "max": False, "style": g.int(0, 2), "attr": p.fresh("pool")}
        pooled = p.add("adaptive_pool", [y], attrs, (*y.shape[:2], 1, 1), y.dtype, y.bound)
        gate = _plant.conv(p, pooled, cout=y.shape[1], k=1)
        if gate is None:
            return None
        gate = _plant.unary(p, "sigmoid", gate, bound=1.0)
        return _plant.binary(p, op, y, gate, style=g.int(0, 1))


class UnevenPool(Pattern):
    """``relu(adaptive_avg_pool2d(relu(conv(x)), out))`` with ``out`` drawn per dim (often
    not dividing the input)."""

    name = "uneven_pool"

    def plan(self, p: Planner, g: Gene) -> Value | None:
        y = _conv_relu(p, g)
        if y is None:
            return None
        out = [g.int(1, s) for s in y.shape[2:]]
        attrs = {"nd": 2, "out": out, "max": False, "style": g.int(0, 2), "attr": p.fresh("pool")}
        pooled = p.add("adaptive_pool", [y], attrs, (*y.shape[:2], *out), y.dtype, y.bound)
        return _plant.unary(p, "relu", pooled, style=g.int(0, 2))


class ReducedInRegion(Pattern):
    """A 0-dim value (``torch.min(x)``) entering relu/sigmoid: MKLDNN cannot hold it."""

    name = "reduced_in_region"
    cost = 3

    def plan(self, p: Planner, g: Gene) -> Value | None:
        x = p.float_value(g, lambda v: bool(v.shape))
        if x is None:
            return None
        kind = g.pick(("amin", "amax", "sum", "mean"))
        bound = x.bound * numel(x.shape) if kind == "sum" else x.bound
        if bound > FLOAT_LIMIT:
            return None
        r = p.add(kind, [x], {"dim": None, "keepdim": False, "style": -1}, (), x.dtype, bound)
        r = _plant.unary(p, "relu", r, style=g.int(0, 2))
        return _plant.unary(p, "sigmoid", r, bound=1.0) if g.chance(50) else r


class NumberInRegion(Pattern):
    """``x * 2`` before a conv, or ``relu(conv(x)) + 1``: add/mul with a Python number."""

    name = "number_in_region"

    def plan(self, p: Planner, g: Gene) -> Value | None:
        before = g.chance(50)
        if before:
            x = _plant.value_of_rank(p, g, 4, (1, g.int(1, 3), g.int(3, 6), g.int(3, 6)))
            x = _plant.binary(p, g.pick(("mul", "add")), x, g.pick((2.0, 0.5)), style=g.int(0, 1))
            if x is None:
                return None
            y = _plant.conv(p, x, cout=g.int(1, 4), k=g.int(1, 3), pad=1)
            return None if y is None else _plant.unary(p, "relu", y)
        y = _conv_relu(p, g)
        return None if y is None else _plant.binary(p, g.pick(("add", "mul")), y, 1.0, style=g.int(0, 1))


class MatmulGroup(Pattern):
    """Two or three ``torch.matmul(a, w)`` calls sharing one right operand ``w`` (a
    parameter or an input; 2-d, or 3-d with a batch dim), on left operands of mixed ranks
    and batch dims. The variants that make upstream fail early are patterns of their own
    (:class:`KeywordMatmul`, :class:`MatmulUpdateBetween`), so a swarm can draw them apart."""

    name = "matmul_group"
    cost = 10
    keyword = False
    update = False

    def plan(self, p: Planner, g: Gene) -> Value | None:
        k, n = g.int(1, MAX_DIM), g.int(1, MAX_DIM)
        batched = not self.keyword and not self.update and g.chance(30)
        shape = (g.int(2, 3), k, n) if batched else (k, n)
        w = p.new_param(shape, 1.0 / math.sqrt(k)) if g.chance(50) else p.new_input(shape)
        same_rank = g.chance(50)
        products = []
        count = g.int(2, 3)
        for i in range(count):
            rank = 2 if same_rank else g.pick((2, 1, 3))
            if batched and rank == 3:
                lead: tuple[int, ...] = (shape[0], g.int(1, 3))
            else:
                lead = {1: (), 2: (g.int(1, 4),), 3: (g.int(1, 2), g.int(1, 3))}[rank]
            a = p.float_value(g, lambda v, want=(*lead, k): v.shape == want and v.name != w.name)
            if a is None or self.update or g.chance(50):
                # an owned intermediate, so an update between matmuls may write it
                a = _plant.unary(p, "tanh", p.new_input((*lead, k)), bound=1.0)
            out_shape = _matmul_shape(a.shape, w.shape)
            if out_shape is None or numel(out_shape) > MAX_ELEMENTS:
                return None
            bound = k * a.bound * w.bound
            if bound > FLOAT_LIMIT:
                return None
            # 1: torch.matmul(a, w); by keyword: 3: (a, other=w), 4: (input=a, other=w)
            style = g.pick((3, 4)) if self.keyword and i == count - 1 else 1
            products.append(p.add("matmul", [a, w], {"style": style, "rank": len(a.shape)}, out_shape, a.dtype, bound))
            if self.update and i == 0 and a.storage is not None:
                p.mutate(a, a.bound + 1.0)
                p.add("inplace", [a], {"style": 6}, a.shape, a.dtype, a.bound + 1.0, view_of=a)
        return products[-1]


class KeywordMatmul(MatmulGroup):
    """A group whose last ``torch.matmul`` passes an operand by keyword."""

    name = "keyword_matmul"
    keyword = True


class MatmulUpdateBetween(MatmulGroup):
    """A group with ``a.add_(1.0)`` of the first left operand after its matmul."""

    name = "matmul_update_between"
    update = True


def _matmul_shape(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...] | None:
    if len(a) == 1:
        return (*b[:-2], b[-1])
    if len(b) == 2:
        return (*a[:-1], b[-1])
    batch_a, batch_b = a[:-2], b[:-2]
    if len(batch_a) > len(batch_b) or any(x != y and x != 1 for x, y in zip(reversed(batch_a), reversed(batch_b))):
        return None
    return (*batch_b, a[-2], b[-1])


KINDS: tuple[OpKind, ...] = (
    WeightRead(),
    FoldPair(),
    LinearNorm(),
    LinearNormOtherChannels(),
    NormWithoutAffine(),
    ConvFunctionalNorm(),
    KeywordDropout(),
    ChannelGate(),
    UnevenPool(),
    ReducedInRegion(),
    NumberInRegion(),
    MatmulGroup(),
    KeywordMatmul(),
    MatmulUpdateBetween(),
)

_LAYERS = {"conv1d": 0.5, "conv2d": 1.0, "conv3d": 0.3, "linear": 1.0, "batch_norm": 1.5, "batch_norm_fn": 0.5,
           "fusable": 1.0, "conv_block": 0.5, "relu": 1.0, "add": 0.5}

FUSE = Focus(
    weights=_LAYERS,
    patterns={"fold_pair": 4.0, "linear_norm": 3.0, "linear_norm_other_channels": 1.0, "norm_without_affine": 1.0,
              "conv_functional_norm": 1.0},
    max_nodes=30,
)

REMOVE_DROPOUT = Focus(
    weights={"dropout": 3.0, "linear": 1.0, "relu": 1.0, "block": 0.5, "sequential": 0.5, "add": 0.5},
    patterns={"keyword_dropout": 2.0},
    max_nodes=30,
)

# The layout pass's regions come after fusion and dropout removal: few norms (each costs a
# fold and an MKLDNN batch norm), many convs, pointwise ops, pools and arithmetic.
OPTIMIZE_FOR_INFERENCE = Focus(
    weights={"conv2d": 1.5, "linear": 0.5, "batch_norm": 0.3, "relu": 1.5, "sigmoid": 0.5, "max_pool": 0.5,
             "avg_pool": 0.5, "adaptive_pool": 0.5, "add": 0.5, "mul": 0.5, "dropout": 0.5, "constant": 1.0},
    patterns={"channel_gate": 2.0, "uneven_pool": 2.0, "reduced_in_region": 1.0, "number_in_region": 2.0,
              "fold_pair": 1.0, "linear_norm": 1.0, "linear_norm_other_channels": 0.3, "norm_without_affine": 0.3,
              "keyword_dropout": 0.5},
    max_nodes=20,
)

MERGE_MATMUL = Focus(
    weights={"matmul": 2.0, "inplace": 1.0, "tanh": 0.5, "add": 0.5, "linear_fn": 0.3, "mm": 0.3},
    patterns={"matmul_group": 4.0, "keyword_matmul": 1.0, "matmul_update_between": 2.0},
    training=None,
    dtypes=("float32", "float64"),
    max_nodes=40,
)
