"""The matmul family: matmul, mm, bmm, addmm, einsum, functional linear and outer."""

from __future__ import annotations

import math
from typing import Any

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
from generators.vocab.schema import MAX_RANK, Bool, Int


class Matmul(OpKind):
    """matmul / ``@`` / mm / bmm / addmm / einsum / F.linear / outer. The right operand is
    an existing value of the right shape when one exists and the gene says so, which is how
    matmuls come to share an operand; otherwise a new input or parameter."""

    category = "linalg"
    cost = 2

    def __init__(self, name: str, weight: float = 1.0, cost: int = 2) -> None:
        self.name = name
        self.weight = weight
        self.cost = cost

    def plan(self, p: Planner, g: Gene) -> Value | None:
        name = self.name
        if name in ("mm", "addmm", "einsum"):
            a = p.float_or_new(g, lambda v: len(v.shape) == 2, (g.int(1, MAX_DIM), g.int(1, MAX_DIM)))
        elif name == "bmm":
            a = p.float_or_new(g, lambda v: len(v.shape) == 3, (g.int(1, 3), g.int(1, MAX_DIM), g.int(1, MAX_DIM)))
        elif name == "outer":
            a = p.float_or_new(g, lambda v: len(v.shape) == 1, (g.int(1, MAX_DIM),))
        else:
            a = p.float_or_new(g, lambda v: len(v.shape) >= 1, (g.int(1, MAX_DIM), g.int(1, MAX_DIM)))
        k = a.shape[-1]
        if name == "bmm":
            right_shape_ok: Any = lambda v: len(v.shape) == 3 and v.shape[0] == a.shape[0] and v.shape[1] == k  # noqa: E731
            new_shape: tuple[int, ...] = (a.shape[0], k, g.int(1, MAX_DIM))
        elif name == "outer":
            right_shape_ok = lambda v: len(v.shape) == 1  # noqa: E731
            new_shape = (g.int(1, MAX_DIM),)
        else:
            right_shape_ok = lambda v: len(v.shape) == 2 and v.shape[0] == k  # noqa: E731
            new_shape = (k, g.int(1, MAX_DIM))
        mode = g.int(0, 2)
        b = p.float_value(g, lambda v: right_shape_ok(v) and v.name != a.name) if mode == 0 else None
        if b is None:
            b = p.new_input(new_shape) if mode == 1 else p.new_param(new_shape, scale=1.0 / math.sqrt(max(k, 1)))
        ins = [a, b]
        if name == "outer":
            shape: tuple[int, ...] = (a.shape[0], b.shape[0])
            bound = a.bound * b.bound
        else:
            shape = (*a.shape[:-1], b.shape[-1])
            bound = k * a.bound * b.bound
        attrs: dict[str, Any] = {"style": g.int(0, 2)}
        if name == "addmm":
            ins.append(p.new_param((b.shape[-1],)) if g.chance(70) else p.new_input((b.shape[-1],)))
            bound += 1.0
        if name == "linear_fn":
            attrs["bias"] = g.chance(60)
            if attrs["bias"]:
                ins.append(p.new_param((b.shape[-1],)))
                bound += 1.0
        if bound > FLOAT_LIMIT or numel(shape) > MAX_ELEMENTS:
            return None
        attrs["rank"] = len(a.shape)
        return p.add(name, ins, attrs, shape, a.dtype, bound, cost=self.cost)

    def emit(self, node: dict[str, Any], w: Writer) -> None:
        a = node["attrs"]
        x, y = node["in"][:2]
        style = a["style"]
        if self.name == "matmul":
            # styles 3 and 4 pass operands by keyword (planted by the merge_matmul focus)
            expr = (f"{x} @ {y}", f"torch.matmul({x}, {y})", f"{x}.matmul({y})", f"torch.matmul({x}, other={y})",
                    f"torch.matmul(input={x}, other={y})")[style]
        elif self.name == "mm":
            expr = (f"torch.mm({x}, {y})", f"{x}.mm({y})", f"torch.mm(input={x}, mat2={y})")[style]
        elif self.name == "bmm":
            expr = (f"torch.bmm({x}, {y})", f"{x}.bmm({y})", f"{x} @ {y}")[style]
        elif self.name == "addmm":
            bias = node["in"][2]
            expr = (f"torch.addmm({bias}, {x}, {y})", f"torch.addmm({bias}, {x}, {y}, beta=0.5, alpha=1.0)", f"{bias}.addmm({x}, {y})")[style]
        elif self.name == "einsum":
            expr = (f"torch.einsum('ij,jk->ik', {x}, {y})", f"torch.einsum('ij,jk', {x}, {y})", f"torch.einsum('ab,bc->ac', [{x}, {y}])")[style]
        elif self.name == "outer":
            expr = (f"torch.outer({x}, {y})", f"{x}.outer({y})", f"{x}[:, None] * {y}[None, :]")[style]
        else:
            weight = f"{y}.t()"
            bias = f", {node['in'][2]}" if a["bias"] else ""
            expr = (f"F.linear({x}, {weight}{bias})", f"F.linear(input={x}, weight={weight}{bias.replace(', ', ', bias=')})", f"F.linear({x}, {weight}{bias})")[style]
        w.assign(node, expr)

    def fields(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # matmul's styles 3 and 4 (keyword operands) are planted by the merge_matmul focus
        out: dict[str, Any] = {"style": Int(0, 4 if self.name == "matmul" else 2), "rank": Int(1, MAX_RANK)}
        if self.name == "linear_fn":
            out["bias"] = Bool()
        return out

    def arity(self, attrs: dict[str, Any]) -> tuple[int, int]:
        if self.name == "addmm":
            return (3, 3)
        if self.name == "linear_fn":
            n = 2 + int(attrs["bias"])
            return (n, n)
        return (2, 2)


MATMULS: tuple[Matmul, ...] = (
    Matmul("matmul", weight=3.0),
    Matmul("mm"),
    Matmul("bmm"),
    Matmul("addmm"),
    Matmul("einsum", weight=0.5),
    Matmul("linear_fn"),
    Matmul("outer", weight=0.5, cost=3),
)


KINDS: tuple[OpKind, ...] = MATMULS
