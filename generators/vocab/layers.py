"""``nn`` layers: Linear, Conv1d/2d/3d, BatchNorm (module and functional), pooling,
LayerNorm and GroupNorm, Embedding and EmbeddingBag, Dropout, activation modules, and
nested blocks (modules whose children have children). A layer may be called a second time
instead of creating a new one, which is how a submodule comes to be called twice."""

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
from generators.vocab.schema import MAX_SIZE, Bool, Int, IntList, Name, OneOf, shape, size

#: Embedding weights are N(0, 1); no draw of a few hundred exceeds this in practice.
EMBED_BOUND = 6.0


def _linear_bound(fan_in: int, b: float, bias: bool = True) -> float:
    # default init is uniform(+-1/sqrt(fan_in)) for weight and bias alike
    return math.sqrt(fan_in) * b + (1.0 if bias else 0.0)


class Linear(OpKind):
    """``self.fc(x)`` with ``nn.Linear`` over the last dimension."""

    name = "linear"
    category = "layers"
    weight = 2.0

    def plan(self, p: Planner, g: Gene) -> Value | None:
        x = p.float_or_new(g, lambda v: len(v.shape) >= 1, (g.int(1, 4), g.int(1, MAX_DIM)))
        k = x.shape[-1]
        reuse = p.find_module(g, "linear", {"in": k}, match=("in",))
        if reuse is not None:
            sig = reuse["sig"]
            attrs = {"attr": reuse["attr"], "new": False, **sig}
        else:
            attrs = {"attr": p.fresh("fc"), "new": True, "in": k, "out": g.int(1, MAX_DIM), "bias": not g.chance(25)}
            p.register_module(attrs["attr"], "linear", {"in": k, "out": attrs["out"], "bias": attrs["bias"]})
        shape = (*x.shape[:-1], attrs["out"])
        bound = _linear_bound(k, x.bound, attrs["bias"])
        if bound > FLOAT_LIMIT or numel(shape) > MAX_ELEMENTS:
            return None
        return p.add(self.name, [x], attrs, shape, x.dtype, bound)

    def emit(self, node: dict[str, Any], w: Writer) -> None:
        a = node["attrs"]
        if a["new"]:
            w.member(f"self.{a['attr']} = nn.Linear({a['in']}, {a['out']}, bias={a['bias']})")
        w.assign(node, f"self.{a['attr']}({node['in'][0]})")

    def fields(self, attrs: dict[str, Any]) -> dict[str, Any]:
        return {"attr": Name("fc"), "new": Bool(), "in": size(), "out": size(), "bias": Bool()}

    def state(self, node: dict[str, Any]) -> int:
        a = node["attrs"]
        return (a["in"] + 1) * a["out"] if a["new"] else 0


def _conv_out(size: int, k: int, stride: int, pad: int, dil: int = 1) -> int:
    return (size + 2 * pad - dil * (k - 1) - 1) // stride + 1


