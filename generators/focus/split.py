"""Patterns and foci of the split family (``split_module``, and the partitioner, which
splits with it): in-place writes read on both sides by other nodes, so a partition map
puts the reads and the write in different partitions; grad-mode regions, whose
``_set_grad_enabled`` calls split_module replays per partition
(``torch/fx/passes/split_module.py``); and embeddings for ``sparse_nn`` partitioning."""

from __future__ import annotations

from typing import Any

from generators.focus import _plant
from generators.focus._plant import Pattern
from generators.focus.focus import Focus
from generators.vocab.base import (
    FLOAT_DTYPES,
    FLOAT_LIMIT,
    MAX_DIM,
    Gene,
    OpKind,
    Planner,
    Value,
    Writer,
    numel,
)
from generators.vocab.layers import EMBED_BOUND
from generators.vocab.schema import Bool, Int, Name, OneOf, shape, size

#: In-place styles of the ``inplace`` kind planted here: relu_, torch.relu_, add_(1.0),
#: F.relu(inplace=True) (indices into its table).
_WRITES = ((0, 0.0), (1, 0.0), (6, 1.0), (8, 0.0))


class ReadThenWrite(Pattern):
    """``r = sigmoid(y); y.relu_(); out = r + y``: a read before and after an in-place write."""

    name = "read_then_write"

    def plan(self, p: Planner, g: Gene) -> Value | None:
        y = p.float_value(g, lambda v: v.storage is not None and v.bound <= FLOAT_LIMIT / 4)
        if y is None:
            base = p.new_input((g.int(1, 3), g.int(1, MAX_DIM)))
            y = _plant.binary(p, "mul", base, 2.0)
            if y is None:
                return None
        before = _plant.unary(p, g.pick(("sigmoid", "tanh")), y, bound=1.0)
        style, grow = _WRITES[g.int(0, len(_WRITES) - 1)]
        p.mutate(y, y.bound + grow)
        p.add("inplace", [y], {"style": style}, y.shape, y.dtype, y.bound, view_of=y)
        after = _plant.unary(p, "neg", y) if g.chance(50) else y
        return _plant.binary(p, "add", before, after)


_REGION_HELPER = '''
def fx_conform_set_grad(flag, anchor):
    """Switch grad mode; recorded in the graph when tracing (plain tracing would only run it)."""
    if isinstance(anchor, torch.fx.Proxy):
        anchor.tracer.create_proxy("call_function", torch._C._set_grad_enabled, (flag,), {})
    else:
        torch._C._set_grad_enabled(flag)
'''


class GradRegion(Pattern):
    """A no-grad region around one or two pointwise ops, opened and closed by
    ``torch._C._set_grad_enabled`` nodes."""

    name = "grad_region"
    in_specs = True  # its nodes are its own
    cost = 4

    def plan(self, p: Planner, g: Gene) -> Value | None:
        x = p.float_value(g, lambda v: v.bound <= FLOAT_LIMIT / 2)
        if x is None:
            x = p.new_input((g.int(1, 3), g.int(1, MAX_DIM)))
        ops = g.int(1, 2)
        return p.add(self.name, [x], {"ops": ops}, x.shape, x.dtype, 1.0 if ops == 1 else 1.0)

    def emit(self, node: dict[str, Any], w: Writer) -> None:
        x = node["in"][0]
        w.helper("fx_conform_set_grad", _REGION_HELPER)
        w.line(f"fx_conform_set_grad(False, {x})")
        if node["attrs"]["ops"] == 2:
            w.assign(node, f"torch.relu(torch.sigmoid({x}))")
        else:
            w.assign(node, f"torch.sigmoid({x})")
        w.line(f"fx_conform_set_grad(True, {x})")

    def fields(self, attrs: dict[str, Any]) -> dict[str, Any]:
        return {"ops": Int(1, 2)}


