"""Schema signatures and fast argument binding, shared by ``reference.operator_schemas``.

TorchScript schemas become :class:`inspect.Signature` objects here (cached per overload),
and each signature gets a :class:`Layout` that binds a call without building
``inspect.BoundArguments``: overload resolution binds every call site against every overload
of its operator, so this is the hot path of NormalizeArgs.
"""

from __future__ import annotations

import inspect
import numbers
import types
import typing
from enum import Enum
from typing import Any

import torch

_Param = inspect.Parameter
_POS_ONLY = _Param.POSITIONAL_ONLY
_POS_OR_KW = _Param.POSITIONAL_OR_KEYWORD
_KW_ONLY = _Param.KEYWORD_ONLY
_EMPTY = _Param.empty


# ---------------------------------------------------------------------------------------------
# TorchScript types -> Python types
# ---------------------------------------------------------------------------------------------


class _ScriptClassRoot:
    """Stands for the ``__torch__`` prefix of TorchScript class names: ``__torch__.torch.X``
    resolves through the real ``torch`` module, anything else is a lookup we cannot honour."""

    def __getattr__(self, name: str) -> types.ModuleType:
        if name != "torch":
            raise RuntimeError(f"cannot resolve TorchScript class prefix __torch__.{name}")
        return torch


# Names that occur in schema annotation strings. ``typing``'s names are visible too, since
# schema strings spell containers the typing way (``List[int]``, ``Optional[Tensor]``).
# Lookups fall through to builtins (int, float, bool, str, complex) when evaluated.
_SCRIPT_TYPE_NAMES: dict[str, Any] = {name: getattr(typing, name) for name in dir(typing)}
_SCRIPT_TYPE_NAMES.update(
    {
        "Tensor": torch.Tensor,
        "Device": torch.device,
        "Layout": torch.layout,
        "QScheme": torch.qscheme,
        "Storage": torch.UntypedStorage,
        "Future": torch.jit.Future,
        "number": numbers.Number,
        "NoneType": type(None),
        "AnyEnumType": Enum,
        "PyObject": Any,
        "t": typing.TypeVar("t"),
        "__torch__": _ScriptClassRoot(),
    }
)


def torchscript_type_to_python_type(ts_type: torch._C.JitType) -> Any:
    """The Python type a TorchScript type stands for (``List[int]`` -> ``typing.List[int]``,
    ``Tensor`` -> ``torch.Tensor``, ``Scalar`` -> ``numbers.Number``, ...).

    Args:
        ts_type (torch._C.JitType): a type taken from a schema argument or return.

    Returns:
        Any: the equivalent Python type or typing construct.
    """
    # The annotation string is the schema's own spelling of the type; evaluating it against
    # a namespace that maps each spelled name keeps nested containers exact for free.
    return eval(ts_type.annotation_str, dict(_SCRIPT_TYPE_NAMES))


def _schema_parameter(arg: torch._C.Argument, binding_names: bool) -> tuple[str, Any, Any, Any]:
    # Schemas call the receiver ``self``. The ``torch.*`` Python bindings expose a Tensor
    # ``self`` as ``input`` but keep a Scalar one as ``self`` (torch.pow(self=2, exponent=t)),
    # and ``torch.ops`` overloads keep ``self`` always. Using the name the callable really
    # accepts keeps keyword-only normalized calls callable.
    renamed = binding_names and arg.name == "self" and isinstance(arg.type, torch._C.TensorType)
    name = "input" if renamed else arg.name
    kind = _KW_ONLY if arg.kwarg_only else _POS_OR_KW
    default = arg.default_value if arg.has_default_value() else _EMPTY
    return name, kind, default, torchscript_type_to_python_type(arg.type)


