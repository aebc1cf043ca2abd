"""The two implementations every transform has: upstream torch.fx and ``reference/``.

Both are addressed by the same module basename (``split_module``, ``normalize``, ...), so a
registry row or a test names a transform once and gets either implementation.

Example::

    >>> impl = implementation("reference")
    >>> impl.split_module.split_module  # reference.split_module.split_module
"""

from __future__ import annotations

import importlib
from types import ModuleType

from conform.errors import unknown

#: Where each reimplemented module lives upstream, by basename.
UPSTREAM_MODULES: dict[str, str] = {
    "split_module": "torch.fx.passes.split_module",
    "shape_prop": "torch.fx.passes.shape_prop",
    "graph_manipulation": "torch.fx.passes.graph_manipulation",
    "param_fetch": "torch.fx.passes.param_fetch",
    "annotate_getitem_nodes": "torch.fx.passes.annotate_getitem_nodes",
    "accelerator_partitioner": "torch.fx.experimental.accelerator_partitioner",
    "partitioner_utils": "torch.fx.experimental.partitioner_utils",
    "normalize": "torch.fx.experimental.normalize",
    "operator_schemas": "torch.fx.operator_schemas",
    "schema_type_annotation": "torch.fx.experimental.schema_type_annotation",
    "rewriter": "torch.fx.experimental.rewriter",
    "meta_tracer": "torch.fx.experimental.meta_tracer",
    "optimization": "torch.fx.experimental.optimization",
    "merge_matmul": "torch.fx.experimental.merge_matmul",
    "validator": "torch.fx.experimental.validator",
}

IMPLEMENTATIONS = ("upstream", "reference")


class Implementation:
    """One side of the comparison; attribute access loads a module by basename."""

    def __init__(self, name: str) -> None:
        if name not in IMPLEMENTATIONS:
            raise unknown("implementation", name, IMPLEMENTATIONS)
        self.name = name

    def module_path(self, basename: str) -> str:
        if basename not in UPSTREAM_MODULES:
            raise unknown("module", basename, UPSTREAM_MODULES)
        if self.name == "upstream":
            return UPSTREAM_MODULES[basename]
        return f"reference.{basename}"

    def module(self, basename: str) -> ModuleType:
        return importlib.import_module(self.module_path(basename))

    def resolve(self, target: str) -> object:
        """Resolve ``"basename:attr.path"`` against this implementation."""
        basename, _, attrs = target.partition(":")
        obj: object = self.module(basename)
        for attr in attrs.split(".") if attrs else ():
            obj = getattr(obj, attr)
        return obj

    def __getattr__(self, basename: str) -> ModuleType:
        # unknown names are AttributeErrors, so hasattr() and introspection behave
        if basename.startswith("_") or basename not in UPSTREAM_MODULES:
            raise AttributeError(f"{self!r} has no module {basename!r} (valid: {', '.join(sorted(UPSTREAM_MODULES))})")
        return self.module(basename)

    def __repr__(self) -> str:
        return f"Implementation({self.name!r})"


def implementation(name: str) -> Implementation:
    return Implementation(name)
