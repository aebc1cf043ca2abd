"""Case sources: where cases come from, behind one small interface.

A source turns a JSON-able *spec* into a module and example inputs (:meth:`Source.build`),
writes the same thing as standalone Python (:meth:`Source.source_code`), and offers a
hypothesis strategy over its specs (:meth:`Source.specs`). Sources are registered by name in
:data:`SOURCES`; ``conform list sources`` shows them with their case counts.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
import keyword
import math
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from hypothesis import strategies as st


def load_or_build_index(packaged: Path, stem: str, stamp: dict[str, Any],
                        build: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """An index of cases for a catalogue source: the file shipped in ``packaged`` when its
    ``stamp`` fields (format, versions) match ``stamp``, else the per-user cache
    ``$XDG_CACHE_HOME/fx-conform/<stem>-<torch version>.json``, else ``build()`` (written to
    that cache). ``build()`` must return a dict holding ``stamp``'s keys."""
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fx-conform"
    cache /= f"{stem}-{torch.__version__}.json"
    for path in (packaged, cache):
        if path.exists():
            data = json.loads(path.read_text())
            if all(data.get(key) == value for key, value in stamp.items()):
                return data
    data = build()
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(data, indent=1, sort_keys=True))
    return data


class SpecError(ValueError):
    """A spec is malformed or names something outside its source's catalogue. The message
    starts with the path of the offending field (``inputs[0].name: ...``)."""


@dataclasses.dataclass
class Built:
    """A materialized case.

    Args:
        module: the eager module.
        args / kwargs: the example call.
        stochastic: the forward draws random numbers in a way a transform may reorder;
            outputs are then compared by shape and dtype only.
        concrete_args: passed to ``symbolic_trace`` (forward arguments fixed at trace time).
        leaf_modules: module classes the tracer keeps as ``call_module`` leaves beyond the
            default ones.
    """

    module: torch.nn.Module
    args: tuple[Any, ...]
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    stochastic: bool = False
    concrete_args: dict[str, Any] | None = None
    leaf_modules: tuple[type, ...] = ()


class Source:
    """Base class of case sources."""

    name: str = ""
    description: str = ""

    def specs(self) -> st.SearchStrategy[Any]:
        raise NotImplementedError

    def build(self, spec: Any, seed: int) -> Built:
        raise NotImplementedError

    def source_code(self, spec: Any, seed: int) -> str:
        """Python defining ``build_case()`` that returns ``(module, args, kwargs)``."""
        raise NotImplementedError

    def label(self, spec: Any) -> str:
        return "case"

    def validate(self, spec: Any) -> None:
        """Raise :class:`SpecError` naming the first field of ``spec`` this source cannot
        build; never imports or calls anything the spec names. Sources check before
        :meth:`build` and :meth:`source_code` use a spec."""

    def count(self) -> int | None:
        """How many distinct cases the source holds, or None when unbounded."""
        return None


def check_catalogue_spec(spec: Any, fields: dict[str, type | tuple[type, ...]],
                         optional: tuple[str, ...] = ()) -> None:
    """Check a catalogue source's spec holds exactly ``fields`` (``optional`` ones may be
    absent) with values of the given types (an int is never a bool here).

    Raises:
        SpecError: naming the first bad field.
    """
    if not isinstance(spec, dict):
        raise SpecError(f"a spec is a dict, got {type(spec).__name__}")
    for key in spec:
        if key not in fields:
            raise SpecError(f"spec: unknown field {key!r:.60} (valid: {', '.join(fields)})")
    for key, kind in fields.items():
        if key not in spec:
            if key in optional:
                continue
            raise SpecError(f"{key}: missing")
        value = spec[key]
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
            names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise SpecError(f"{key}: {value!r:.60} is not a {names}")


def _load(path: str) -> Any:
    # only for this module's own table of sources below: never for a name from a spec
    module_name, _, attr = path.partition(":")
    return getattr(importlib.import_module(module_name), attr)


# --- trusted factories -------------------------------------------------------------------------
#
# A factory spec names a Python function to import and call. A spec may come from a results
# file somebody else wrote, so naming a function is not enough: the factory source imports
# only functions that were trusted before, by the person (``--case MODULE:FUNCTION``) or by
# code (``trust_factory``; the known-divergence registry trusts its witnesses' modules).

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_FACTORY_PATH = re.compile(rf"({_IDENT}(?:\.{_IDENT})*):({_IDENT}|\*)")
_TRUSTED: set[str] = set()
_TRUSTED_MODULES: set[str] = set()


