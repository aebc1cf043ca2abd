"""Structural kinds: reductions, views and reshapes, slicing, joins and splits (the matmul
family is in :mod:`generators.vocab.linalg`)."""

from __future__ import annotations

import math
from typing import Any

from generators.vocab.base import (
    FLOAT_LIMIT,
    INT_DTYPES,
    INT_LIMIT,
    MAX_ELEMENTS,
    Gene,
    OpKind,
    Planner,
    Value,
    Writer,
    numel,
)
from generators.vocab.schema import (
    MAX_RANK,
    MAX_SIZE,
    Bool,
    Int,
    IntList,
    Name,
    NameList,
    OneOf,
    dim,
    shape,
    style,
)


def _dims(shape: tuple[int, ...]) -> str:
    return ", ".join(str(d) for d in shape)


def _tuple_lit(shape: tuple[int, ...] | list[int]) -> str:
    items = [str(d) for d in shape]
    return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"


class Reduce(OpKind):
    """A reduction over one dimension (or all of them) with or without ``keepdim``."""

    category = "reduce"

    def __init__(self, name: str, styles: tuple[tuple[str, bool], ...], *, ints: bool, full: str | None = None, out: str = "same") -> None:
        # ``styles``: (template, whether it takes keepdim); ``full``: template reducing all
        # dimensions; ``out``: "same" dtype, or "int64" for index results.
        self.name = name
        self.styles = styles
        self.ints = ints
        self.full = full
        self.out = out

    def bound(self, b: float, n: int) -> float:
        table = {
            "sum": n * b,
            "prod": b**n if b <= 1.0 or n * math.log(b) < 40.0 else math.inf,
            "var": b * b,
            "logsumexp": b + math.log(max(n, 1)) + 1.0,
            "norm": math.sqrt(n) * b,
            "argmax": float(max(n - 1, 0)),
            "argmin": float(max(n - 1, 0)),
        }
        return table.get(self.name, b)

    def plan(self, p: Planner, g: Gene) -> Value | None:
        def ok(v: Value) -> bool:
            return (p.is_float(v) or (self.ints and v.dtype in INT_DTYPES)) and v.bound <= FLOAT_LIMIT

        x = p.choose(g, ok)
        if x is None:
            return None
        if self.full is not None and (not x.shape or g.chance(15)):
            out = self.bound(x.bound, numel(x.shape))
            if out > (INT_LIMIT if x.dtype in INT_DTYPES else FLOAT_LIMIT):
                return None
            dtype = "int64" if self.out == "int64" else x.dtype
            return p.add(self.name, [x], {"dim": None, "keepdim": False, "style": -1}, (), dtype, out, nonneg=self.out == "int64")
        if not x.shape:
            return None
        dim = g.int(0, len(x.shape) - 1)
        style = g.int(0, len(self.styles) - 1)
        keepdim = self.styles[style][1] and g.chance(40)
        n = x.shape[dim]
        out = self.bound(x.bound, n)
        limit = INT_LIMIT if x.dtype in INT_DTYPES or self.out == "int64" else FLOAT_LIMIT
        if out > limit:
            return None
        shape = list(x.shape)
        if keepdim:
            shape[dim] = 1
        else:
            del shape[dim]
        signed = dim - len(x.shape) if g.chance(30) else dim
        dtype = "int64" if self.out == "int64" else x.dtype
        return p.add(self.name, [x], {"dim": signed, "keepdim": keepdim, "style": style}, shape, dtype, out, nonneg=self.out == "int64")

    def emit(self, node: dict[str, Any], w: Writer) -> None:
        a = node["attrs"]
        if a["dim"] is None:
            assert self.full is not None
            w.assign(node, self.full.format(x=node["in"][0]))
        else:
            w.assign(node, self.styles[a["style"]][0].format(x=node["in"][0], d=a["dim"], k=a["keepdim"]))

    def fields(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if isinstance(attrs, dict) and attrs.get("dim") is None and self.full is not None:
            return {"dim": Int(0, 0, none=True), "keepdim": OneOf((False,)), "style": Int(-1, -1)}
        return {"dim": dim(), "keepdim": Bool(), "style": style(self.styles)}


REDUCTIONS: tuple[Reduce, ...] = (
    Reduce("sum", (("torch.sum({x}, dim={d}, keepdim={k})", True), ("{x}.sum({d})", False), ("{x}.sum(dim={d}, keepdim={k})", True)), ints=True, full="{x}.sum()"),
    Reduce("mean", (("torch.mean({x}, dim={d}, keepdim={k})", True), ("{x}.mean({d})", False)), ints=False, full="torch.mean({x})"),
    Reduce("amax", (("torch.amax({x}, dim={d}, keepdim={k})", True), ("{x}.amax({d})", False)), ints=True, full="{x}.max()"),
    Reduce("amin", (("torch.amin({x}, dim={d}, keepdim={k})", True),), ints=True, full="torch.min({x})"),
    Reduce("prod", (("torch.prod({x}, dim={d}, keepdim={k})", True), ("{x}.prod({d})", False)), ints=False),
    Reduce("var", (("torch.var({x}, dim={d}, correction=0, keepdim={k})", True), ("{x}.var({d}, unbiased=False)", False)), ints=False),
    Reduce("std", (("torch.std({x}, dim={d}, correction=0, keepdim={k})", True), ("{x}.std({d}, unbiased=False)", False)), ints=False),
    Reduce("logsumexp", (("torch.logsumexp({x}, dim={d}, keepdim={k})", True), ("{x}.logsumexp({d})", False)), ints=False),
    Reduce("norm", (("torch.linalg.vector_norm({x}, dim={d}, keepdim={k})", True), ("{x}.norm(dim={d})", False)), ints=False),
    Reduce("argmax", (("torch.argmax({x}, dim={d}, keepdim={k})", True), ("{x}.argmax({d})", False)), ints=True, full="torch.argmax({x})", out="int64"),
    Reduce("argmin", (("torch.argmin({x}, dim={d}, keepdim={k})", True),), ints=True, out="int64"),
)


class Along(OpKind):
    """Shape-preserving ops along one dimension: softmax, log_softmax, cumsum, flip, roll."""

    category = "reduce"

    def __init__(self, name: str, styles: tuple[str, ...], *, ints: bool = False) -> None:
        self.name = name
        self.styles = styles
        self.ints = ints

    def plan(self, p: Planner, g: Gene) -> Value | None:
        x = p.choose(g, lambda v: (p.is_float(v) or (self.ints and v.dtype in INT_DTYPES)) and v.bound <= FLOAT_LIMIT and bool(v.shape))
        if x is None:
            return None
        dim = g.int(0, len(x.shape) - 1)
        n = x.shape[dim]
        bound = {"softmax": 1.0, "log_softmax": 2 * x.bound + math.log(n) + 1.0, "cumsum": n * x.bound}.get(self.name, x.bound)
        if bound > (INT_LIMIT if x.dtype in INT_DTYPES else FLOAT_LIMIT):
            return None
        attrs = {"dim": dim - len(x.shape) if g.chance(50) else dim, "style": g.int(0, len(self.styles) - 1), "shift": g.int(1, 3)}
        return p.add(self.name, [x], attrs, x.shape, x.dtype, bound)

    def emit(self, node: dict[str, Any], w: Writer) -> None:
        a = node["attrs"]
        w.assign(node, self.styles[a["style"]].format(x=node["in"][0], d=a["dim"], s=a["shift"]))

    def fields(self, attrs: dict[str, Any]) -> dict[str, Any]:
        return {"dim": dim(), "style": style(self.styles), "shift": Int(-MAX_SIZE, MAX_SIZE)}


ALONG: tuple[Along, ...] = (
    Along("softmax", ("F.softmax({x}, dim={d})", "{x}.softmax({d})", "torch.softmax({x}, {d})")),
    Along("log_softmax", ("F.log_softmax({x}, dim={d})", "torch.log_softmax({x}, {d})")),
    Along("cumsum", ("torch.cumsum({x}, dim={d})", "{x}.cumsum({d})"), ints=True),
    Along("flip", ("torch.flip({x}, dims=[{d}])", "{x}.flip({d})"), ints=True),
    Along("roll", ("torch.roll({x}, shifts={s}, dims={d})", "{x}.roll({s}, {d})"), ints=True),
)


def _tensor_any(p: Planner, g: Gene, pred: Any = None) -> Value | None:
    """Any float or integer value (views do not care about the dtype)."""
    return p.choose(g, lambda v: v.dtype != "bool" and (pred is None or pred(v)))


def _factor(n: int, rank: int, g: Gene) -> tuple[int, ...]:
    """A shape of ``rank`` dimensions whose product is ``n``, drawn from the gene."""
    primes = []
    m, f = n, 2
    while m > 1:
        while m % f == 0:
            primes.append(f)
            m //= f
        f += 1
    dims = [1] * rank
    for q in primes:
        dims[g.int(0, rank - 1)] *= q
    return tuple(dims)


class Reshape(OpKind):
    """reshape / view / flatten to a shape with the same number of elements, including
    ``-1`` and sizes read from the tensor at run time (``x.size(0)``)."""

    name = "reshape"
    category = "view"
    styles = ("{x}.reshape({s})", "torch.reshape({x}, {t})", "{x}.view({s})", "{x}.view(-1)", "{x}.reshape({x}.size(0), -1)", "{x}.flatten({a})", "torch.flatten({x})")

    def plan(self, p: Planner, g: Gene) -> Value | None:
        x = _tensor_any(p, g)
        if x is None:
            return None
        style = g.int(0, len(self.styles) - 1)
        if style in (2, 3) and not x.contiguous:
            style = 0  # .view needs contiguous memory
        n = numel(x.shape)
        start = 0
        if style in (3, 6):
            shape: tuple[int, ...] = (n,)
        elif style in (4, 5) and x.shape:
            if style == 4:
                shape = (x.shape[0], n // x.shape[0])
            else:
                start = g.int(0, len(x.shape) - 1)
                shape = (*x.shape[:start], math.prod(x.shape[start:]))
        else:
            style = 0 if style in (4, 5) else style
            shape = _factor(n, g.int(1, 4), g)
        attrs = {"style": style, "shape": list(shape), "start": start}
        # reshape copies non-contiguous memory only when it cannot view it: an expanded value
        # reshaped to a compatible shape still views the overlapping memory, so the result is
        # taken to share the operand's storage whatever the layout
        return p.add(self.name, [x], attrs, shape, x.dtype, x.bound, view_of=x, contiguous=x.contiguous, nonneg=x.nonneg, cost=4 if style == 4 else 1)

    def emit(self, node: dict[str, Any], w: Writer) -> None:
        a = node["attrs"]
        shape = tuple(a["shape"])
        w.assign(node, self.styles[a["style"]].format(x=node["in"][0], s=_dims(shape) or "()", t=_tuple_lit(shape), a=a["start"]))

    def fields(self, attrs: dict[str, Any]) -> dict[str, Any]:
        return {"style": style(self.styles), "shape": shape(), "start": Int(0, MAX_RANK)}


class Permute(OpKind):
    """permute / transpose / ``.t()`` / ``.mT``: non-contiguous views."""

    name = "permute"
    category = "view"
    styles = ("{x}.permute({p})", "torch.permute({x}, {t})", "{x}.transpose({i}, {j})", "torch.transpose({x}, {i}, {j})", "{x}.mT", "{x}.t()")

    def plan(self, p: Planner, g: Gene) -> Value | None:
        x = _tensor_any(p, g, lambda v: len(v.shape) >= 2)
        if x is None:
            return None
        rank = len(x.shape)
        style = g.int(0, len(self.styles) - 1)
        if style == 5 and rank != 2:
            style = 4
        perm = list(range(rank))
        if style <= 1:
            for i in range(rank - 1, 0, -1):
                j = g.int(0, i)
                perm[i], perm[j] = perm[j], perm[i]
            i = j = 0
        else:
            i, j = (g.int(0, rank - 1), g.int(0, rank - 1)) if style <= 3 else (rank - 2, rank - 1)
            perm[i], perm[j] = perm[j], perm[i]
        shape = tuple(x.shape[k] for k in perm)
        attrs = {"style": style, "perm": perm, "i": i, "j": j}
        return p.add(self.name, [x], attrs, shape, x.dtype, x.bound, view_of=x, contiguous=x.contiguous and perm == sorted(perm), nonneg=x.nonneg)

    def emit(self, node: dict[str, Any], w: Writer) -> None:
        a = node["attrs"]
        w.assign(node, self.styles[a["style"]].format(x=node["in"][0], p=_dims(a["perm"]), t=_tuple_lit(a["perm"]), i=a["i"], j=a["j"]))

    def fields(self, attrs: dict[str, Any]) -> dict[str, Any]:
        return {"style": style(self.styles), "perm": IntList(0, MAX_RANK - 1), "i": Int(0, MAX_RANK - 1), "j": Int(0, MAX_RANK - 1)}


class Unsqueeze(OpKind):
    """unsqueeze / squeeze / ``x[None]`` / expand: dimensions of size one."""

    name = "unsqueeze"
    category = "view"

    def plan(self, p: Planner, g: Gene) -> Value | None:
        x = _tensor_any(p, g, lambda v: len(v.shape) <= 4)
        if x is None:
            return None
        ones = [d for d, n in enumerate(x.shape) if n == 1]
        choice = g.int(0, 3)
        if choice == 1 and ones:  # squeeze a size-one dimension
            d = ones[g.int(0, len(ones) - 1)]
            shape = x.shape[:d] + x.shape[d + 1 :]
            return p.add("unsqueeze", [x], {"mode": "squeeze", "dim": d, "style": g.int(0, 1)}, shape, x.dtype, x.bound, view_of=x, contiguous=x.contiguous, nonneg=x.nonneg)
        if choice == 2 and ones:  # expand size-one dimensions (overlapping memory)
            shape = tuple(g.int(1, 4) if n == 1 else n for n in x.shape)
            if numel(shape) > MAX_ELEMENTS:
                return None
            value = p.add("unsqueeze", [x], {"mode": "expand", "shape": list(shape), "style": g.int(0, 1)}, shape, x.dtype, x.bound, contiguous=False, nonneg=x.nonneg)
            value.storage = None
            return value
        d = g.int(0, len(x.shape))
        shape = x.shape[:d] + (1,) + x.shape[d:]
        style = g.int(0, 2)
        return p.add("unsqueeze", [x], {"mode": "unsqueeze", "dim": d, "style": style}, shape, x.dtype, x.bound, view_of=x, contiguous=x.contiguous, nonneg=x.nonneg)

    def emit(self, node: dict[str, Any], w: Writer) -> None:
        a, x = node["attrs"], node["in"][0]
        if a["mode"] == "squeeze":
            w.assign(node, (f"{x}.squeeze({a['dim']})", f"torch.squeeze({x}, {a['dim']})")[a["style"]])
        elif a["mode"] == "expand":
            shape = tuple(a["shape"])
            w.assign(node, (f"{x}.expand({_dims(shape)})", f"{x}.expand({_tuple_lit(shape)})")[a["style"]])
        else:
            d = a["dim"]
            index = ", ".join([":"] * d + ["None"])
            w.assign(node, (f"{x}.unsqueeze({d})", f"torch.unsqueeze({x}, {d})", f"{x}[{index}]")[a["style"]])

    def fields(self, attrs: dict[str, Any]) -> dict[str, Any]:
        mode = attrs.get("mode") if isinstance(attrs, dict) else None
        if mode == "expand":
            return {"mode": OneOf(("expand",)), "shape": shape(), "style": Int(0, 1)}
        if mode == "squeeze":
            return {"mode": OneOf(("squeeze",)), "dim": Int(0, MAX_RANK), "style": Int(0, 1)}
        return {"mode": OneOf(("unsqueeze", "squeeze", "expand")), "dim": Int(0, MAX_RANK), "style": Int(0, 2)}


class Slice(OpKind):
    """Basic indexing and narrowing: ``x[:, 1:3]``, ``x[..., 0]``, ``x.narrow(d, s, n)``."""

    name = "slice"
    category = "view"

    def plan(self, p: Planner, g: Gene) -> Value | None:
        x = _tensor_any(p, g, lambda v: bool(v.shape))
        if x is None:
            return None
        d = g.int(0, len(x.shape) - 1)
        n = x.shape[d]
        style = g.int(0, 2)
        if style == 1 and n >= 1:  # integer index drops the dimension
            i = g.int(0, n - 1)
            shape = x.shape[:d] + x.shape[d + 1 :]
            attrs: dict[str, Any] = {"style": style, "dim": d, "index": i, "rank": len(x.shape)}
        else:
            start = g.int(0, max(n - 1, 0))
            length = g.int(1, max(n - start, 1)) if n else 0
            shape = x.shape[:d] + (length,) + x.shape[d + 1 :]
            attrs = {"style": style, "dim": d, "start": start, "length": length, "rank": len(x.shape)}
        return p.add(self.name, [x], attrs, shape, x.dtype, x.bound, view_of=x, contiguous=x.contiguous and d == 0, nonneg=x.nonneg)

    def emit(self, node: dict[str, Any], w: Writer) -> None:
        a, x = node["attrs"], node["in"][0]
        d = a["dim"]
        if a["style"] == 1:
            last = d == a["rank"] - 1 and d > 0
            index = "..., " + str(a["index"]) if last else ", ".join([":"] * d + [str(a["index"])])
            w.assign(node, f"{x}[{index}]")
        elif a["style"] == 2:
            w.assign(node, f"{x}.narrow({d}, {a['start']}, {a['length']})")
        else:
            index = ", ".join([":"] * d + [f"{a['start']}:{a['start'] + a['length']}"])
            w.assign(node, f"{x}[{index}]")

    def fields(self, attrs: dict[str, Any]) -> dict[str, Any]:
        common = {"style": Int(0, 2), "dim": Int(0, MAX_RANK - 1), "rank": Int(1, MAX_RANK)}
        if isinstance(attrs, dict) and attrs.get("style") == 1:
            return {**common, "index": Int(0, MAX_SIZE)}
        return {**common, "start": Int(0, MAX_SIZE), "length": Int(0, MAX_SIZE)}


class Cat(OpKind):
    """``torch.cat`` / ``torch.stack`` of values with matching shapes (a value may appear
    twice)."""

    name = "cat"
    category = "join"

    def plan(self, p: Planner, g: Gene) -> Value | None:
        x = _tensor_any(p, g)
        if x is None:
            return None
        stack = g.chance(35) or not x.shape
        rank = len(x.shape)
        d = g.int(0, rank if stack else rank - 1)

        def fits(v: Value) -> bool:
            if v.dtype != x.dtype or len(v.shape) != rank:
                return False
            return all(a == b or (i == d and not stack) for i, (a, b) in enumerate(zip(v.shape, x.shape)))

        parts = [x]
        for _ in range(g.int(1, 2)):
            parts.append(p.choose(g, fits) or x)
        if stack:
            shape = x.shape[:d] + (len(parts),) + x.shape[d:]
        else:
            shape = x.shape[:d] + (sum(v.shape[d] for v in parts),) + x.shape[d + 1 :]
        if numel(shape) > MAX_ELEMENTS:
            return None
        attrs = {"stack": stack, "dim": d, "style": g.int(0, 1)}
        return p.add(self.name, parts, attrs, shape, x.dtype, max(v.bound for v in parts), nonneg=all(v.nonneg for v in parts))

    def emit(self, node: dict[str, Any], w: Writer) -> None:
        a = node["attrs"]
        fn = "torch.stack" if a["stack"] else ("torch.cat", "torch.concat")[a["style"]]
        items = ", ".join(node["in"])
        if a["style"] == 0:
            w.assign(node, f"{fn}([{items}], dim={a['dim']})")
        else:
            w.assign(node, f"{fn}(({items},), {a['dim']})")

    def fields(self, attrs: dict[str, Any]) -> dict[str, Any]:
        return {"stack": Bool(), "dim": dim(), "style": Int(0, 1)}

    def arity(self, attrs: dict[str, Any]) -> tuple[int, int]:
        return (2, 3)


class Split(OpKind):
    """split / chunk / unbind / max-with-indices / sort / topk: ops returning tuples. The
    pieces are read with ``[i]`` or unpacked by assignment."""

    name = "split"
    category = "tuples"
    cost = 4

    def plan(self, p: Planner, g: Gene) -> Value | None:
        x = _tensor_any(p, g, lambda v: any(n >= 2 for n in v.shape) and v.bound <= FLOAT_LIMIT)
        if x is None:
            return None
        dims = [d for d, n in enumerate(x.shape) if n >= 2]
        d = dims[g.int(0, len(dims) - 1)]
        n = x.shape[d]
        mode = g.pick(("split", "chunk", "unbind", "max", "sort", "topk", "split_sizes"))
        attrs: dict[str, Any] = {"mode": mode, "dim": d, "style": g.int(0, 1), "unpack": g.chance(40)}
        dtypes = [x.dtype]
        if mode in ("split", "chunk"):
            step = g.int(1, n - 1) if mode == "split" else -(-n // g.int(2, n))
            sizes = [min(step, n - s) for s in range(0, n, step)]
            attrs["arg"] = step if mode == "split" else len(sizes)
        elif mode == "split_sizes":
            first = g.int(1, n - 1)
            sizes = [first, n - first]
        elif mode == "unbind":
            if n > 4:
                return None
            sizes = [0] * n
        elif mode in ("max", "sort"):
            if x.dtype not in (p.dtype, *INT_DTYPES):
                return None
            sizes = [0 if mode == "max" else n] * 2
            dtypes = [x.dtype, "int64"]
        else:
            if x.dtype != p.dtype:
                return None
            k = g.int(1, n)
            attrs["arg"] = k
            sizes = [k, k]
            dtypes = [x.dtype, "int64"]
        pieces = []
        for i, size in enumerate(sizes):
            shape = list(x.shape)
            if size:
                shape[d] = size
            else:
                del shape[d]
            dtype = dtypes[min(i, len(dtypes) - 1)]
            bound = x.bound if dtype == x.dtype else float(n - 1)
            pieces.append((tuple(shape), dtype, bound))
        attrs["sizes"] = sizes
        whole = p.add(self.name, [x], attrs, (), "tuple", x.bound, arity=len(pieces), usable=not attrs["unpack"])
        names = []
        for i, (shape, dtype, bound) in enumerate(pieces):
            piece = p.add(
                "getitem",
                [whole],
                {"index": i, "unpacked": attrs["unpack"]},
                shape,
                dtype,
                bound,
                nonneg=dtype == "int64" and dtype != x.dtype,
                contiguous=x.contiguous and d == 0,
            )
            piece.storage = None  # multi-output views must not be written in place
            if mode in ("split", "chunk", "unbind", "split_sizes"):
                piece.views = x.storage or x.views  # ... nor be the operand of a write into x
            names.append(piece.name)
        attrs["names"] = names
        return whole

    def emit(self, node: dict[str, Any], w: Writer) -> None:
        a, x = node["attrs"], node["in"][0]
        d, mode, style = a["dim"], a["mode"], a["style"]
        if mode == "split":
            expr = (f"torch.split({x}, {a['arg']}, dim={d})", f"{x}.split({a['arg']}, {d})")[style]
        elif mode == "split_sizes":
            expr = (f"torch.split({x}, {a['sizes']}, dim={d})", f"{x}.split({a['sizes']}, dim={d})")[style]
        elif mode == "chunk":
            expr = (f"torch.chunk({x}, {a['arg']}, dim={d})", f"{x}.chunk({a['arg']}, {d})")[style]
        elif mode == "unbind":
            expr = (f"torch.unbind({x}, dim={d})", f"{x}.unbind({d})")[style]
        elif mode == "max":
            expr = (f"torch.max({x}, dim={d})", f"{x}.max({d})")[style]
        elif mode == "sort":
            expr = (f"torch.sort({x}, dim={d}, descending=True)", f"{x}.sort({d})")[style]
        else:
            expr = (f"torch.topk({x}, {a['arg']}, dim={d})", f"{x}.topk({a['arg']}, {d})")[style]
        if a["unpack"]:
            w.line(f"{', '.join(a['names'])}{',' if len(a['names']) == 1 else ''} = {expr}")
        else:
            w.assign(node, expr)

    MODES = ("split", "chunk", "unbind", "max", "sort", "topk", "split_sizes")

    def fields(self, attrs: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mode": OneOf(self.MODES),
            "dim": Int(0, MAX_RANK - 1),
            "style": Int(0, 1),
            "unpack": Bool(),
            "sizes": IntList(0, MAX_SIZE, min_len=1, max_len=MAX_SIZE),
            "names": NameList(Name("v")),
        }
        if isinstance(attrs, dict) and attrs.get("mode") in ("split", "chunk", "topk"):
            out["arg"] = Int(1, MAX_SIZE)
        return out


class GetItem(OpKind):
    """The pieces of a tuple-valued node (planned by :class:`Split`, never drawn alone)."""

    name = "getitem"
    category = "tuples"
    weight = 0.0

    def plan(self, p: Planner, g: Gene) -> Value | None:
        return None

    def emit(self, node: dict[str, Any], w: Writer) -> None:
        if not node["attrs"]["unpacked"]:
            w.assign(node, f"{node['in'][0]}[{node['attrs']['index']}]")

    def fields(self, attrs: dict[str, Any]) -> dict[str, Any]:
        return {"index": Int(0, MAX_SIZE), "unpacked": Bool()}


KINDS: tuple[OpKind, ...] = (*REDUCTIONS, *ALONG, Reshape(), Permute(), Unsqueeze(), Slice(), Cat(), Split(), GetItem())
