"""Patterns and focus of ``annotate_getitem_nodes``: getitem nodes on values typed with
``torch.fx.annotate`` (``torch/fx/passes/annotate_getitem_nodes.py`` branches on the type:
typing.Tuple/List bare or parameterized, builtin generics, variadic tuples, NamedTuple
classes, other annotated classes; and on the index: an integer or a slice)."""

from __future__ import annotations

from typing import Any

from generators.focus._plant import Pattern
from generators.focus.focus import Focus
from generators.vocab.base import Gene, OpKind, Planner, Value, Writer
from generators.vocab.schema import MAX_RANK, Int

#: Type expressions by index; ``{n}`` pieces of ``{t}`` (torch.Tensor).
TYPES = (
    "typing.Tuple",
    "typing.List",
    "typing.Tuple[torch.Tensor, ...]",
    "tuple[{ts}]",
    "typing.Tuple[{ts}]",
    "typing.List[torch.Tensor]",
    "list[torch.Tensor]",
    "Fields{n}",
    "Boxed",
)

_BOXED = '''
class Boxed:
    """An annotated class that is not a NamedTuple."""

    first: torch.Tensor
'''


def _fields(n: int) -> str:
    body = "".join(f"    f{i}: torch.Tensor\n" for i in range(n))
    return f"\nclass Fields{n}(typing.NamedTuple):\n{body}"


class TypedGetItem(Pattern):
    """``seq = annotate(torch.unbind(x, d), T)`` (``torch.fx.annotate``) then ``seq[i]`` or ``seq[s:][0]``."""

    name = "typed_getitem"
    in_specs = True  # its nodes are its own
    cost = 4

    def plan(self, p: Planner, g: Gene) -> Value | None:
        x = p.choose(g, lambda v: any(2 <= n <= 4 for n in v.shape))
        if x is None:
            x = p.new_input((g.int(2, 4), g.int(1, 4)))
        dims = [d for d, n in enumerate(x.shape) if 2 <= n <= 4]
        d = dims[g.int(0, len(dims) - 1)]
        n = x.shape[d]
        kind = g.int(0, len(TYPES) - 1)
        start = g.int(0, n - 1) if g.chance(40) else None  # a slice first, then index 0
        index = 0 if start is not None else g.int(0, n - 1)
        shape = x.shape[:d] + x.shape[d + 1 :]
        attrs = {"dim": d, "n": n, "type": kind, "start": start, "index": index}
        value = p.add(self.name, [x], attrs, shape, x.dtype, x.bound, nonneg=x.nonneg)
        value.storage = None  # a view of x shared with the other pieces
        return value

    def emit(self, node: dict[str, Any], w: Writer) -> None:
        a, x, v = node["attrs"], node["in"][0], node["id"]
        w.helper("typing", "import typing\nfrom torch.fx.annotate import annotate as fx_annotate\n")
        n = a["n"]
        kind = TYPES[a["type"]]
        if kind.startswith("Fields"):
            w.helper(f"Fields{n}", _fields(n))
        if kind == "Boxed":
            w.helper("Boxed", _BOXED)
        typ = kind.format(n=n, ts=", ".join(["torch.Tensor"] * n))
        w.line(f"{v}_seq = fx_annotate(torch.unbind({x}, {a['dim']}), {typ})")
        if a["start"] is not None:
            w.assign(node, f"{v}_seq[{a['start']}:][0]")
        else:
            w.assign(node, f"{v}_seq[{a['index']}]")

    def fields(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # n pieces (2 to 4, as planned) of dim ``dim``; the index and slice start within them
        return {"dim": Int(0, MAX_RANK - 1), "n": Int(2, 4), "type": Int(0, len(TYPES) - 1),
                "start": Int(0, 3, none=True), "index": Int(0, 3)}


KINDS: tuple[OpKind, ...] = (TypedGetItem(),)

ANNOTATE_GETITEM = Focus(
    weights={"split": 1.0, "relu": 0.5, "add": 0.5, "cat": 0.3},
    patterns={"typed_getitem": 5.0},
    training=None,
)
