"""Case sources: where cases come from, behind one small interface.

A source turns a JSON-able *spec* into a module and example inputs (:meth:`Source.build`),
writes the same thing as standalone Python (:meth:`Source.source_code`), and offers a
hypothesis strategy over its specs (:meth:`Source.specs`). Sources are registered by name in
:data:`SOURCES`; ``conform list sources`` shows them with their case counts.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
from collections.abc import Callable
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

    def count(self) -> int | None:
        """How many distinct cases the source holds, or None when unbounded."""
        return None


def _load(path: str) -> Any:
    module_name, _, attr = path.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


class FactorySource(Source):
    """Cases written by hand as Python functions: spec ``{"factory": "pkg.mod:fn",
    "kwargs": {...}}`` where ``fn(**kwargs)`` returns a :class:`Built`. Used for known
    divergence witnesses, self-checks and user-supplied cases."""

    name = "factory"
    description = "hand-written case factories named by 'module:function'"

    def specs(self) -> st.SearchStrategy[Any]:
        return st.nothing()

    def build(self, spec: Any, seed: int) -> Built:
        torch.random.default_generator.manual_seed(seed)
        built = _load(spec["factory"])(**spec.get("kwargs", {}))
        if not isinstance(built, Built):
            raise TypeError(f"factory {spec['factory']} returned {type(built).__name__}, expected Built")
        return built

    def source_code(self, spec: Any, seed: int) -> str:
        module_name, _, attr = spec["factory"].partition(":")
        return (
            f"import torch\nfrom {module_name} import {attr}\n\n\n"
            "def build_case():\n"
            f"    torch.manual_seed({seed})\n"
            f"    built = {attr}(**{json.dumps(spec.get('kwargs', {}))})\n"
            "    return built.module, built.args, built.kwargs\n"
        )

    def label(self, spec: Any) -> str:
        return spec["factory"].rpartition(":")[2]


_FACTORIES: dict[str, Callable[[], Source]] = {
    "factory": FactorySource,
    "samples": lambda: _load("generators.samples:SamplesSource")(),
    "random": lambda: _load("generators.random_modules:RandomSource")(),
    "opinfo": lambda: _load("generators.opinfo:OpInfoSource")(),
    "nn_modules": lambda: _load("generators.nn_modules:NNModuleSource")(),
    "torchvision": lambda: _load("generators.torchvision_models:TorchvisionSource")(),
}

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
