"""Matching call sites against operator signatures, for the normalization passes.

Reference counterpart of ``torch.fx.operator_schemas``. A torch operator (``torch.add``, an
``OpOverload`` or ``OpOverloadPacket``) is described by one TorchScript schema per overload;
those schemas are turned into :class:`inspect.Signature` objects here, and a call site's
``args``/``kwargs`` are bound against them to produce a canonical
:class:`ArgsKwargsPair`: every parameter present, in declaration order, defaults filled in.
Python callables (``torch.nn.functional`` and user functions) and standard ``torch.nn``
modules are normalized against their Python signatures.
"""

from __future__ import annotations

import inspect
import numbers
import types
import typing
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from torch._jit_internal import boolean_dispatched
from torch._ops import OpOverload, OpOverloadPacket

from reference._signatures import (
    bind,
    binds,
    keep_layout,
    schema_signature,
    torchscript_type_to_python_type,
)

if TYPE_CHECKING:
    from torch.fx.node import Argument

__all__ = ["ArgsKwargsPair", "create_type_hint", "type_matches", "get_signature_for_torch_op",
           "normalize_function", "normalize_module", "check_for_mutable_operation"]

_Param = inspect.Parameter
_POS_ONLY = _Param.POSITIONAL_ONLY
_POS_OR_KW = _Param.POSITIONAL_OR_KEYWORD
_KW_ONLY = _Param.KEYWORD_ONLY
_EMPTY = _Param.empty