_SYMBOLIC_HELPER = '''
def fx_conform_symbolic(x, scaled, length, shape, dtype):
    """Under tracing, give x, scaled (x * 2) and length (x.size(0)) the example_value
    metadata dynamo records: fake tensors whose first size is the symbol s0, and s0 itself."""
    if not isinstance(x, torch.fx.Proxy):
        return
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.symbolic_shapes import DimDynamic, ShapeEnv, StatelessSymbolicContext

    fake = x.node.meta.get("example_value")
    if fake is None:  # a value read twice keeps its symbol
        example = torch.zeros(shape, dtype=getattr(torch, dtype))
        dynamic = [DimDynamic.DYNAMIC] + [DimDynamic.STATIC] * (example.dim() - 1)
        fake = FakeTensorMode(shape_env=ShapeEnv()).from_tensor(
            example, symbolic_context=StatelessSymbolicContext(dynamic_sizes=dynamic))
        x.node.meta["example_value"] = fake
    scaled.node.meta["example_value"] = fake * 2
    length.node.meta["example_value"] = fake.size(0)
'''


class SymbolicSize(Pattern):
    """``scaled = x * 2; n = x.size(0); out = scaled.sum() + n`` with dynamo-style
    ``example_value`` metadata recorded while tracing (fake tensors of symbolic first size
    s0, and the SymInt s0 on the size node): split_module then tracks which partition binds
    each symbol and passes symbols between partitions."""

    name = "symbolic_size"
    in_specs = True  # its nodes are its own
    cost = 5

    def plan(self, p: Planner, g: Gene) -> Value | None:
        # a first size of 2 or more: sizes 0 and 1 are specialized, never symbols
        x = p.float_value(g, lambda v: bool(v.shape) and v.shape[0] >= 2 and v.bound * numel(v.shape) <= FLOAT_LIMIT / 4)
        if x is None:
            x = p.new_input((g.int(2, 4), g.int(1, MAX_DIM)))
        bound = 2 * x.bound * numel(x.shape) + x.shape[0]
        return p.add(self.name, [x], {"shape": list(x.shape), "dtype": x.dtype}, (), x.dtype, bound)

    def emit(self, node: dict[str, Any], w: Writer) -> None:
        x, out = node["in"][0], node["id"]
        w.helper("fx_conform_symbolic", _SYMBOLIC_HELPER)
        w.line(f"{out}_scaled = {x} * 2")
        w.line(f"{out}_length = {x}.size(0)")
        a = node["attrs"]
        w.line(f"fx_conform_symbolic({x}, {out}_scaled, {out}_length, {tuple(a['shape'])!r}, {a['dtype']!r})")
        w.assign(node, f"{out}_scaled.sum() + {out}_length")

    def fields(self, attrs: dict[str, Any]) -> dict[str, Any]:
        return {"shape": shape(), "dtype": OneOf(FLOAT_DTYPES)}


class EmbeddingLookup(Pattern):
    """One ``nn.Embedding``/``nn.EmbeddingBag`` lookup of integer indices: a focus whose
    swarm keeps only this pattern draws modules of embeddings alone (``sparse_nn``
    partitions embeddings and dense operations apart)."""

    name = "embedding_lookup"
    cost = 2

    def plan(self, p: Planner, g: Gene) -> Value | None:
        bag = g.chance(40)
        rows, dim = g.int(2, 8), g.int(1, MAX_DIM)
        shape = (g.int(1, 3), g.int(1, 4)) if bag else (g.int(1, 4),)
        idx = p.choose(g, lambda v: v.dtype == "int64" and v.nonneg and v.bound < rows and v.shape == shape)
        idx = idx or p.new_input(shape, "int64", high=rows)
        attrs: dict[str, Any] = {"attr": p.fresh("emb"), "rows": rows, "dim": dim, "style": 0}
        if bag:
            attrs["mode"] = g.pick(("mean", "sum", "max"))
            bound = EMBED_BOUND * (shape[1] if attrs["mode"] == "sum" else 1)
            return p.add("embedding_bag", [idx], attrs, (shape[0], dim), p.dtype, bound)
        return p.add("embedding", [idx], attrs, (*shape, dim), p.dtype, EMBED_BOUND)


class EmbeddingTables(Pattern):
    """One to three ``nn.Embedding``/``nn.EmbeddingBag`` lookups and nothing else: planted
    only into a module with no operation yet, it then takes the rest of the node budget, so
    every later gene rolls back and the module's operations are all embeddings (the case
    ``sparse_nn`` leaves without a dense partition)."""

    name = "embedding_tables"
    cost = 6

    def plan(self, p: Planner, g: Gene) -> Value | None:
        if p.nodes:
            return None
        made = None
        for _ in range(g.int(1, 3)):
            made = _LOOKUP.plan(p, g)
        p.cost = max(p.cost, p.max_cost)
        return made


