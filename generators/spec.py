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
import re
from typing import Any

import torch

from generators.sources import Built, SpecError
from generators.vocab import VOCABULARY
from generators.vocab.base import FLOAT_DTYPES, INT_DTYPES, Writer
from generators.vocab.schema import (
    Bool,
    Field,
    Float,
    Int,
    Name,
    NameList,
    OneOf,
    check_fields,
    shape,
    show,
)

__all__ = ["SpecError", "build", "module_source", "standalone_source", "validate"]

SPEC_FORMAT = "fx-conform.random/1"
CLASS_NAME = "GeneratedModule"
_PRELUDE = "import torch\nimport torch.fx\nimport torch.nn as nn\nimport torch.nn.functional as F\n"


#: Bounds on a spec's size: far above what the generator plans (``max_nodes`` is 200 by
#: default), low enough that a spec from elsewhere cannot ask for unbounded work.
MAX_NODES = 4096
MAX_INPUTS = 1024
MAX_OUTPUT_DEPTH = 8
#: Integer inputs are drawn from ``[0, high)``.
MAX_HIGH = 1 << 24
#: Bound on the elements of every parameter and buffer a spec creates, together (512 MiB
#: in float32).
MAX_STATE_ELEMENTS = 1 << 27

_INPUT_NAME = Name("x")
_NODE_ID = Name("v")
_PARAM_ID = Name("w")
_OUTPUT_KEY = re.compile(r"out[0-9]{1,6}|rest")
_VALUE_DTYPES = (*FLOAT_DTYPES, *INT_DTYPES, "bool", "tuple", "none")
_TOP_LEVEL = {"format", "dtype", "training", "inputs", "signature", "nodes", "outputs", "stochastic"}


def validate(spec: Any) -> None:
    """Check every field of ``spec`` before anything is written from it.

    A spec may come from a results file or a hand edit, and its names and attributes are
    pasted into Python source, so everything is checked against the generator's own
    vocabulary: names are the generator's (``x1``, ``v7``, ``fc3``), op kinds come from
    :data:`~generators.vocab.VOCABULARY`, each attribute follows its kind's rules
    (:meth:`~generators.vocab.base.OpKind.fields`), shapes are small, and every name a node
    reads or the module returns is defined before.

    Args:
        spec: a candidate random-module spec.

    Raises:
        SpecError: naming the path of the first bad field, e.g.
            ``inputs[0].name: 'x1=__import__(...)' is not an identifier``.
    """
    if not isinstance(spec, dict):
        raise SpecError(f"a random-module spec is a dict, got {type(spec).__name__}")
    missing = [k for k in ("dtype", "inputs", "nodes", "outputs") if k not in spec]
    if missing:
        raise SpecError(f"spec lacks {', '.join(missing)}")
    for key in spec:
        if key not in _TOP_LEVEL:
            raise SpecError(f"spec: unknown field {show(key)} (valid: {', '.join(sorted(_TOP_LEVEL))})")
    if "format" in spec:
        OneOf((SPEC_FORMAT,)).check(spec["format"], "format")
    if spec["dtype"] not in FLOAT_DTYPES or not isinstance(spec["dtype"], str):
        raise SpecError(f"dtype: spec dtype {show(spec['dtype'])} is not one of {', '.join(FLOAT_DTYPES)}")
    for key in ("training", "stochastic"):
        if key in spec:
            Bool().check(spec[key], key)
    defined = _check_inputs(spec["inputs"], spec["dtype"])
    signature = _check_signature(spec.get("signature"))
    _check_nodes(spec["nodes"], defined, signature)
    _check_output(spec["outputs"], defined, "outputs", 0)