def _signature_from_schema(schema: torch._C.FunctionSchema, binding_names: bool) -> inspect.Signature:
    rows = [_schema_parameter(arg, binding_names) for arg in schema.arguments]
    names = [row[0] for row in rows]
    # ``from`` cannot be a Python keyword argument, so it and everything before it become
    # positional-only (``random_(Tensor self, int from, int? to, ...)``).
    positional_until = names.index("from") if "from" in names else -1
    params = []
    for i, (name, kind, default, annotation) in enumerate(rows):
        if i <= positional_until:
            if kind is not _POS_OR_KW:
                raise AssertionError(f"parameter {name!r} of {schema.name} precedes 'from' but is keyword-only")
            kind = _POS_ONLY
        params.append(_Param(name, kind, default=default, annotation=annotation))

    returns = [torchscript_type_to_python_type(r.type) for r in schema.returns]
    if not returns:
        result: Any = None
    elif len(returns) == 1:
        result = returns[0]
    else:
        result = tuple.__class_getitem__(tuple(returns))
    return inspect.Signature(params, return_annotation=result)


_signature_by_schema: dict[tuple[str, str, bool], inspect.Signature] = {}


def schema_signature(schema: torch._C.FunctionSchema, binding_names: bool = True) -> inspect.Signature:
    key = (schema.name, schema.overload_name, binding_names)
    sig = _signature_by_schema.get(key)
    if sig is None:
        sig = _signature_by_schema[key] = keep_layout(_signature_from_schema(schema, binding_names))
    return sig


# ---------------------------------------------------------------------------------------------
# Binding
# ---------------------------------------------------------------------------------------------


class Layout:
    """What binding needs to know about a signature, computed once: which parameters take
    positional arguments, which take keywords, which are required."""

    __slots__ = ("sig", "varargs", "positional", "keywords", "required")

    def __init__(self, sig: inspect.Signature) -> None:
        self.sig = sig
        params = list(sig.parameters.values())
        self.varargs = any(p.kind in (_Param.VAR_POSITIONAL, _Param.VAR_KEYWORD) for p in params)
        self.positional = tuple(p.name for p in params if p.kind in (_POS_ONLY, _POS_OR_KW))
        self.keywords = frozenset(p.name for p in params if p.kind in (_POS_OR_KW, _KW_ONLY))
        self.required = frozenset(p.name for p in params if p.default is _EMPTY)

    def accepts(self, n_args: int, keywords: Any) -> bool:
        """Whether a call with ``n_args`` positional arguments and these keyword names binds
        (binding depends on nothing else)."""
        if n_args > len(self.positional) or not self.keywords.issuperset(keywords):
            return False
        filled = self.positional[:n_args]
        if any(name in keywords for name in filled):
            return False  # one parameter given twice
        return all(name in keywords or name in filled for name in self.required)

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """``{name: value}`` for every parameter the call supplies (no defaults); TypeError
        when the call does not fit, as Python's own binding would raise."""
        if self.varargs:
            return dict(self.sig.bind(*args, **kwargs).arguments)
        if not self.accepts(len(args), kwargs):
            raise TypeError(f"arguments do not fit {self.sig}")
        bound = dict(zip(self.positional, args))
        bound.update(kwargs)
        return bound


# Layouts of the signatures kept for the process's lifetime (schema and hand-written ones), by
# identity.
_layouts: dict[int, Layout] = {}


def keep_layout(sig: inspect.Signature) -> inspect.Signature:
    """Compute and keep ``sig``'s layout (``sig`` must live as long as the process)."""
    _layouts[id(sig)] = Layout(sig)
    return sig


def layout_of(sig: inspect.Signature) -> Layout:
    """The kept layout of ``sig``, or a fresh one."""
    layout = _layouts.get(id(sig))
    if layout is not None and layout.sig is sig:
        return layout
    return Layout(sig)  # a signature made by the caller: not kept, its id may be reused


def bind(sig: inspect.Signature, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """Bind a call to ``sig`` (see :meth:`Layout.bind`)."""
    return layout_of(sig).bind(args, kwargs)


def binds(sig: inspect.Signature, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """Whether a call binds to ``sig``."""
    layout = layout_of(sig)
    if layout.varargs:
        try:
            layout.bind(args, kwargs)
        except TypeError:
            return False
        return True
    return layout.accepts(len(args), kwargs)