class ReturnedParameter(Pattern):
    """A parameter that forward returns as it is (read by no other node), next to the
    other outputs: split_module must fetch it in the parent."""

    name = "returned_parameter"
    cost = 2

    def plan(self, p: Planner, g: Gene) -> Value | None:
        return p.new_param((g.int(1, 3), g.int(1, MAX_DIM)))


_HOLDER = '''
class Holder(nn.Module):
    """Holds one Linear under a chosen attribute name and calls it."""

    def __init__(self, name, dim):
        super().__init__()
        self.child_name = name
        setattr(self, name, nn.Linear(dim, dim))

    def forward(self, x):
        return getattr(self, self.child_name)(x)
'''


class CollidingTargets(Pattern):
    """Two nested Linears whose qualified names differ only in where the dot is
    (``v3.k_x`` and ``v3_k.x``): replacing dots by underscores makes them one name."""

    name = "colliding_targets"
    in_specs = True  # its nodes are its own
    cost = 3

    def plan(self, p: Planner, g: Gene) -> Value | None:
        x = p.float_value(g, lambda v: bool(v.shape) and v.shape[-1] <= MAX_DIM and v.bound <= FLOAT_LIMIT / 10)
        if x is None:
            x = p.new_input((g.int(1, 3), g.int(1, MAX_DIM)))
        d = x.shape[-1]
        bound = _plant.lin_bound(d, x.bound)
        first = p.add(self.name, [x], {"dim": d, "second": False}, x.shape, x.dtype, bound)
        other = x if g.chance(50) else first
        if other is first:
            bound = _plant.lin_bound(d, bound)
        if bound > FLOAT_LIMIT:
            return None
        return p.add(self.name, [other], {"dim": d, "second": True, "of": first.name}, x.shape, x.dtype, bound)

    def emit(self, node: dict[str, Any], w: Writer) -> None:
        a = node["attrs"]
        w.helper("Holder", _HOLDER)
        if a["second"]:
            # v<N>_k.x next to v<N>.k_x
            w.member(f"self.{a['of']}_k = Holder('x', {a['dim']})")
            w.assign(node, f"self.{a['of']}_k({node['in'][0]})")
        else:
            w.member(f"self.{node['id']} = Holder('k_x', {a['dim']})")
            w.assign(node, f"self.{node['id']}({node['in'][0]})")

    def fields(self, attrs: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"dim": size(), "second": Bool()}
        if attrs.get("second") is True:
            out["of"] = Name("v")  # the first node of the pair, whose Holder it sits next to
        return out

    def state(self, node: dict[str, Any]) -> int:
        return node["attrs"]["dim"] * (node["attrs"]["dim"] + 1)


_LOOKUP = EmbeddingLookup()

KINDS: tuple[OpKind, ...] = (ReadThenWrite(), GradRegion(), _LOOKUP, EmbeddingTables(), ReturnedParameter(),
                             CollidingTargets(), SymbolicSize())

SPLIT_MODULE = Focus(
    weights={"inplace": 2.0, "relu": 1.0, "add": 1.0, "mul": 0.5, "linear": 1.0, "block": 0.5, "default_arg": 0.5,
             "slice": 0.5, "split": 0.5},
    patterns={"read_then_write": 3.0, "grad_region": 2.0, "returned_parameter": 1.0, "colliding_targets": 1.0,
              "symbolic_size": 2.0},
    training=None,
)

PARTITION = Focus(
    weights={"embedding": 2.0, "embedding_bag": 2.0, "inplace": 1.0, "linear": 1.0, "relu": 1.0, "add": 1.0, "cat": 0.5},
    patterns={"read_then_write": 3.0, "embedding_lookup": 2.0, "embedding_tables": 2.0},
    training=None,
    # small graphs: the cost-aware and KL searches run on them only (generators.params.partition
    # .modes_for), and the heuristics' corner cases need few operations per device
    max_nodes=24,
)