def _check_inputs(inputs: Any, dtype: str) -> set[str]:
    if not isinstance(inputs, list) or not 1 <= len(inputs) <= MAX_INPUTS:
        raise SpecError(f"inputs: expected a list of 1 to {MAX_INPUTS} inputs, got {show(inputs)}")
    names: set[str] = set()
    for i, entry in enumerate(inputs):
        path = f"inputs[{i}]"
        is_int = isinstance(entry, dict) and entry.get("dtype") in INT_DTYPES
        fields: dict[str, Any] = {"name": _INPUT_NAME, "shape": shape(), "dtype": OneOf((dtype, *INT_DTYPES))}
        if is_int:
            fields["high"] = Int(1, MAX_HIGH)
        check_fields(entry, fields, path)
        if entry["name"] in names:
            raise SpecError(f"{path}.name: {entry['name']!r} is already an input")
        names.add(entry["name"])
    return names


def _check_signature(sig: Any) -> dict[str, Any]:
    if sig is None:
        return {"default": None, "flag": None, "varkw": False}
    check_fields(sig, {"default": _Optional({"name": OneOf(("alpha",)), "value": Float()}),
                       "flag": _Optional({"name": OneOf(("flag",)), "value": Bool()}),
                       "varkw": Bool()}, "signature")
    return sig


class _Optional(Field):
    """None, or a dict following ``fields``."""

    def __init__(self, fields: dict[str, Field]) -> None:
        self.fields = fields

    def check(self, value: Any, path: str) -> None:
        if value is not None:
            check_fields(value, self.fields, path)


#: What each ``default_arg`` style reads from the forward's signature.
_SIGNATURE_NEEDS = {0: "default", 1: "flag", 2: "varkw"}


def _check_nodes(nodes: Any, defined: set[str], signature: dict[str, Any]) -> None:
    if not isinstance(nodes, list) or len(nodes) > MAX_NODES:
        raise SpecError(f"nodes: expected a list of at most {MAX_NODES} nodes, got {show(nodes)}")
    members: set[str] = set()
    readers: dict[str, list[str]] = {}
    state = 0
    for i, node in enumerate(nodes):
        path = f"nodes[{i}]"
        if not isinstance(node, dict):
            raise SpecError(f"{path}: {show(node)} is not a dict")
        op = node.get("op")
        if not isinstance(op, str) or op not in VOCABULARY or op == "skip" or not VOCABULARY[op].in_specs:
            known = ", ".join(sorted(k for k, kind in VOCABULARY.items() if k != "skip" and kind.in_specs))
            raise SpecError(f"{path}.op: node {show(node.get('id'))} has unknown op {show(op)} (known: {known})")
        kind = VOCABULARY[op]
        attrs = node.get("attrs")
        check_fields(node, {
            "id": _PARAM_ID if op == "param" else _NODE_ID,
            "op": OneOf((op,)),
            "in": NameList(Name("x", "v", "w"), max_len=MAX_NODES),
            "attrs": _Attrs(kind),
            "shape": _ShapeOrNone(),
            "dtype": OneOf(_VALUE_DTYPES),
        }, path)
        if node["id"] in defined:
            raise SpecError(f"{path}.id: {node['id']!r} is already defined")
        lo, hi = kind.arity(attrs)
        if not lo <= len(node["in"]) <= hi:
            want = str(lo) if lo == hi else f"{lo} to {hi}"
            raise SpecError(f"{path}.in: {op} takes {want} operands, got {len(node['in'])}")
        for j, name in enumerate(node["in"]):
            if name not in defined:
                raise SpecError(f"{path}.in[{j}]: {name!r} is not an input or an earlier node")
            readers.setdefault(name, []).append(node["id"])
        _check_member(attrs, members, f"{path}.attrs.attr")
        if op == "default_arg" and not signature.get(_SIGNATURE_NEEDS[attrs["style"]]):
            raise SpecError(f"{path}.attrs.style: style {attrs['style']} reads "
                            f"signature.{_SIGNATURE_NEEDS[attrs['style']]}, which the spec does not set")
        defined.add(node["id"])
        state += kind.state(node)
        if state > MAX_STATE_ELEMENTS:
            raise SpecError(f"{path}: the parameters and buffers up to this node hold {state} elements, "
                            f"more than {MAX_STATE_ELEMENTS}")
    for i, node in enumerate(nodes):
        if node["op"] == "split":
            for j, name in enumerate(node["attrs"]["names"]):
                if name not in readers.get(node["id"], ()):
                    raise SpecError(f"nodes[{i}].attrs.names[{j}]: {name!r} is not a getitem node of {node['id']}")