class UntrustedFactoryError(SpecError):
    """A factory spec names a function nobody trusted; nothing was imported."""


def parse_factory(path: Any, *, wildcard: bool = False) -> tuple[str, str]:
    """Split ``"package.module:function"`` into its two parts.

    Args:
        path: the factory's name.
        wildcard: accept ``"package.module:*"`` (every public function of the module).

    Raises:
        SpecError: ``path`` is not of that form (dotted identifiers, no keyword, no dunder).
    """
    match = _FACTORY_PATH.fullmatch(path) if isinstance(path, str) else None
    parts = [*match.group(1).split("."), match.group(2)] if match else []
    bad = (not match or any(keyword.iskeyword(p) or p.startswith("__") for p in parts)
           or (match.group(2) == "*" and not wildcard))
    if bad:
        raise SpecError(f"factory: {path!r} is not a 'MODULE:FUNCTION' name (dotted identifiers, no dunders)")
    return match.group(1), match.group(2)  # type: ignore[union-attr]


def trust_factory(path: str) -> None:
    """Let the factory source import and call ``path``.

    Args:
        path: ``"package.module:function"``, or ``"package.module:*"`` for every public
            function defined in that module (not the names it imports).

    Raises:
        SpecError: ``path`` is not of that form.
    """
    module_name, attr = parse_factory(path, wildcard=True)
    if attr == "*":
        _TRUSTED_MODULES.add(module_name)
    else:
        _TRUSTED.add(f"{module_name}:{attr}")


def trusted_factories() -> tuple[str, ...]:
    """Every trusted factory name, ``"module:*"`` for whole modules, sorted."""
    return tuple(sorted(_TRUSTED | {f"{m}:*" for m in _TRUSTED_MODULES}))


def is_trusted(path: str) -> bool:
    """Whether the factory source may import ``path`` (checked without importing anything)."""
    try:
        module_name, attr = parse_factory(path)
    except SpecError:
        return False
    return path in _TRUSTED or (module_name in _TRUSTED_MODULES and not attr.startswith("_"))


def resolve_factory(path: str) -> Callable[..., Any]:
    """The trusted factory function ``path``, imported.

    Raises:
        UntrustedFactoryError: nobody trusted ``path`` (its module is not imported).
        SpecError: a module trusted as a whole has no function of that name defined in it.
    """
    if not is_trusted(path):
        raise UntrustedFactoryError(
            f"factory: {path!r} is not a trusted case factory and was not imported; "
            f"pass --case {path} if you trust it"
        )
    module_name, attr = parse_factory(path)
    obj = getattr(importlib.import_module(module_name), attr, None)
    if path not in _TRUSTED and not (inspect.isfunction(obj) and obj.__module__ == module_name):
        # a trusted module vouches for the functions it defines, not for what it imports
        raise SpecError(f"factory: {path!r} is not a function defined in {module_name}")
    if not callable(obj):
        raise SpecError(f"factory: {path!r} is not a function")
    return obj


def _check_kwargs(kwargs: Any, path: str) -> None:
    if not isinstance(kwargs, dict):
        raise SpecError(f"{path}: {kwargs!r:.60} is not a dict")
    for key, value in kwargs.items():
        if not isinstance(key, str) or not key.isidentifier() or keyword.iskeyword(key) or key.startswith("__"):
            raise SpecError(f"{path}: key {key!r:.60} is not an identifier")
        _check_json(value, f"{path}.{key}", 0)


