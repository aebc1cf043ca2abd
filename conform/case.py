"""A case: what to build, from which source, with which seed, on which device.

A :class:`Case` holds only JSON-able data, so it can be recorded, replayed and written into a
repro script; :meth:`Case.build` asks its source to materialize the module and inputs.

Example::

    >>> case = Case(source="factory", spec={"factory": "mypkg.cases:two_adds"})
    >>> built = case.build()
    >>> built.module(*built.args, **built.kwargs)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from conform.outcome import stable_key
from generators.sources import Built, get_source


@dataclasses.dataclass(frozen=True)
class Case:
    source: str
    spec: Any
    seed: int = 0
    device: str = "cpu"
    name: str | None = None

    @property
    def key(self) -> str:
        return stable_key(self.source, self.spec, self.seed)

    @property
    def id(self) -> str:
        """A readable identity: ``source:name#key``."""
        label = self.name or get_source(self.source).label(self.spec)
        return f"{self.source}:{label}#{self.key[:8]}"

    def build(self) -> Built:
        """Materialize module and inputs (deterministic in ``seed``) on CPU."""
        return get_source(self.source).build(self.spec, self.seed)

    def source_code(self) -> str:
        """Python source that defines ``build_case()`` returning ``(module, args, kwargs)``."""
        return get_source(self.source).source_code(self.spec, self.seed)

    def with_builder(self, build_case: Callable[[], tuple[Any, Any, Any]], *, stochastic: bool = False,
                     concrete_args: dict[str, Any] | None = None, leaf_modules: tuple[type, ...] = ()) -> Case:
        """This case (same source, spec, seed and key) built by ``build_case()`` instead of
        by its source: what a repro script uses to check the module its own, possibly
        edited, ``build_case()`` returns.

        Args:
            build_case: returns ``(module, args, kwargs)``; it is called with the global RNG
                seeded by the case's seed.
            stochastic / concrete_args / leaf_modules: how the module is compared and
                traced (see :class:`~generators.sources.Built`).
        """
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(Case)}
        return PrebuiltCase(**fields, builder=build_case, stochastic=stochastic,
                            concrete_args=concrete_args, leaf_modules=tuple(leaf_modules))

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(Case)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Case:
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})


@dataclasses.dataclass(frozen=True)
class PrebuiltCase(Case):
    """A case whose module and inputs come from a function rather than from its source
    (see :meth:`Case.with_builder`); it records and replays as the case it was made from."""

    builder: Callable[[], tuple[Any, Any, Any]] | None = dataclasses.field(default=None, compare=False, repr=False)
    stochastic: bool = False
    concrete_args: dict[str, Any] | None = dataclasses.field(default=None, compare=False)
    leaf_modules: tuple[type, ...] = ()

    def build(self) -> Built:
        if self.builder is None:
            return super().build()
        import torch

        torch.random.default_generator.manual_seed(self.seed)
        module, args, kwargs = self.builder()
        return Built(module=module, args=tuple(args), kwargs=dict(kwargs or {}), stochastic=self.stochastic,
                     concrete_args=self.concrete_args, leaf_modules=self.leaf_modules)
