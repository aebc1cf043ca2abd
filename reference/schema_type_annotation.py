"""Give graph nodes the return types their callees declare.

Reference counterpart of ``torch.fx.experimental.schema_type_annotation``.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
import torch.fx
from torch._jit_internal import boolean_dispatched
from torch.fx import GraphModule, Transformer
from torch.fx.node import Argument, Target
from torch.fx.proxy import Proxy

from reference.operator_schemas import _torchscript_type_to_python_type

__all__ = ["AnnotateTypesWithSchema"]


def _declared_return(fn: Any) -> Any | None:
    """``fn``'s return annotation, or None when it has none or no inspectable signature."""
    try:
        annotation = inspect.signature(fn).return_annotation
    except (TypeError, ValueError):
        return None
    return None if annotation is inspect.Signature.empty else annotation


def _is_standard_module(module: torch.nn.Module) -> bool:
    cls = type(module)
    return getattr(torch.nn, getattr(cls, "__name__", ""), None) == cls


class AnnotateTypesWithSchema(Transformer):
    """Copy a graph, setting ``node.type`` from the signature of what each node calls.

    Three kinds of node are annotated, each switchable:

    1. calls of ``torch.nn.functional`` functions, with the function's return annotation
       (a boolean-dispatched functional only when both branches return the same type);
    2. calls of standard ``torch.nn`` modules, with the return annotation of ``forward``;
    3. ``get_attr`` nodes, with the TorchScript-inferred type of the attribute's value.

    A type already present on a node produced by the copy is kept.

    Example::

        m = torchvision.models.resnet18()
        traced = torch.fx.symbolic_trace(m)
        traced = AnnotateTypesWithSchema(traced).transform()

    Args:
        module (GraphModule): the graph module to annotate.
        annotate_functionals (bool): annotate ``torch.nn.functional`` calls.
        annotate_modules (bool): annotate standard module calls.
        annotate_get_attrs (bool): annotate attribute fetches.
    """

    def __init__(self, module: GraphModule, annotate_functionals: bool = True, annotate_modules: bool = True,
                 annotate_get_attrs: bool = True) -> None:
        super().__init__(module)
        # which node kinds to annotate
        self.annotate_get_attrs = annotate_get_attrs
        self.annotate_modules = annotate_modules
        self.annotate_functionals = annotate_functionals

    def transform(self) -> GraphModule:
        """Build the annotated copy.

        Returns:
            GraphModule: a new graph module over the same submodules and attributes.
        """
        result = super().transform()
        result.graph.lint()
        return result

    @staticmethod
    def _with_type(proxy: Proxy, python_type: Any) -> Proxy:
        node = proxy.node
        if python_type is not None and not node.type:
            node.type = python_type
        return proxy

    def call_function(self, target: Target, args: tuple[Argument, ...], kwargs: dict[str, Any]) -> Proxy:
        declared = None
        if self.annotate_functionals and getattr(target, "__module__", None) == "torch.nn.functional":
            analysed = target
            if target in boolean_dispatched:
                # Which branch runs depends on a runtime flag; only a return type both
                # branches share is known statically.
                branches = boolean_dispatched[target]
                true_type = inspect.signature(branches["if_true"]).return_annotation
                false_type = inspect.signature(branches["if_false"]).return_annotation
                analysed = branches["if_true"] if true_type == false_type else None
            if analysed is not None:
                declared = self._extract_python_return_type(analysed)
        return self._with_type(super().call_function(target, args, kwargs), declared)

    def call_module(self, target: Target, args: tuple[Argument, ...], kwargs: dict[str, Any]) -> Proxy:
        if not isinstance(target, str):
            raise AssertionError(f"call_module target must be a qualified name, got {type(target)}")
        declared = None
        submodule = self.fetch_attr(target)
        if self.annotate_modules and _is_standard_module(submodule):
            declared = self._extract_python_return_type(submodule.forward)
        return self._with_type(super().call_module(target, args, kwargs), declared)

    def get_attr(self, target: Target, args: tuple[Argument, ...], kwargs: dict[str, Any]) -> Proxy:
        proxy = super().get_attr(target, args, kwargs)
        if not self.annotate_get_attrs:
            return proxy
        if not isinstance(target, str):
            raise AssertionError(f"get_attr target must be a qualified name, got {type(target)}")
        value: Any = self.module
        atoms = target.split(".")
        for depth, atom in enumerate(atoms):
            if not hasattr(value, atom):
                raise RuntimeError(f"Node referenced nonextent target {'.'.join(atoms[:depth])}!")
            value = getattr(value, atom)
        inferred = torch._C._jit_try_infer_type(value)
        if inferred.success():
            self._with_type(proxy, _torchscript_type_to_python_type(inferred.type()))
        return proxy

    def _extract_python_return_type(self, target: Target) -> Any | None:
        """The return annotation of a callable, or None when it declares none.

        Args:
            target (Callable): the function or bound ``forward`` to inspect.

        Returns:
            Optional[Any]: the annotation.
        """
        if not callable(target):
            raise AssertionError(f"expected a callable, got {type(target)}")
        return _declared_return(target)