class ArgsKwargsPair(NamedTuple):
    """The positional and keyword arguments of one normalized call."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]


def _torchscript_type_to_python_type(ts_type: torch._C.JitType) -> Any:
    """The Python type a TorchScript type stands for (``List[int]`` -> ``typing.List[int]``,
    ``Tensor`` -> ``torch.Tensor``, ``Scalar`` -> ``numbers.Number``, ...).

    Args:
        ts_type (torch._C.JitType): a type taken from a schema argument or return.

    Returns:
        Any: the equivalent Python type or typing construct.
    """
    return torchscript_type_to_python_type(ts_type)


# ---------------------------------------------------------------------------------------------
# Operator signatures
# ---------------------------------------------------------------------------------------------


def _nonzero_signatures() -> list[inspect.Signature]:
    # ``torch.nonzero``'s ``as_tuple`` flag is handled by the Python binding and has no
    # schema, so its two call forms are spelled out by hand.
    tensor = _Param("input", _POS_OR_KW, annotation=torch.Tensor)
    as_tuple = _Param("as_tuple", _KW_ONLY, annotation=bool)
    return [inspect.Signature([tensor]), inspect.Signature([tensor, as_tuple])]


# Operators whose schemas do not describe their Python call forms.
_HAND_WRITTEN_SIGNATURES: dict[Callable[..., Any], list[inspect.Signature]] = {
    torch.nonzero: _nonzero_signatures(),
}
for _signatures in _HAND_WRITTEN_SIGNATURES.values():
    for _sig in _signatures:
        keep_layout(_sig)

# Keyed by identity: distinct builtins can compare equal (``torch.dsmm == torch.mm``) yet
# resolve to different schemas. The operator is kept in the value so its id stays unique.
_schemas_by_builtin: dict[int, tuple[Any, list[torch._C.FunctionSchema] | None]] = {}


def _schemas_of(op: Callable[..., Any]) -> list[torch._C.FunctionSchema] | None:
    if isinstance(op, OpOverload):
        return [op._schema]
    if isinstance(op, OpOverloadPacket):
        return [getattr(op, name)._schema for name in op.overloads()]
    cached = _schemas_by_builtin.get(id(op))
    if cached is not None and cached[0] is op:
        return cached[1]
    aten_name = torch.jit._builtins._find_builtin(op)
    schemas = None if aten_name is None else torch._C._jit_get_schemas_for_operator(aten_name)
    _schemas_by_builtin[id(op)] = (op, schemas)
    return schemas


_SignaturesAndSchemas = tuple[list[inspect.Signature] | None, list[torch._C.FunctionSchema] | None]


@typing.overload
def get_signature_for_torch_op(op: Callable[..., Any], return_schemas: typing.Literal[True]) -> _SignaturesAndSchemas: ...


@typing.overload
def get_signature_for_torch_op(op: Callable[..., Any], return_schemas: typing.Literal[False] = ...
                               ) -> list[inspect.Signature] | None: ...


def get_signature_for_torch_op(
    op: Callable[..., Any], return_schemas: bool = False
) -> list[inspect.Signature] | _SignaturesAndSchemas | None:
    """The signatures of every overload of a torch operator.

    Args:
        op (Callable): ``torch.add``-style builtin, an ``OpOverload`` or an
            ``OpOverloadPacket``.
        return_schemas (bool): also return the TorchScript schemas the signatures were made
            from.

    Returns:
        The list of :class:`inspect.Signature` (None when ``op`` has no known schema); with
        ``return_schemas``, a pair ``(signatures, schemas)``. Operators whose signatures are
        written by hand (``torch.nonzero``) have no schemas, so the second item is None.
    """
    hand_written = None
    try:
        hand_written = _HAND_WRITTEN_SIGNATURES.get(op)
    except TypeError:
        pass
    if hand_written:
        return (list(hand_written), None) if return_schemas else list(hand_written)

    schemas = _schemas_of(op)
    if schemas is None:
        return (None, None) if return_schemas else None
    binding_names = not isinstance(op, (OpOverload, OpOverloadPacket))
    signatures = [schema_signature(s, binding_names) for s in schemas]
    return (signatures, list(schemas)) if return_schemas else signatures


# The one schema family allowed to keep its positional-only parameters (``from`` is a Python
# keyword, see _signature_from_schema); calls to it may still be normalized.
_POSITIONAL_ONLY_EXCEPTIONS = (("input", "from", "to", "generator"), ("self", "from", "to", "generator"))


def _normalize_against(
    sig: inspect.Signature,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    normalize_to_only_use_kwargs: bool,
) -> ArgsKwargsPair | None:
    """Bind a call to ``sig`` and lay it out canonically, or None if ``sig`` uses parameter
    kinds that cannot be expressed as plain ``(args, kwargs)`` by name."""
    plain = all(p.kind is _POS_OR_KW or p.kind is _KW_ONLY for p in sig.parameters.values())
    if not plain and tuple(sig.parameters) not in _POSITIONAL_ONLY_EXCEPTIONS:
        return None

    bound = bind(sig, tuple(args), kwargs)
    n_positional = 0 if normalize_to_only_use_kwargs else len(args)
    new_args: list[Any] = []
    new_kwargs: dict[str, Any] = {}
    for i, (name, p) in enumerate(sig.parameters.items()):
        value = bound[name] if name in bound else p.default
        if i < n_positional:
            new_args.append(value)
        else:
            new_kwargs[name] = value
    return ArgsKwargsPair(tuple(new_args), new_kwargs)


# ---------------------------------------------------------------------------------------------
# Types
# ---------------------------------------------------------------------------------------------


def create_type_hint(x: object) -> object:
    """A type hint for a list or tuple of argument types.

    ``[Tensor, Parameter]`` becomes ``list[Tensor]`` (the common base class of the elements),
    a tuple becomes ``tuple[base, ...]``, and elements without a common base give
    ``list[Any]`` / ``tuple[Any, ...]``. Anything else is returned unchanged.

    Args:
        x (object): a type, or a list/tuple of types.

    Returns:
        object: the hint.
    """
    if not isinstance(x, (list, tuple)):
        return x

    def wrap(element: Any) -> Any:
        return list[element] if isinstance(x, list) else tuple[element, ...]

    try:
        if not x:
            return wrap(Any)
        base = x[0]
        for t in x:
            if issubclass(t, base):
                continue
            if issubclass(base, t):
                base = t
                continue
            return wrap(Any)
        return wrap(base)
    except Exception:
        # Elements that are not classes (None for an untyped node, a typing construct).
        warnings.warn(f"We were not able to successfully create type hint from the type {x}", stacklevel=2)
        return x


def _is_union(t: Any) -> bool:
    # ``typing.Union``/``Optional`` as schemas spell them. PEP 604 unions (``int | None``)
    # are left to the class check below (they match nothing), as upstream does.
    return getattr(t, "__origin__", None) is typing.Union


def _list_accepts(element: Any, argument_type: Any) -> bool:
    """Whether a ``List[element]`` parameter accepts a value of ``argument_type``."""
    if element is int and argument_type is int:
        return True  # a single int broadcasts to an int list (``kernel_size=3``)
    if not inspect.isclass(element):
        warnings.warn(
            f"Does not support nested parametric types, got List[{element}]. Please file a bug.",
            stacklevel=3,
        )
        return False
    origin = typing.get_origin(argument_type)
    if origin is list:
        return issubclass(typing.get_args(argument_type)[0], element)
    if origin is tuple:
        contained = typing.get_args(argument_type)
        if contained == ((),):  # Tuple[()]
            return True
        return all(c is Ellipsis or issubclass(c, element) for c in contained)
    return False


def type_matches(signature_type: Any, argument_type: Any) -> bool:
    """Whether a value of ``argument_type`` may be passed to a parameter annotated
    ``signature_type``.

    ``typing.Union`` and ``Optional`` accept any member; ``List[T]``
    accepts ``list[S]`` and homogeneous ``tuple[S, ...]`` for subclasses ``S`` of ``T`` and a
    bare int for ``List[int]``; an int parameter accepts a ``torch.dtype`` and
    ``numbers.Number`` accepts int and float; otherwise subclassing decides (a Parameter is a
    Tensor).

    Args:
        signature_type (Any): the parameter's annotation.
        argument_type (Any): the type of the value passed.

    Returns:
        bool: True when the value fits.
    """
    if signature_type is argument_type:
        return True
    if _is_union(signature_type):
        if signature_type == argument_type:
            return True
        return any(type_matches(member, argument_type) for member in typing.get_args(signature_type))
    if getattr(signature_type, "__origin__", None) is list:
        return _list_accepts(typing.get_args(signature_type)[0], argument_type)
    if signature_type is int and argument_type is torch.dtype:
        return True  # schemas spell ScalarType as int
    if signature_type is numbers.Number and argument_type in (int, float):
        return True
    if inspect.isclass(signature_type) and inspect.isclass(argument_type):
        return issubclass(argument_type, signature_type)
    return False


def _types_fit(sig: inspect.Signature, arg_types: tuple[Any, ...], kwarg_types: dict[str, Any]) -> bool:
    try:
        bound = bind(sig, arg_types, kwarg_types)
    except TypeError:
        return False
    params = sig.parameters
    return all(type_matches(params[name].annotation, t) for name, t in bound.items())


# ---------------------------------------------------------------------------------------------
# Normalization entry points
# ---------------------------------------------------------------------------------------------


def _has_schemas(target: Any) -> bool:
    return isinstance(target, (types.BuiltinFunctionType, OpOverload, OpOverloadPacket))


def _normalize_python_callable(
    target: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    normalize_to_only_use_kwargs: bool,
) -> ArgsKwargsPair | None:
    analysed = target
    if target in boolean_dispatched:
        # A boolean-dispatched functional (max_pool2d's return_indices) has two
        # implementations; its call site can only be normalized when they take the same
        # parameters.
        branches = boolean_dispatched[target]
        if inspect.signature(branches["if_true"]).parameters != inspect.signature(branches["if_false"]).parameters:
            return None
        analysed = branches["if_true"]
    if not callable(analysed):
        raise AssertionError(f"cannot normalize a call to non-callable {analysed!r}")
    sig = inspect.signature(inspect.unwrap(analysed))
    return _normalize_against(sig, args, kwargs, normalize_to_only_use_kwargs)


# Which overloads accept a call depends only on the number of positional arguments and the
# keyword names, and which overload the types select only on the types: both are memoized per
# operator (operators are long-lived, so keying by identity is safe; the operator is kept in
# the value to rule out a reused id).
_candidates_memo: dict[tuple[Any, ...], tuple[Any, list[inspect.Signature]]] = {}
_choice_memo: dict[tuple[Any, ...], tuple[Any, inspect.Signature | None]] = {}


def _candidates(target: Any, signatures: list[inspect.Signature], args: tuple[Any, ...],
                kwargs: dict[str, Any]) -> list[inspect.Signature]:
    key = (id(target), len(args), frozenset(kwargs))
    memo = _candidates_memo.get(key)
    if memo is not None and memo[0] is target:
        return memo[1]
    found = [sig for sig in signatures if binds(sig, args, kwargs)]
    _candidates_memo[key] = (target, found)
    return found


def _choose_by_types(target: Any, signatures: list[inspect.Signature], arg_types: tuple[Any, ...],
                     kwarg_types: dict[str, Any]) -> inspect.Signature | None:
    """The first overload, in schema order (the order the dispatcher tries them), whose
    parameter types accept the argument types."""
    try:
        key: tuple[Any, ...] | None = (id(target), arg_types, tuple(kwarg_types.items()))
        memo = _choice_memo.get(key)  # type: ignore[arg-type]
    except TypeError:  # an unhashable type (a list returned by create_type_hint)
        key, memo = None, None
    if memo is not None and memo[0] is target:
        return memo[1]
    chosen = next((sig for sig in signatures if _types_fit(sig, arg_types, kwarg_types)), None)
    if key is not None:
        _choice_memo[key] = (target, chosen)
    return chosen


def _normalize_schema_op(
    target: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    arg_types: tuple[Any, ...] | None,
    kwarg_types: dict[str, Any] | None,
    normalize_to_only_use_kwargs: bool,
) -> ArgsKwargsPair | None:
    signatures = get_signature_for_torch_op(target)
    if not signatures:
        return None
    candidates = _candidates(target, signatures, args, kwargs)
    if not candidates:
        return None
    if len(candidates) == 1:
        return _normalize_against(candidates[0], args, kwargs, normalize_to_only_use_kwargs)

    if arg_types is None and kwarg_types is None:
        listing = "\n".join(str(sig) for sig in candidates)
        raise RuntimeError(
            f"Tried to normalize arguments to {torch.typename(target)} but the schema match "
            f"was ambiguous! Please provide argument types to the normalize_arguments() call. "
            f"Available schemas:\n{listing}"
        )
    chosen = _choose_by_types(target, signatures, tuple(arg_types or ()), dict(kwarg_types or {}))
    if chosen is None:
        return None
    return _normalize_against(chosen, args, kwargs, normalize_to_only_use_kwargs)


def normalize_function(
    target: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any] | None = None,
    arg_types: tuple[Any] | None = None, kwarg_types: dict[str, Any] | None = None,
    normalize_to_only_use_kwargs: bool = False,
) -> ArgsKwargsPair | None:
    """Match a function call to its target's signature and lay it out canonically.

    Every parameter of the matched signature appears in the result, in declaration order,
    with defaults filled in: the first ``len(args)`` as positional arguments and the rest as
    keyword arguments, or all as keyword arguments when ``normalize_to_only_use_kwargs``.
    Torch operators are matched against their schemas; when several overloads accept the
    call, ``arg_types``/``kwarg_types`` pick one. Signatures with ``*args``/``**kwargs`` or
    positional-only parameters are not normalized, nor are ``nn.Module`` calls (see
    :func:`normalize_module`).

    Args:
        target (Callable): the function called.
        args (Tuple[Any]): positional arguments of the call.
        kwargs (Optional[Dict[str, Any]]): keyword arguments of the call.
        arg_types (Optional[Tuple[Any]]): the types of ``args``, to resolve overloads.
        kwarg_types (Optional[Dict[str, Any]]): the types of ``kwargs``.
        normalize_to_only_use_kwargs (bool): put every argument in the kwargs.

    Returns:
        Optional[ArgsKwargsPair]: the normalized call, or None when it cannot be normalized.

    Raises:
        RuntimeError: several overloads accept the call and no types were given.
    """
    kwargs = {} if kwargs is None else kwargs
    if not _has_schemas(target) and hasattr(target, "_op"):
        # Wrappers around an OpOverload (ExecuTorch's edge ops) carry it as ``_op``.
        target = target._op
    if _has_schemas(target):
        if not callable(target):
            raise AssertionError(f"cannot normalize a call to non-callable {target!r}")
        return _normalize_schema_op(
            target, args, kwargs, arg_types, kwarg_types, normalize_to_only_use_kwargs
        )
    return _normalize_python_callable(target, args, kwargs, normalize_to_only_use_kwargs)


def _normalize_function_or_error(
    target: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any] | None = None,
    arg_types: tuple[Any] | None = None, kwarg_types: dict[str, Any] | None = None,
    normalize_to_only_use_kwargs: bool = False,
) -> ArgsKwargsPair:
    """:func:`normalize_function` that raises RuntimeError instead of returning None."""
    result = normalize_function(target, args, kwargs, arg_types, kwarg_types, normalize_to_only_use_kwargs)
    if result is None:
        raise RuntimeError(f"Failed to normalize function {target} with args {args} and kwargs {kwargs}")
    return result


def normalize_module(
    root: torch.nn.Module, target: str, args: tuple[Any], kwargs: dict[str, Any] | None = None,
    normalize_to_only_use_kwargs: bool = False,
) -> ArgsKwargsPair | None:
    """Match a call of a standard ``torch.nn`` module to its ``forward`` signature.

    Laid out like :func:`normalize_function`. Only modules whose class is the ``torch.nn``
    class of the same name are normalized; subclasses and user modules give None.

    Args:
        root (nn.Module): the module that owns the called submodule.
        target (str): the submodule's qualified name in ``root``.
        args (Tuple[Any]): positional arguments of the call.
        kwargs (Optional[Dict[str, Any]]): keyword arguments of the call.
        normalize_to_only_use_kwargs (bool): put every argument in the kwargs.

    Returns:
        Optional[ArgsKwargsPair]: the normalized call, or None.

    Raises:
        RuntimeError: ``root`` has no submodule ``target``.
    """
    try:
        submodule = root.get_submodule(target)
    except AttributeError as e:
        raise RuntimeError(
            f"Tried to normalize node with target {target} but root did not have that target!"
        ) from e
    cls = type(submodule)
    if getattr(torch.nn, getattr(cls, "__name__", ""), None) != cls:
        return None
    sig = inspect.signature(inspect.unwrap(submodule.forward))
    return _normalize_against(sig, args, {} if kwargs is None else kwargs, normalize_to_only_use_kwargs)


def check_for_mutable_operation(
    target: Callable[..., Any],
    args: tuple[Argument, ...],
    kwargs: dict[str, Argument],
) -> None:
    """Raise when a call unambiguously resolves to an overload that mutates its operands.

    FX graphs are meant to be functional; a call that binds to exactly one schema, and that
    schema writes to an input (an ``out=`` variant, an in-place op), is rejected. Calls that
    bind to no schema or to several are let through: the check is best effort.

    Args:
        target (Callable): the function called.
        args (Tuple[Argument]): positional arguments of the call.
        kwargs (Dict[str, Argument]): keyword arguments of the call.

    Raises:
        RuntimeError: the call resolves to a mutable schema.
    """
    signatures, schemas = get_signature_for_torch_op(target, return_schemas=True)
    if not signatures or not schemas:
        return
    matching = [schema for sig, schema in zip(signatures, schemas) if binds(sig, args, kwargs)]
    if len(matching) == 1 and matching[0].is_mutable:
        raise RuntimeError(
            f"Tried to trace mutable operation {matching[0]}. FX only supports functional "
            f"code, so operations that mutate operands in-place (e.g. via `out` arguments) "
            f"are not supported"
        )
