"""Witnesses of the known divergences in the normalization and tracing family.

Each ``*_case`` builder returns a :class:`~generators.sources.Built`; each witness function
returns the :class:`~conform.known.Witness` that replays it.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.fx

from conform.case import Case
from conform.known import Witness
from generators.sources import Built


def _witness(builder: str, **params: Any) -> Witness:
    return Witness(case=Case(source="factory", spec={"factory": f"{__name__}:{builder}"}), params=params)


# -- NormalizeOperators ----------------------------------------------------------------------


class _OperatorsWithKeywords(torch.nn.Module):
    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.add(x, y, alpha=2) - torch.div(x, y, rounding_mode="floor")


def operators_with_keywords_case() -> Built:
    return Built(_OperatorsWithKeywords(), (torch.randn(3, 4), torch.rand(3, 4) + 0.5))


def operators_with_keywords() -> Witness:
    """``torch.add(x, y, alpha=2)`` and ``torch.div(x, y, rounding_mode="floor")``."""
    return _witness("operators_with_keywords_case")


# -- NormalizeArgs ---------------------------------------------------------------------------


class _AtenOverloadCall(torch.nn.Module):
    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.ops.aten.add.Tensor(x, y) * 2


def aten_overload_call_case() -> Built:
    return Built(_AtenOverloadCall(), (torch.randn(3), torch.randn(3)))


def aten_overload_call() -> Witness:
    """A graph calling ``torch.ops.aten.add.Tensor``, normalized to keywords only."""
    return _witness("aten_overload_call_case", normalize_to_only_use_kwargs=True)


class _NonzeroCall(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nonzero(x)


def nonzero_call_case() -> Built:
    return Built(_NonzeroCall(), (torch.tensor([0.0, 1.5, 0.0, -2.0]),))


def nonzero_call() -> Witness:
    """``torch.nonzero(x)``, whose signatures are written by hand, not taken from schemas."""
    return _witness("nonzero_call_case", normalize_to_only_use_kwargs=True)


class _KeywordNodeCall(torch.nn.Module):
    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.add(x, other=y)


def keyword_node_call_case() -> Built:
    return Built(_KeywordNodeCall(), (torch.randn(2, 3), torch.randn(2, 3)))


def keyword_node_call() -> Witness:
    """``torch.add(x, other=y)``: an overloaded operator given a node by keyword."""
    return _witness("keyword_node_call_case", normalize_to_only_use_kwargs=True)


# -- meta tracer -----------------------------------------------------------------------------


class _SizeOfDimZero(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.size(0), -1) * 2


def size_of_dim_zero_case() -> Built:
    return Built(_SizeOfDimZero(), (torch.randn(2, 3, 4),))


def size_of_dim_zero() -> Witness:
    """``x.size(0)`` on an input with metadata."""
    return _witness("size_of_dim_zero_case")


class _ShapeGate(torch.nn.Module):
    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if h.shape[-1] == 5:
            return torch.relu(h)
        return h


class _ShapeAfterLinear(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 5)
        self.gate = _ShapeGate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gate(self.linear(x))


def shape_after_linear_case() -> Built:
    # The gate is a leaf for plain symbolic_trace (which cannot follow its branch); the meta
    # tracer follows it, using the metadata of the Linear layer's output.
    return Built(_ShapeAfterLinear(), (torch.randn(3, 4),), leaf_modules=(_ShapeGate,))


def shape_after_linear() -> Witness:
    """Control flow on the shape of a Linear leaf module's output."""
    return _witness("shape_after_linear_case")


# -- RewritingTracer -------------------------------------------------------------------------


class _CheckedChild(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.dim() == 2, "child expects a matrix"
        return x * 2


class _ParentOfChecked(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.child = _CheckedChild()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.child(x) + 1


def assert_in_submodule_case() -> Built:
    # The child is a leaf for plain symbolic_trace, which cannot follow its assert.
    return Built(_ParentOfChecked(), (torch.randn(2, 3),), leaf_modules=(_CheckedChild,))


def assert_in_submodule() -> Witness:
    """An ``assert`` on a traced value in a submodule's forward."""
    return _witness("assert_in_submodule_case")


# The remaining rewriter witnesses assert on module state, which plain symbolic_trace can
# evaluate too, so the engine can prepare them; upstream fails while rewriting.


class _CheckedWithHelper(torch.nn.Module):
    factor = 3

    def scale(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert self.factor > 0
        return self.scale(x)


def assert_with_helper_case() -> Built:
    return Built(_CheckedWithHelper(), (torch.randn(2, 3),))


def assert_with_helper() -> Witness:
    """A forward with an ``assert`` that calls another method of its module."""
    return _witness("assert_with_helper_case")


def _closure_module(offset: float) -> torch.nn.Module:
    class _ClosureChecked(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            assert offset > 0, "offset must be positive"
            return x + offset

    return _ClosureChecked()


def assert_with_closure_case() -> Built:
    return Built(_closure_module(0.5), (torch.randn(2, 3),))


def assert_with_closure() -> Witness:
    """A forward with an ``assert`` that reads a variable of an enclosing function."""
    return _witness("assert_with_closure_case")


class _CheckedLinear(torch.nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert self.in_features == 3, "wrong width"
        return super().forward(x)


def assert_with_super_case() -> Built:
    return Built(_CheckedLinear(3, 2), (torch.randn(4, 3),))


def assert_with_super() -> Witness:
    """A forward with an ``assert`` that calls ``super().forward``."""
    return _witness("assert_with_super_case")


class _AnnotatedForward(torch.nn.Module):
    def forward(self, x: torch.Tensor, scale: float = 2.0) -> torch.Tensor:
        assert self.training in (True, False)
        return x * scale


def annotated_forward_case() -> Built:
    return Built(_AnnotatedForward(), (torch.randn(2, 3),))


def annotated_forward() -> Witness:
    """An annotated forward with an ``assert``, in a module with postponed annotations."""
    return _witness("annotated_forward_case")


class _PrivateScale(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.__scale = 2.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert self.__scale > 0
        return x * self.__scale


def private_attribute_case() -> Built:
    return Built(_PrivateScale(), (torch.randn(2, 3),))


def private_attribute() -> Witness:
    """A forward with an ``assert`` reading a class-private attribute (``self.__scale``)."""
    return _witness("private_attribute_case")


class _AnnotatedLocal(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y: torch.Tensor = x * 2
        assert self.training in (True, False)
        return y + 1


def annotated_local_case() -> Built:
    return Built(_AnnotatedLocal(), (torch.randn(2, 3),))


def annotated_local() -> Witness:
    """A forward with an annotated assignment (``y: torch.Tensor = x * 2``)."""
    return _witness("annotated_local_case")


def _checked_double(self: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    assert not isinstance(self, torch.fx.GraphModule)
    return x * 2


class _SharedForward(torch.nn.Module):
    forward = _checked_double


def shared_forward_case() -> Built:
    return Built(_SharedForward(), (torch.randn(2, 3),))


def shared_forward() -> Witness:
    """A forward defined as a module-level function (its name is already a global)."""
    return _witness("shared_forward_case")
