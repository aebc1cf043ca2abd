"""The sides a transform is applied with: upstream torch.fx and ``reference/``, or a user's pass.

Upstream and reference are addressed by the same module basename (``split_module``,
``normalize``, ...), so a registry row or a test names a transform once and gets either
implementation. A row whose target lies in any other module (``"mypkg.passes:fold"``, a
user's own pass with no reference twin) has a single side, ``user``, which resolves the
target's module by its full import path.

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
#: The one side of a row whose target is not a reimplemented module: a user's pass.
USER = "user"
SIDES = (*IMPLEMENTATIONS, USER)


def is_reimplemented(target: str) -> bool:
    """Whether ``"module:attr"`` names one of the reimplemented modules by basename (and so
    has an upstream and a reference side) rather than a module of its own."""
    return target.partition(":")[0] in UPSTREAM_MODULES


class Implementation:
    """One side of the comparison; attribute access loads a module by basename."""

    def __init__(self, name: str) -> None:
        if name not in SIDES:
            raise unknown("implementation", name, SIDES)
        self.name = name

    def module_path(self, basename: str) -> str:
        """The module to import: by basename for upstream and reference, the name as it is
        (a full import path) for the ``user`` side."""
        if self.name == USER:
            return basename
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
