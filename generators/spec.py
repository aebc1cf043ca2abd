"""Random-module specs: the JSON format and its two materializations.

A spec is plain JSON, so a case can be recorded, replayed and shrunk::

    {
      "format": "fx-conform.random/1",
      "dtype": "float32",              # the float dtype of parameters and float inputs
      "training": false,               # module.train(training)
      "inputs": [{"name": "x1", "shape": [2, 3], "dtype": "float32"},
                 {"name": "x2", "shape": [4], "dtype": "int64", "high": 5}],
      "signature": {"default": null, "flag": null, "varkw": false},
      "nodes": [{"id": "v3", "op": "linear", "in": ["x1"],
                 "attrs": {"attr": "fc4", "new": true, "in": 3, "out": 4, "bias": true},
                 "shape": [2, 4], "dtype": "float32"}, ...],
      "outputs": {"tuple": ["v3", "v5"]},   # a name, or {"tuple"|"list": [...]}, {"dict": {...}}
      "stochastic": false              # forward draws random numbers
    }

Every node's ``op`` names an op kind of :mod:`generators.vocab`, which writes its Python.
:func:`module_source` renders the spec as the source of an ``nn.Module`` class,
:func:`build` instantiates it with parameters and inputs drawn from ``seed``, and
:func:`standalone_source` writes the same thing as a self-contained script whose
``build_case()`` returns ``(module, args, kwargs)``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import linecache
from typing import Any

import torch

from generators.sources import Built
from generators.vocab import VOCABULARY
from generators.vocab.base import FLOAT_DTYPES, INT_DTYPES, Writer

SPEC_FORMAT = "fx-conform.random/1"
CLASS_NAME = "GeneratedModule"
_PRELUDE = "import torch\nimport torch.fx\nimport torch.nn as nn\nimport torch.nn.functional as F\n"


class SpecError(ValueError):
    """A random-module spec is malformed (unknown op kind, missing field, bad dtype)."""


def validate(spec: Any) -> None:
    """Raise :class:`SpecError` naming the first problem with ``spec``.

    Args:
        spec: a candidate random-module spec.
    """
    if not isinstance(spec, dict):
        raise SpecError(f"a random-module spec is a dict, got {type(spec).__name__}")
    missing = [k for k in ("dtype", "inputs", "nodes", "outputs") if k not in spec]
    if missing:
        raise SpecError(f"spec lacks {', '.join(missing)}")
    if spec["dtype"] not in FLOAT_DTYPES:
        raise SpecError(f"spec dtype {spec['dtype']!r} is not one of {', '.join(FLOAT_DTYPES)}")
    for node in spec["nodes"]:
        if node.get("op") not in VOCABULARY:
            raise SpecError(f"node {node.get('id')!r} has unknown op {node.get('op')!r} (known: {', '.join(sorted(VOCABULARY))})")


def op_count(spec: dict[str, Any]) -> int:
    """Nodes that compute something (parameters and tuple reads are not counted)."""
    return sum(1 for n in spec["nodes"] if n["op"] not in ("param", "getitem"))


def digest(spec: Any) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:10]


def _signature(spec: dict[str, Any]) -> str:
    parts = ["self", *(entry["name"] for entry in spec["inputs"])]
    sig = spec.get("signature") or {}
    if sig.get("default"):
        parts.append(f"{sig['default']['name']}: float = {sig['default']['value']!r}")
    if sig.get("flag"):
        parts.append(f"{sig['flag']['name']}: bool = {sig['flag']['value']!r}")
    if sig.get("varkw"):
        parts.append("**kwargs")
    return ", ".join(parts)


def _output_expr(out: Any) -> str:
    if isinstance(out, str):
        return out
    if "tuple" in out:
        items = [_output_expr(o) for o in out["tuple"]]
        return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
    if "list" in out:
        return "[" + ", ".join(_output_expr(o) for o in out["list"]) + "]"
    if "dict" in out:
        return "{" + ", ".join(f"{k!r}: {_output_expr(v)}" for k, v in out["dict"].items()) + "}"
    raise SpecError(f"bad output structure {out!r}")


def module_source(spec: dict[str, Any]) -> str:
    """Python source defining the helper classes and ``GeneratedModule`` for ``spec``
    (imports not included).

    Args:
        spec: a random-module spec.

    Returns:
        The class definitions, ready to ``exec`` after the torch imports.
    """
    validate(spec)
    w = Writer(spec["dtype"])
    for node in spec["nodes"]:
        VOCABULARY[node["op"]].emit(node, w)
    lines = [f"class {CLASS_NAME}(nn.Module):", "    def __init__(self):", "        super().__init__()"]
    lines += [f"        {line}" for line in w.init]
    lines += ["", f"    def forward({_signature(spec)}):"]
    lines += [f"        {line}" for line in w.forward]
    lines.append(f"        return {_output_expr(spec['outputs'])}")
    helpers = "".join(src.rstrip() + "\n\n\n" for src in w.helpers.values())
    return helpers + "\n".join(lines) + "\n"


@functools.lru_cache(maxsize=256)
def _compile(source: str) -> type[torch.nn.Module]:
    text = _PRELUDE + "\n\n" + source
    filename = f"<fx-conform random module {hashlib.sha256(text.encode()).hexdigest()[:10]}>"
    # registering the text lets tracebacks and inspect.getsource show the generated lines
    linecache.cache[filename] = (len(text), None, text.splitlines(True), filename)
    namespace: dict[str, Any] = {}
    exec(compile(text, filename, "exec"), namespace)
    return namespace[CLASS_NAME]


def concrete_args(spec: dict[str, Any]) -> dict[str, Any] | None:
    """The forward arguments tracing must fix (a branch flag), or None."""
    flag = (spec.get("signature") or {}).get("flag")
    return {flag["name"]: flag["value"]} if flag else None


def _draw_input(entry: dict[str, Any], gen: torch.Generator) -> torch.Tensor:
    shape = tuple(entry["shape"])
    if entry["dtype"] in INT_DTYPES:
        return torch.randint(0, entry["high"], shape, generator=gen)
    return (torch.rand(shape, generator=gen) * 2.0 - 1.0).to(getattr(torch, entry["dtype"]))


def build(spec: dict[str, Any], seed: int) -> Built:
    """Instantiate ``spec``: parameters from ``torch.manual_seed(seed)`` (inside a forked
    RNG, so the caller's random state is untouched) and inputs from a generator seeded
    with ``seed``.

    Args:
        spec: a random-module spec.
        seed: the case seed.

    Returns:
        The module, its example arguments, and how to trace it.
    """
    cls = _compile(module_source(spec))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = cls()
    module = module.to(getattr(torch, spec["dtype"])).train(bool(spec.get("training", False)))
    gen = torch.Generator().manual_seed(seed)
    args = tuple(_draw_input(entry, gen) for entry in spec["inputs"])
    return Built(
        module=module,
        args=args,
        kwargs={},
        stochastic=bool(spec.get("stochastic", False)),
        concrete_args=concrete_args(spec),
        leaf_modules=leaf_modules(module),
    )


def leaf_modules(module: torch.nn.Module) -> tuple[type, ...]:
    """Helper classes of ``module`` that plain tracing must keep as leaves (their forward
    asserts on a traced value, say): those whose class sets ``fx_conform_leaf``."""
    found = {type(m) for m in module.modules() if getattr(type(m), "fx_conform_leaf", False)}
    return tuple(sorted(found, key=lambda cls: cls.__name__))


def standalone_source(spec: dict[str, Any], seed: int) -> str:
    """A self-contained script (torch only) that rebuilds :func:`build`'s case.

    Args:
        spec: a random-module spec.
        seed: the case seed.

    Returns:
        Python source defining the module classes, ``CONCRETE_ARGS`` and ``build_case()``.
    """
    dtype = f"torch.{spec['dtype']}"
    draws = []
    names = []
    for entry in spec["inputs"]:
        shape = "(" + ", ".join(str(d) for d in entry["shape"]) + ("," if len(entry["shape"]) == 1 else "") + ")"
        if entry["dtype"] in INT_DTYPES:
            draws.append(f"    {entry['name']} = torch.randint(0, {entry['high']}, {shape}, generator=gen)")
        else:
            draws.append(f"    {entry['name']} = (torch.rand({shape}, generator=gen) * 2.0 - 1.0).to(torch.{entry['dtype']})")
        names.append(entry["name"])
    args = "(" + ", ".join(names) + ("," if len(names) == 1 else "") + ")"
    body = [
        f'"""fx-conform random module {digest(spec)} (seed {seed}), {op_count(spec)} ops, {spec["dtype"]}."""',
        "",
        _PRELUDE,
        f"SEED = {seed}",
        f"DTYPE = {dtype}",
        f"TRAINING = {bool(spec.get('training', False))!r}",
        "# forward arguments symbolic_trace must fix (pass as concrete_args)",
        f"CONCRETE_ARGS = {concrete_args(spec)!r}",
        "",
        "",
        module_source(spec).rstrip(),
        "",
        "",
        "def build_case():",
        "    # parameters come from the global RNG inside a fork, inputs from their own generator",
        "    with torch.random.fork_rng(devices=[]):",
        "        torch.manual_seed(SEED)",
        f"        module = {CLASS_NAME}()",
        "    module = module.to(DTYPE).train(TRAINING)",
        "    gen = torch.Generator().manual_seed(SEED)",
        *draws,
        f"    return module, {args}, {{}}",
        "",
        "",
        "class LeafTracer(torch.fx.Tracer):",
        "    # helper classes that set fx_conform_leaf stay call_module leaves",
        "    def is_leaf_module(self, m, qualname):",
        "        return getattr(type(m), 'fx_conform_leaf', False) or super().is_leaf_module(m, qualname)",
        "",
        "",
        'if __name__ == "__main__":',
        "    module, args, kwargs = build_case()",
        "    tracer = LeafTracer()",
        "    traced = torch.fx.GraphModule(module, tracer.trace(module, concrete_args=CONCRETE_ARGS))",
        "    print(traced.code)",
        "    print(module(*args, **kwargs))",
    ]
    return "\n".join(body) + "\n"