class _Attrs(Field):
    def __init__(self, kind: Any) -> None:
        self.kind = kind

    def check(self, value: Any, path: str) -> None:
        check_fields(value, self.kind.fields(value if isinstance(value, dict) else {}), path)


class _ShapeOrNone(Field):
    def check(self, value: Any, path: str) -> None:
        if value is not None:
            shape().check(value, path)


def _check_member(attrs: dict[str, Any], members: set[str], path: str) -> None:
    """A submodule name is new where the node creates it, and exists where it reuses it."""
    if "attr" not in attrs:
        return
    name = attrs["attr"]
    if attrs.get("new", True):
        if name in members:
            raise SpecError(f"{path}: {name!r} is created twice")
        members.add(name)
    elif name not in members:
        raise SpecError(f"{path}: {name!r} is reused before a node creates it")


def _check_output(out: Any, defined: set[str], path: str, depth: int) -> None:
    if depth > MAX_OUTPUT_DEPTH:
        raise SpecError(f"{path}: outputs nest deeper than {MAX_OUTPUT_DEPTH} levels")
    if isinstance(out, str):
        if out not in defined:
            raise SpecError(f"{path}: {show(out)} is not an input or a node")
        return
    if not isinstance(out, dict) or len(out) != 1 or next(iter(out)) not in ("tuple", "list", "dict"):
        raise SpecError(f"{path}: {show(out)} is not a name or one of {{'tuple'|'list'|'dict': ...}}")
    key, items = next(iter(out.items()))
    if key == "dict":
        if not isinstance(items, dict) or not 1 <= len(items) <= MAX_NODES:
            raise SpecError(f"{path}.dict: {show(items)} is not a non-empty dict")
        for name, item in items.items():
            if not isinstance(name, str) or not _OUTPUT_KEY.fullmatch(name):
                raise SpecError(f"{path}.dict: key {show(name)} is not a generated key ('out<n>' or 'rest')")
            _check_output(item, defined, f"{path}.dict.{name}", depth + 1)
        return
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_NODES:
        raise SpecError(f"{path}.{key}: {show(items)} is not a non-empty list")
    for i, item in enumerate(items):
        _check_output(item, defined, f"{path}.{key}[{i}]", depth + 1)


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
    forward = [f"def forward({_signature(spec)}):", *(f"    {line}" for line in w.forward),
               f"    return {_output_expr(spec['outputs'])}"]
    outside = w.forward_global and not w.free and not w.class_bound
    lines = []
    if outside:
        # a module-level function taken as the class's forward: its name is a global
        lines += [*forward, "", ""]
    lines += [f"class {CLASS_NAME}(nn.Module):", "    def __init__(self):", "        super().__init__()"]
    lines += [f"        {line}" for line in w.init]
    if outside:
        lines += ["", "    forward = forward"]
    else:
        lines += [""] + [f"    {line}" for line in forward]
    if w.free:
        # the class is made inside a function whose variables the forward reads
        names = sorted(w.free)
        lines = [f"def _enclosing_{CLASS_NAME}({', '.join(names)}):", *(f"    {line}" if line else ""
                                                                      for line in lines),
                 f"    return {CLASS_NAME}", "", "",
                 f"{CLASS_NAME} = _enclosing_{CLASS_NAME}({', '.join(w.free[n] for n in names)})"]
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

    Raises:
        SpecError: ``spec`` is malformed (checked before any source is compiled).
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

    Raises:
        SpecError: ``spec`` is malformed (checked before anything is written).
    """
    validate(spec)
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