class Conv(OpKind):
    """``nn.Conv{n}d`` (or ``F.conv{n}d`` with explicit weights) on a batched input."""

    category = "layers"
    cost = 1

    def __init__(self, nd: int, functional: bool = False) -> None:
        self.nd = nd
        self.functional = functional
        self.name = f"conv{nd}d" + ("_fn" if functional else "")
        self.weight = 0.5 if functional else 1.0

    def plan(self, p: Planner, g: Gene) -> Value | None:
        rank = self.nd + 2
        hi = 6 if self.nd < 3 else 4
        new_shape = (g.int(1, 2), g.int(1, 4), *[g.int(2, hi) for _ in range(self.nd)])
        x = p.float_or_new(g, lambda v: len(v.shape) == rank and numel(v.shape) <= 1024, new_shape)
        cin = x.shape[1]
        spatial = x.shape[2:]
        reuse = None if self.functional else p.find_module(g, self.name, {"cin": cin}, match=("cin",))
        if reuse is not None:
            attrs = {"attr": reuse["attr"], "new": False, **reuse["sig"]}
        else:
            pad = g.int(0, 1)
            kmax = min(3, min(spatial) + 2 * pad)
            k = g.int(1, kmax)
            stride = g.int(1, 2)
            groups = cin if cin > 1 and g.chance(20) else 1
            cout = groups * g.int(1, 3) if groups > 1 else g.int(1, MAX_DIM)
            attrs = {"attr": p.fresh("conv"), "new": True, "cin": cin, "cout": cout, "k": k, "stride": stride, "pad": pad, "groups": groups, "bias": not g.chance(25)}
            if not self.functional:
                p.register_module(attrs["attr"], self.name, {key: attrs[key] for key in ("cin", "cout", "k", "stride", "pad", "groups", "bias")})
        out_sp = [_conv_out(s, attrs["k"], attrs["stride"], attrs["pad"]) for s in spatial]
        if min(out_sp) < 1:
            return None
        shape = (x.shape[0], attrs["cout"], *out_sp)
        fan_in = cin // attrs["groups"] * attrs["k"] ** self.nd
        bound = _linear_bound(fan_in, x.bound, attrs["bias"])
        if bound > FLOAT_LIMIT or numel(shape) > MAX_ELEMENTS:
            return None
        ins = [x]
        if self.functional:
            scale = 1.0 / math.sqrt(fan_in)
            ins.append(p.new_param((attrs["cout"], cin // attrs["groups"], *[attrs["k"]] * self.nd), scale))
            if attrs["bias"]:
                ins.append(p.new_param((attrs["cout"],), scale))
        return p.add(self.name, ins, attrs, shape, x.dtype, bound)

    def emit(self, node: dict[str, Any], w: Writer) -> None:
        a = node["attrs"]
        opts = f"stride={a['stride']}, padding={a['pad']}, groups={a['groups']}"
        if self.functional:
            bias = node["in"][2] if a["bias"] else "None"
            w.assign(node, f"F.conv{self.nd}d({node['in'][0]}, {node['in'][1]}, {bias}, {opts})")
            return
        if a["new"]:
            w.member(f"self.{a['attr']} = nn.Conv{self.nd}d({a['cin']}, {a['cout']}, {a['k']}, {opts}, bias={a['bias']})")
        w.assign(node, f"self.{a['attr']}({node['in'][0]})")

    def fields(self, attrs: dict[str, Any]) -> dict[str, Any]:
        return {"attr": Name("conv"), "new": Bool(), "cin": size(), "cout": size(), "k": Int(1, 16),
                "stride": Int(1, 16), "pad": Int(0, 16), "groups": size(), "bias": Bool()}

    def arity(self, attrs: dict[str, Any]) -> tuple[int, int]:
        n = 2 + int(attrs["bias"]) if self.functional else 1
        return (n, n)

    def state(self, node: dict[str, Any]) -> int:
        a = node["attrs"]
        if not a["new"] or self.functional:
            return 0
        return a["cout"] * (max(1, a["cin"] // a["groups"]) * a["k"] ** self.nd + 1)


def _per_channel(shape: tuple[int, ...]) -> int:
    return numel(shape) // shape[1]


class BatchNorm(OpKind):
    """``nn.BatchNorm{1,2,3}d`` or ``F.batch_norm`` with registered running statistics.
    Batch statistics need more than one value per channel, so such inputs are required
    whenever the batch statistics are used."""

    category = "normalization"

    def __init__(self, functional: bool) -> None:
        self.functional = functional
        self.name = "batch_norm_fn" if functional else "batch_norm"
        self.weight = 0.5 if functional else 1.0
        self.cost = 5 if functional else 1  # four get_attr nodes for the functional form

    def plan(self, p: Planner, g: Gene) -> Value | None:
        track = self.functional or not g.chance(20)
        needs_batch = p.training or not track

        def ok(v: Value) -> bool:
            return 2 <= len(v.shape) <= 5 and (not needs_batch or _per_channel(v.shape) > 1)

        x = p.float_or_new(g, ok, (2, g.int(1, 4), g.int(1, 4)))
        c = x.shape[1]
        nd = max(1, len(x.shape) - 2)
        reuse = None if self.functional else p.find_module(g, f"bn{nd}", {"c": c, "track": track}, match=("c", "track"))
        if reuse is not None:
            attrs = {"attr": reuse["attr"], "new": False, **reuse["sig"]}
        else:
            attrs = {"attr": p.fresh("bn"), "new": True, "c": c, "nd": nd, "track": track, "affine": not g.chance(20)}
            if not self.functional:
                p.register_module(attrs["attr"], f"bn{nd}", {key: attrs[key] for key in ("c", "nd", "track", "affine")})
        n = _per_channel(x.shape)
        # batch statistics normalise to at most sqrt(n); running statistics (var in [0.5, 1.5],
        # mean in [0, 1]) can scale a value by up to sqrt(2)
        bound = max(math.sqrt(n), 1.5 * (x.bound + 1.0)) * 2.0 + 1.0
        if bound > FLOAT_LIMIT:
            return None
        return p.add(self.name, [x], attrs, x.shape, x.dtype, bound)

    def emit(self, node: dict[str, Any], w: Writer) -> None:
        a = node["attrs"]
        x = node["in"][0]
        if self.functional:
            attr, c = a["attr"], a["c"]
            w.member(f"self.register_buffer('{attr}_mean', torch.rand({c}))")
            w.member(f"self.register_buffer('{attr}_var', torch.rand({c}) + 0.5)")
            if a["affine"]:
                w.member(f"self.{attr}_weight = nn.Parameter(torch.rand({c}) + 0.5)")
                w.member(f"self.{attr}_bias = nn.Parameter(torch.rand({c}) - 0.5)")
                affine = f", weight=self.{attr}_weight, bias=self.{attr}_bias"
            else:
                affine = ""
            w.assign(node, f"F.batch_norm({x}, self.{attr}_mean, self.{attr}_var{affine}, training=self.training, momentum=0.1, eps=1e-05)")
            return
        if a["new"]:
            w.member(f"self.{a['attr']} = nn.BatchNorm{a['nd']}d({a['c']}, affine={a['affine']}, track_running_stats={a['track']})")
            if a["track"]:
                w.member(f"self.{a['attr']}.running_mean.uniform_(0.0, 1.0)")
                w.member(f"self.{a['attr']}.running_var.uniform_(0.5, 1.5)")
        w.assign(node, f"self.{a['attr']}({x})")

    def fields(self, attrs: dict[str, Any]) -> dict[str, Any]:
        return {"attr": Name("bn"), "new": Bool(), "c": size(), "nd": Int(1, 3), "track": Bool(), "affine": Bool()}

    def state(self, node: dict[str, Any]) -> int:
        return 4 * node["attrs"]["c"] if node["attrs"]["new"] else 0


class Pool(OpKind):
    """max / average / adaptive pooling over 1, 2 or 3 spatial dimensions, as functions or
    modules."""

    category = "pooling"

    def __init__(self, name: str) -> None:
        self.name = name

    def plan(self, p: Planner, g: Gene) -> Value | None:
        x = p.float_or_new(g, lambda v: 3 <= len(v.shape) <= 5 and min(v.shape[2:]) >= 1, (1, g.int(1, 3), g.int(2, 6), g.int(2, 6)))
        nd = len(x.shape) - 2
        spatial = x.shape[2:]
        style = g.int(0, 2)
        if self.name == "adaptive_pool":
            out = [g.int(1, s) for s in spatial]
            attrs: dict[str, Any] = {"nd": nd, "out": out, "max": g.chance(40), "style": style, "attr": p.fresh("pool")}
            shape = (*x.shape[:2], *out)
        else:
            if self.name == "avg_pool" and nd == 3 and x.dtype == "bfloat16":
                return None  # avg_pool3d has no bfloat16 CPU kernel
            k = g.int(1, min(3, min(spatial)))
            stride = g.int(1, k)
            pad = g.int(0, k // 2)
            out = [_conv_out(s, k, stride, pad) for s in spatial]
            if min(out) < 1:
                return None
            attrs = {"nd": nd, "k": k, "stride": stride, "pad": pad, "style": style, "attr": p.fresh("pool")}
            shape = (*x.shape[:2], *out)
        return p.add(self.name, [x], attrs, shape, x.dtype, x.bound)

    def emit(self, node: dict[str, Any], w: Writer) -> None:
        a, x = node["attrs"], node["in"][0]
        nd = a["nd"]
        if self.name == "adaptive_pool":
            kind = "max" if a["max"] else "avg"
            out = "(" + ", ".join(str(o) for o in a["out"]) + ("," if nd == 1 else "") + ")"
            if a["style"] == 2:
                w.member(f"self.{a['attr']} = nn.Adaptive{kind.capitalize()}Pool{nd}d({out})")
                w.assign(node, f"self.{a['attr']}({x})")
            else:
                w.assign(node, f"F.adaptive_{kind}_pool{nd}d({x}, {out})")
            return
        kind = "max" if self.name == "max_pool" else "avg"
        if a["style"] == 0:
            w.assign(node, f"F.{kind}_pool{nd}d({x}, {a['k']}, stride={a['stride']}, padding={a['pad']})")
        elif a["style"] == 1:
            w.assign(node, f"F.{kind}_pool{nd}d({x}, kernel_size={a['k']}, stride={a['stride']}, padding={a['pad']})")
        else:
            w.member(f"self.{a['attr']} = nn.{kind.capitalize()}Pool{nd}d({a['k']}, stride={a['stride']}, padding={a['pad']})")
            w.assign(node, f"self.{a['attr']}({x})")

    def fields(self, attrs: dict[str, Any]) -> dict[str, Any]:
        common = {"nd": Int(1, 3), "style": Int(0, 2), "attr": Name("pool")}
        if self.name == "adaptive_pool":
            nd = attrs.get("nd") if isinstance(attrs, dict) and attrs.get("nd") in (1, 2, 3) else 3
            return {**common, "out": IntList(1, MAX_SIZE, min_len=nd, max_len=nd), "max": Bool()}
        return {**common, "k": Int(1, 16), "stride": Int(1, 16), "pad": Int(0, 8)}


class LayerNorm(OpKind):
    """``nn.LayerNorm``, ``F.layer_norm`` and ``nn.GroupNorm`` over trailing dimensions."""

    category = "normalization"

    def __init__(self, name: str) -> None:
        self.name = name
        self.cost = 2 if name == "layer_norm_fn" else 1

    def plan(self, p: Planner, g: Gene) -> Value | None:
        if self.name == "group_norm":
            x = p.float_or_new(g, lambda v: len(v.shape) >= 2 and v.shape[1] >= 2, (2, 4, g.int(1, 4)))
            c = x.shape[1]
            # group statistics need more than one value per group, in eval mode too
            groups = [d for d in range(1, c + 1) if c % d == 0 and numel(x.shape[1:]) // d > 1]
            attrs: dict[str, Any] = {"attr": p.fresh("gn"), "groups": groups[g.int(0, len(groups) - 1)], "c": c}
            n = numel(x.shape[1:]) // attrs["groups"]
        else:
            x = p.float_or_new(g, lambda v: len(v.shape) >= 1, (g.int(1, 4), g.int(2, MAX_DIM)))
            last = g.int(1, min(2, len(x.shape)))
            norm_shape = list(x.shape[-last:])
            reuse = p.find_module(g, "layer_norm", {"shape": norm_shape}, match=("shape",)) if self.name == "layer_norm" else None
            if reuse is not None:
                attrs = {"attr": reuse["attr"], "new": False, **reuse["sig"]}
            else:
                attrs = {"attr": p.fresh("ln"), "new": True, "shape": norm_shape, "affine": not g.chance(25), "style": g.int(0, 1)}
                if self.name == "layer_norm":
                    p.register_module(attrs["attr"], "layer_norm", {"shape": norm_shape, "affine": attrs["affine"]})
            n = numel(norm_shape)
        bound = math.sqrt(n) * 2.0 + 1.0
        return p.add(self.name, [x], attrs, x.shape, x.dtype, bound)

    def emit(self, node: dict[str, Any], w: Writer) -> None:
        a, x = node["attrs"], node["in"][0]
        if self.name == "group_norm":
            w.member(f"self.{a['attr']} = nn.GroupNorm({a['groups']}, {a['c']})")
            w.assign(node, f"self.{a['attr']}({x})")
            return
        shape = "(" + ", ".join(str(d) for d in a["shape"]) + ("," if len(a["shape"]) == 1 else "") + ")"
        if self.name == "layer_norm":
            if a["new"]:
                w.member(f"self.{a['attr']} = nn.LayerNorm({shape}, elementwise_affine={a['affine']})")
            w.assign(node, f"self.{a['attr']}({x})")
        elif a["style"] == 0:
            w.assign(node, f"F.layer_norm({x}, {shape})")
        else:
            w.member(f"self.{a['attr']}_weight = nn.Parameter(torch.rand({shape}) + 0.5)")
            w.assign(node, f"F.layer_norm({x}, {shape}, weight=self.{a['attr']}_weight, eps=1e-06)")

    def fields(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if self.name == "group_norm":
            return {"attr": Name("gn"), "groups": size(), "c": size()}
        return {"attr": Name("ln"), "new": Bool(), "shape": shape(), "affine": Bool(),
                "style": Int(0, 1) if self.name == "layer_norm_fn" else Int(0, 1).maybe()}

    def state(self, node: dict[str, Any]) -> int:
        a = node["attrs"]
        return 2 * (a["c"] if self.name == "group_norm" else numel(a["shape"]))


def _index_value(p: Planner, g: Gene, rank: int | None, shape: tuple[int, ...]) -> Value:
    """An integer value usable as indices (an input, or an argmax result), else a new
    integer input of ``shape`` with values below 8."""

    def ok(v: Value) -> bool:
        return v.dtype == "int64" and v.nonneg and v.bound < 16 and (rank is None or len(v.shape) == rank) and numel(v.shape) <= 64

    return p.choose(g, ok) or p.new_input(shape, "int64", high=g.int(2, 8))


class Embedding(OpKind):
    """``nn.Embedding`` / ``F.embedding`` / ``nn.EmbeddingBag`` looking up integer indices."""

    category = "lookup"

    def __init__(self, name: str) -> None:
        self.name = name

    def plan(self, p: Planner, g: Gene) -> Value | None:
        if self.name == "embedding_bag":
            idx = _index_value(p, g, 2, (g.int(1, 3), g.int(1, 4)))
        else:
            idx = _index_value(p, g, None, (g.int(1, 4),))
        rows = int(idx.bound) + 1 + g.int(0, 2)
        dim = g.int(1, MAX_DIM)
        attrs: dict[str, Any] = {"attr": p.fresh("emb"), "rows": rows, "dim": dim, "style": g.int(0, 1)}
        if self.name == "embedding_bag":
            attrs["mode"] = g.pick(("mean", "sum", "max"))
            shape: tuple[int, ...] = (idx.shape[0], dim)
            bound = EMBED_BOUND * (idx.shape[1] if attrs["mode"] == "sum" else 1)
        else:
            shape = (*idx.shape, dim)
            bound = EMBED_BOUND
        if numel(shape) > MAX_ELEMENTS:
            return None
        ins = [idx]
        if self.name == "embedding" and attrs["style"] == 1:
            ins.append(p.new_param((rows, dim), 1.0))
        return p.add(self.name, ins, attrs, shape, p.dtype, bound)

    def emit(self, node: dict[str, Any], w: Writer) -> None:
        a, idx = node["attrs"], node["in"][0]
        if self.name == "embedding_bag":
            w.member(f"self.{a['attr']} = nn.EmbeddingBag({a['rows']}, {a['dim']}, mode={a['mode']!r})")
            w.assign(node, f"self.{a['attr']}({idx})")
        elif a["style"] == 1:
            w.assign(node, f"F.embedding({idx}, {node['in'][1]})")
        else:
            w.member(f"self.{a['attr']} = nn.Embedding({a['rows']}, {a['dim']})")
            w.assign(node, f"self.{a['attr']}({idx})")

    def fields(self, attrs: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"attr": Name("emb"), "rows": size(), "dim": size(), "style": Int(0, 1)}
        if self.name == "embedding_bag":
            out["mode"] = OneOf(("mean", "sum", "max"))
        return out

    def arity(self, attrs: dict[str, Any]) -> tuple[int, int]:
        n = 2 if self.name == "embedding" and attrs["style"] == 1 else 1
        return (n, n)

    def state(self, node: dict[str, Any]) -> int:
        return node["attrs"]["rows"] * node["attrs"]["dim"]


class Dropout(OpKind):
    """Dropout as a module or a function; random only in training mode. Styles: 0 module,
    1 function, 2 module with the input by keyword (only planted by a pattern: tracing
    passes a function's keyword input on by position)."""

    name = "dropout"
    category = "stochastic"
    weight = 0.3

    def plan(self, p: Planner, g: Gene) -> Value | None:
        x = p.float_value(g)
        if x is None:
            return None
        style = g.int(0, 1)
        if p.training:
            p.stochastic = True
        return p.add(self.name, [x], {"style": style, "attr": p.fresh("drop")}, x.shape, x.dtype, 2.0 * x.bound)

    def emit(self, node: dict[str, Any], w: Writer) -> None:
        a, x = node["attrs"], node["in"][0]
        # style 2 passes the input by keyword (planted by the dropout focus)
        if a["style"] in (0, 2):
            w.member(f"self.{a['attr']} = nn.Dropout(0.5)")
            w.assign(node, f"self.{a['attr']}({'input=' if a['style'] == 2 else ''}{x})")
        else:
            w.assign(node, f"F.dropout({x}, p=0.5, training=self.training)")

    def fields(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # style 2 (keyword input) is planted by the remove_dropout focus
        return {"style": Int(0, 2), "attr": Name("drop")}


#: Activation modules: (constructor, magnitude bound as a function of the input's).
ACTIVATIONS: dict[str, tuple[str, Any]] = {
    "ReLU": ("nn.ReLU()", lambda b: b),
    "GELU": ("nn.GELU()", lambda b: b),
    "Tanh": ("nn.Tanh()", lambda b: 1.0),
    "Sigmoid": ("nn.Sigmoid()", lambda b: 1.0),
    "SiLU": ("nn.SiLU()", lambda b: b),
    "LeakyReLU": ("nn.LeakyReLU(0.1)", lambda b: b),
    "Softmax": ("nn.Softmax(dim=-1)", lambda b: 1.0),
    "Hardswish": ("nn.Hardswish()", lambda b: b),
    "ELU": ("nn.ELU()", lambda b: b + 1.0),
}


class Activation(OpKind):
    """An activation module; an existing one of the same class is called again half the
    time (one submodule, several call sites)."""

    name = "activation"
    category = "layers"

    def plan(self, p: Planner, g: Gene) -> Value | None:
        x = p.float_value(g, lambda v: bool(v.shape))
        if x is None:
            return None
        cls = g.pick(tuple(ACTIVATIONS))
        reuse = p.find_module(g, "act", {"cls": cls}, match=("cls",))
        attr = reuse["attr"] if reuse else p.fresh("act")
        if reuse is None:
            p.register_module(attr, "act", {"cls": cls})
        return p.add(self.name, [x], {"cls": cls, "attr": attr, "new": reuse is None}, x.shape, x.dtype, ACTIVATIONS[cls][1](x.bound))

    def emit(self, node: dict[str, Any], w: Writer) -> None:
        a = node["attrs"]
        if a["new"]:
            w.member(f"self.{a['attr']} = {ACTIVATIONS[a['cls']][0]}")
        w.assign(node, f"self.{a['attr']}({node['in'][0]})")

    def fields(self, attrs: dict[str, Any]) -> dict[str, Any]:
        return {"cls": OneOf(ACTIVATIONS), "attr": Name("act"), "new": Bool()}


KINDS: tuple[OpKind, ...] = (
    Linear(),
    Conv(1),
    Conv(2),
    Conv(3),
    Conv(2, functional=True),
    BatchNorm(False),
    BatchNorm(True),
    Pool("max_pool"),
    Pool("avg_pool"),
    Pool("adaptive_pool"),
    LayerNorm("layer_norm"),
    LayerNorm("layer_norm_fn"),
    LayerNorm("group_norm"),
    Embedding("embedding"),
    Embedding("embedding_bag"),
    Dropout(),
    Activation(),
)
