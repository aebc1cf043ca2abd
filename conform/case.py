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

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Case:
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})
