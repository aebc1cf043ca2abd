"""The base class of patterns, and helpers that add nodes of the general vocabulary's kinds
with chosen attributes: each helper returns the new value, or None when the shapes or
magnitudes do not allow it (the pattern then plans nothing and the planner rolls back)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from generators.vocab.base import FLOAT_LIMIT, MAX_ELEMENTS, OpKind, Planner, Value, Writer, numel


class Pattern(OpKind):
    """A planner-level template that plants a whole construct, drawn only by a focus (never
    by the general vocabulary). Most plan nodes of existing kinds and add none of their own;
    one that writes new code (a helper class, an annotation) adds nodes of its own kind and
    overrides :meth:`emit`."""

    category = "pattern"
    weight = 0.0
    cost = 6
    in_specs = False

    def emit(self, node: dict[str, Any], w: Writer) -> None:
        raise AssertionError(f"pattern {self.name} plans nodes of other kinds and never adds its own")


def lin_bound(fan_in: int, b: float, bias: bool = True) -> float:
    return math.sqrt(max(fan_in, 1)) * b + (1.0 if bias else 0.0)


def conv(p: Planner, x: Value, *, cout: int, k: int, pad: int = 0, stride: int = 1, bias: bool = True,
         reuse: dict[str, Any] | None = None) -> Value | None:
    """``self.convN(x)`` (a new ``nn.ConvNd``, or the module ``reuse`` names)."""
    nd = len(x.shape) - 2
    if nd not in (1, 2, 3):
        return None
    name = f"conv{nd}d"
    if reuse is not None:
        attrs = {"attr": reuse["attr"], "new": False, **reuse["sig"]}
    else:
        attrs = {"attr": p.fresh("conv"), "new": True, "cin": x.shape[1], "cout": cout, "k": k, "stride": stride,
                 "pad": pad, "groups": 1, "bias": bias}
        p.register_module(attrs["attr"], name, {key: attrs[key] for key in ("cin", "cout", "k", "stride", "pad", "groups", "bias")})
    if attrs["cin"] != x.shape[1]:
        return None
    out = [(s + 2 * attrs["pad"] - attrs["k"]) // attrs["stride"] + 1 for s in x.shape[2:]]
    if min(out) < 1:
        return None
    shape = (x.shape[0], attrs["cout"], *out)
    bound = lin_bound(attrs["cin"] * attrs["k"] ** nd, x.bound, attrs["bias"])
    if bound > FLOAT_LIMIT or numel(shape) > MAX_ELEMENTS:
        return None
    return p.add(name, [x], attrs, shape, x.dtype, bound)


def linear(p: Planner, x: Value, *, out: int, bias: bool = True, reuse: dict[str, Any] | None = None) -> Value | None:
    """``self.fc(x)`` (a new ``nn.Linear``, or the one ``reuse`` names)."""
    if reuse is not None:
        attrs = {"attr": reuse["attr"], "new": False, **reuse["sig"]}
    else:
        attrs = {"attr": p.fresh("fc"), "new": True, "in": x.shape[-1], "out": out, "bias": bias}
        p.register_module(attrs["attr"], "linear", {"in": attrs["in"], "out": out, "bias": bias})
    if not x.shape or attrs["in"] != x.shape[-1]:
        return None
    shape = (*x.shape[:-1], attrs["out"])
    bound = lin_bound(attrs["in"], x.bound, attrs["bias"])
    if bound > FLOAT_LIMIT or numel(shape) > MAX_ELEMENTS:
        return None
    return p.add("linear", [x], attrs, shape, x.dtype, bound)


def batch_norm(p: Planner, x: Value, *, affine: bool = True, track: bool = True, functional: bool = False,
               reuse: dict[str, Any] | None = None) -> Value | None:
    """``self.bn(x)`` (``nn.BatchNorm{1,2,3}d`` over dim 1) or ``F.batch_norm``."""
    if not 2 <= len(x.shape) <= 5:
        return None
    per_channel = numel(x.shape) // x.shape[1]
    if (p.training or not track) and per_channel <= 1:
        return None
    nd = max(1, len(x.shape) - 2)
    if reuse is not None:
        attrs = {"attr": reuse["attr"], "new": False, **reuse["sig"]}
        if attrs["c"] != x.shape[1] or attrs["nd"] != nd:
            return None
    else:
        attrs = {"attr": p.fresh("bn"), "new": True, "c": x.shape[1], "nd": nd, "track": track or functional, "affine": affine}
        if not functional:
            p.register_module(attrs["attr"], f"bn{nd}", {key: attrs[key] for key in ("c", "nd", "track", "affine")})
    bound = max(math.sqrt(per_channel), 1.5 * (x.bound + 1.0)) * 2.0 + 1.0
    if bound > FLOAT_LIMIT:
        return None
    return p.add("batch_norm_fn" if functional else "batch_norm", [x], attrs, x.shape, x.dtype, bound)


def unary(p: Planner, name: str, x: Value, style: int = 0, bound: float | None = None) -> Value:
    """A pointwise kind of :mod:`generators.vocab.pointwise` (``relu``, ``sigmoid``, ...)."""
    out = x.bound if bound is None else bound
    return p.add(name, [x], {"style": style}, x.shape, x.dtype, out, nonneg=name == "relu" and x.nonneg)


def binary(p: Planner, name: str, a: Value, b: Value | float, style: int = 0) -> Value | None:
    """``add``/``mul``/``sub`` of two values (broadcasting) or of a value and a number."""
    from generators.vocab.base import broadcast

    if isinstance(b, Value):
        shape = broadcast(a.shape, b.shape)
        if shape is None or numel(shape) > MAX_ELEMENTS:
            return None
        bound = a.bound * b.bound if name == "mul" else a.bound + 2 * b.bound
        ins, attrs = [a, b], {"style": style}
    else:
        shape = a.shape
        bound = a.bound * abs(b) if name == "mul" else a.bound + 2 * abs(b)
        ins, attrs = [a], {"style": style, "scalar": float(b)}
    if bound > FLOAT_LIMIT:
        return None
    return p.add(name, ins, attrs, shape, a.dtype, bound)


def value_of_rank(p: Planner, g: Any, rank: int, default: Sequence[int], limit: int = 512) -> Value:
    """An existing float value of ``rank`` dims (at most ``limit`` elements), else a new input."""
    return p.float_or_new(g, lambda v: len(v.shape) == rank and numel(v.shape) <= limit, default)