def _check_json(value: Any, path: str, depth: int) -> None:
    """Plain JSON data (what repr writes back as the same Python literal)."""
    if depth > 16:
        raise SpecError(f"{path}: nests deeper than 16 levels")
    if value is None or isinstance(value, (bool, int, str)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise SpecError(f"{path}: {value!r} is not a finite number")
        return
    if isinstance(value, list):
        for i, item in enumerate(value):
            _check_json(item, f"{path}[{i}]", depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise SpecError(f"{path}: key {key!r:.60} is not a string")
            _check_json(item, f"{path}.{key}", depth + 1)
        return
    raise SpecError(f"{path}: a {type(value).__name__} is not JSON data")


class FactorySource(Source):
    """Cases written by hand as Python functions: spec ``{"factory": "pkg.mod:fn",
    "kwargs": {...}}`` where ``fn(**kwargs)`` returns a :class:`Built`. Used for known
    divergence witnesses, self-checks and user-supplied cases.

    Only trusted factories are imported (see :func:`trust_factory`). ``names`` are the
    factories a campaign draws from, each called without arguments; without names the
    source draws nothing (its cases are replayed, not drawn).
    """

    name = "factory"
    description = "hand-written case factories named by 'module:function' (--case MODULE:FUNCTION)"

    def __init__(self, *, names: Sequence[str] | None = None) -> None:
        self.names = tuple(names or ())
        for path in self.names:
            parse_factory(path)

    def specs(self) -> st.SearchStrategy[Any]:
        """The factories named with ``--case``, each called without arguments."""
        if not self.names:
            return st.nothing()
        return st.sampled_from([{"factory": path} for path in self.names])

    def validate(self, spec: Any) -> None:
        if not isinstance(spec, dict):
            raise SpecError(f"a factory spec is a dict, got {type(spec).__name__}")
        for key in spec:
            if key not in ("factory", "kwargs"):
                raise SpecError(f"spec: unknown field {key!r:.60} (valid: factory, kwargs)")
        if "factory" not in spec:
            raise SpecError("factory: missing")
        parse_factory(spec["factory"])
        _check_kwargs(spec.get("kwargs", {}), "kwargs")
        if not is_trusted(spec["factory"]):
            resolve_factory(spec["factory"])  # raises, naming the factory

    def build(self, spec: Any, seed: int) -> Built:
        self.validate(spec)
        factory = resolve_factory(spec["factory"])
        torch.random.default_generator.manual_seed(seed)
        built = factory(**spec.get("kwargs", {}))
        if not isinstance(built, Built):
            raise TypeError(f"factory {spec['factory']} returned {type(built).__name__}, expected Built")
        return built

    def source_code(self, spec: Any, seed: int) -> str:
        self.validate(spec)
        module_name, attr = parse_factory(spec["factory"])
        # the kwargs are plain JSON data, which repr writes as the same Python literals; a
        # person runs this script deliberately, so it trusts the one factory it names
        return (
            f"import torch\nfrom {module_name} import {attr}\n\n"
            "from generators.sources import trust_factory\n\n"
            f"trust_factory({module_name + ':' + attr!r})\n\n\n"
            "def build_case():\n"
            f"    torch.manual_seed({int(seed)})\n"
            f"    built = {attr}(**{spec.get('kwargs', {})!r})\n"
            "    return built.module, built.args, built.kwargs\n"
        )

    def label(self, spec: Any) -> str:
        return str(spec["factory"]).rpartition(":")[2]

    def count(self) -> int | None:
        return len(self.names)


BUILTIN_SOURCES: dict[str, Callable[[], Source]] = {
    "factory": FactorySource,
    "samples": lambda: _load("generators.samples:SamplesSource")(),
    "random": lambda: _load("generators.random_modules:RandomSource")(),
    "opinfo": lambda: _load("generators.opinfo:OpInfoSource")(),
    "nn_modules": lambda: _load("generators.nn_modules:NNModuleSource")(),
    "torchvision": lambda: _load("generators.torchvision_models:TorchvisionSource")(),
}

_FACTORIES: dict[str, Callable[[], Source]] = dict(BUILTIN_SOURCES)
_INSTANCES: dict[str, Source] = {}


def source_names() -> list[str]:
    return list(_FACTORIES)


def register_source(name: str, factory: Callable[[], Source]) -> None:
    _FACTORIES[name] = factory
    _INSTANCES.pop(name, None)


def get_source(name: str) -> Source:
    if name not in _FACTORIES:
        raise KeyError(f"unknown source {name!r} (valid: {', '.join(sorted(_FACTORIES))})")
    if name not in _INSTANCES:
        _INSTANCES[name] = _FACTORIES[name]()
    return _INSTANCES[name]


def configured_source(name: str, **options: Any) -> Source:
    """The source ``name``, constructed with ``options`` (its keyword-only knobs, such as the
    random source's op-kind filters) when any are given; the shared instance otherwise."""
    if not options:
        return get_source(name)
    key = name + repr(sorted(options.items()))
    if key not in _INSTANCES:
        _INSTANCES[key] = type(get_source(name))(**options)
    return _INSTANCES[key]
