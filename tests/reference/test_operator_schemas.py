"""operator_schemas: schema signatures, type matching, call normalization."""

from __future__ import annotations

import inspect
import numbers
import typing
import warnings
from typing import Any, Optional, Union

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from normalize_support import upstream_diverges

from conform.implementations import Implementation

UPSTREAM = Implementation("upstream")

PUBLIC = [
    "ArgsKwargsPair",
    "check_for_mutable_operation",
    "get_signature_for_torch_op",
    "create_type_hint",
    "type_matches",
    "normalize_function",
    "normalize_module",
    "_torchscript_type_to_python_type",
    "_normalize_function_or_error",
]


@pytest.mark.parametrize("name", PUBLIC)
def test_public_signature_matches_upstream(impl: Implementation, name: str) -> None:
    ours = getattr(impl.operator_schemas, name)
    theirs = getattr(UPSTREAM.operator_schemas, name)
    if name == "ArgsKwargsPair":
        assert ours._fields == theirs._fields
    else:
        assert list(inspect.signature(ours).parameters) == list(inspect.signature(theirs).parameters)


def test_args_kwargs_pair_is_a_named_pair(impl: Implementation) -> None:
    pair = impl.operator_schemas.ArgsKwargsPair((1,), {"a": 2})
    args, kwargs = pair
    assert pair.args == args == (1,) and pair.kwargs == kwargs == {"a": 2}


# -- TorchScript types -----------------------------------------------------------------------

_C = torch._C
SCRIPT_TYPES = [
    (_C.TensorType.get(), torch.Tensor),
    (_C.IntType.get(), int),
    (_C.FloatType.get(), float),
    (_C.BoolType.get(), bool),
    (_C.StringType.get(), str),
    (_C.NumberType.get(), numbers.Number),
    (_C.DeviceObjType.get(), torch.device),
    (_C.NoneType.get(), type(None)),
    (_C.ListType(_C.IntType.get()), typing.List[int]),  # noqa: UP006
    (_C.OptionalType(_C.FloatType.get()), Optional[float]),  # noqa: UP045
    (_C.TupleType([_C.TensorType.get(), _C.IntType.get()]), typing.Tuple[torch.Tensor, int]),  # noqa: UP006
    (_C.ListType(_C.OptionalType(_C.TensorType.get())), typing.List[Optional[torch.Tensor]]),  # noqa: UP006, UP045
    (_C.DictType(_C.StringType.get(), _C.TensorType.get()), typing.Dict[str, torch.Tensor]),  # noqa: UP006
]


@pytest.mark.parametrize(("script_type", "expected"), SCRIPT_TYPES, ids=[str(t) for t, _ in SCRIPT_TYPES])
def test_torchscript_type_to_python_type(impl: Implementation, script_type: Any, expected: Any) -> None:
    assert impl.operator_schemas._torchscript_type_to_python_type(script_type) == expected


# -- signatures ------------------------------------------------------------------------------


def test_signatures_of_a_builtin_op(impl: Implementation) -> None:
    sigs = impl.operator_schemas.get_signature_for_torch_op(torch.add)
    assert sigs is not None and len(sigs) >= 2
    first = sigs[0]
    assert list(first.parameters) == ["input", "other", "alpha"]
    assert first.parameters["input"].annotation is torch.Tensor
    assert first.parameters["alpha"].kind is inspect.Parameter.KEYWORD_ONLY
    assert first.parameters["alpha"].default == 1
    assert first.return_annotation is torch.Tensor
    scalar = sigs[1]
    assert scalar.parameters["other"].annotation is numbers.Number


def test_signatures_with_schemas(impl: Implementation) -> None:
    sigs, schemas = impl.operator_schemas.get_signature_for_torch_op(torch.mul, return_schemas=True)
    assert len(sigs) == len(schemas) > 1
    assert all(isinstance(s, torch._C.FunctionSchema) for s in schemas)
    assert [list(s.parameters)[:2] for s in sigs[:2]] == [["input", "other"], ["input", "other"]]


def test_signature_of_an_op_overload(impl: Implementation) -> None:
    (sig,) = impl.operator_schemas.get_signature_for_torch_op(torch.ops.aten.add.Tensor)
    assert list(sig.parameters)[1:] == ["other", "alpha"]


def test_signatures_of_an_op_overload_packet(impl: Implementation) -> None:
    sigs = impl.operator_schemas.get_signature_for_torch_op(torch.ops.aten.sum)
    assert len(sigs) == len(torch.ops.aten.sum.overloads())


def test_multiple_returns_are_a_tuple_type(impl: Implementation) -> None:
    sigs = impl.operator_schemas.get_signature_for_torch_op(torch.ops.aten.max.dim)
    assert sigs[0].return_annotation == tuple[torch.Tensor, torch.Tensor]


@pytest.mark.parametrize("target", [lambda x: x, torch.Tensor.add, len], ids=["lambda", "method", "len"])
def test_no_signature_for_non_ops(impl: Implementation, target: Any) -> None:
    assert impl.operator_schemas.get_signature_for_torch_op(target) is None
    assert impl.operator_schemas.get_signature_for_torch_op(target, return_schemas=True) == (None, None)


def test_aliased_builtins_keep_their_own_schemas(impl: Implementation) -> None:
    # torch.dsmm compares equal to torch.mm but has no schema of its own.
    impl.operator_schemas.get_signature_for_torch_op(torch.dsmm)
    assert impl.operator_schemas.get_signature_for_torch_op(torch.mm)


def test_hand_written_signatures(request: pytest.FixtureRequest, impl: Implementation) -> None:
    upstream_diverges(request, impl, "normalize-args-hand-written-signatures")
    sigs = impl.operator_schemas.get_signature_for_torch_op(torch.nonzero)
    assert sigs is not None and [list(s.parameters) for s in sigs] == [["input"], ["input", "as_tuple"]]


# -- types -----------------------------------------------------------------------------------

T = typing.TypeVar("T")
TYPE_MATCHES = [
    (torch.Tensor, torch.Tensor, True),
    (torch.Tensor, torch.nn.Parameter, True),
    (torch.nn.Parameter, torch.Tensor, False),
    (torch.Tensor, int, False),
    (int, bool, True),
    (float, int, False),
    (int, torch.dtype, True),
    (numbers.Number, int, True),
    (numbers.Number, float, True),
    (numbers.Number, bool, True),
    (numbers.Number, torch.Tensor, False),
    (Optional[int], int, True),  # noqa: UP045
    (Optional[int], type(None), True),  # noqa: UP045
    (Optional[int], str, False),  # noqa: UP045
    (Union[int, str], str, True),  # noqa: UP007
    (Union[int, str], Union[int, str], True),  # noqa: UP007
    (typing.List[int], int, True),  # noqa: UP006
    (typing.List[float], int, False),  # noqa: UP006
    (typing.List[int], list[int], True),  # noqa: UP006
    (typing.List[int], list[bool], True),  # noqa: UP006
    (list[torch.Tensor], list[torch.nn.Parameter], True),
    (typing.List[torch.Tensor], tuple[torch.Tensor, ...], True),  # noqa: UP006
    (typing.List[int], tuple[int, int], True),  # noqa: UP006
    (typing.List[int], tuple[int, str], False),  # noqa: UP006
    (typing.List[int], typing.Tuple[()], True),  # noqa: UP006
    (typing.List[int], torch.Tensor, False),  # noqa: UP006
    (typing.List[T], list[int], False),  # noqa: UP006
    (typing.Dict[str, int], dict, False),  # noqa: UP006
    (int | None, int, False),
]


@pytest.mark.parametrize(("signature_type", "argument_type", "expected"), TYPE_MATCHES,
                         ids=[f"{s}<-{a}" for s, a, _ in TYPE_MATCHES])
def test_type_matches(impl: Implementation, signature_type: Any, argument_type: Any, expected: bool) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert impl.operator_schemas.type_matches(signature_type, argument_type) is expected


def test_nested_parametric_list_warns(impl: Implementation) -> None:
    with pytest.warns(UserWarning, match="nested parametric"):
        impl.operator_schemas.type_matches(typing.List[T], list[int])  # noqa: UP006


CREATE_TYPE_HINT = [
    ([torch.Tensor, torch.nn.Parameter], list[torch.Tensor]),
    ([torch.nn.Parameter, torch.Tensor], list[torch.Tensor]),
    ((torch.Tensor, torch.Tensor), tuple[torch.Tensor, ...]),
    ([], list[Any]),
    ((), tuple[Any, ...]),
    ([int, str], list[Any]),
    (int, int),
    (None, None),
]


@pytest.mark.parametrize(("value", "expected"), CREATE_TYPE_HINT, ids=[str(v) for v, _ in CREATE_TYPE_HINT])
def test_create_type_hint(impl: Implementation, value: Any, expected: Any) -> None:
    assert impl.operator_schemas.create_type_hint(value) == expected


def test_create_type_hint_of_non_types_warns_and_returns_input(impl: Implementation) -> None:
    value = [None, torch.Tensor]
    with pytest.warns(UserWarning, match="type hint"):
        assert impl.operator_schemas.create_type_hint(value) is value


# -- normalize_function ----------------------------------------------------------------------


def test_normalize_python_function(impl: Implementation) -> None:
    x = torch.randn(3)
    result = impl.operator_schemas.normalize_function(torch.nn.functional.relu, (x,))
    assert result.args == (x,) and result.kwargs == {"inplace": False}
    result = impl.operator_schemas.normalize_function(
        torch.nn.functional.relu, (x,), normalize_to_only_use_kwargs=True
    )
    assert result.args == () and list(result.kwargs) == ["input", "inplace"]


def test_normalize_keeps_declaration_order(impl: Implementation) -> None:
    x = torch.randn(2, 3)
    result = impl.operator_schemas.normalize_function(
        torch.nn.functional.softmax, (x,), {"dtype": None, "dim": 1}, normalize_to_only_use_kwargs=True
    )
    assert list(result.kwargs) == ["input", "dim", "_stacklevel", "dtype"]


def test_normalize_python_function_rejects_bad_call(impl: Implementation) -> None:
    with pytest.raises(TypeError):
        impl.operator_schemas.normalize_function(torch.nn.functional.relu, (), {"nope": 1})


def test_varargs_functions_are_not_normalized(impl: Implementation) -> None:
    def f(*xs: Any) -> Any:
        return xs

    assert impl.operator_schemas.normalize_function(f, (1, 2)) is None


def _dispatched(with_indices: bool) -> Any:
    def plain(x: torch.Tensor, k: int, flag: bool = False) -> torch.Tensor:
        return x

    def indexed(x: torch.Tensor, k: int, flag: bool = False, extra: int = 0) -> torch.Tensor:
        return x

    return torch._jit_internal.boolean_dispatch(
        arg_name="flag", arg_index=2, default=False,
        if_true=indexed if with_indices else plain, if_false=plain,
        module_name=__name__, func_name="dispatched",
    )


def test_boolean_dispatch_with_different_parameters_is_not_normalized(impl: Implementation) -> None:
    x = torch.randn(3)
    assert impl.operator_schemas.normalize_function(_dispatched(True), (x, 2)) is None


def test_boolean_dispatch_with_same_parameters_is_normalized(impl: Implementation) -> None:
    x = torch.randn(1, 1, 4, 4)
    result = impl.operator_schemas.normalize_function(
        torch.nn.functional.max_pool2d, (x, 2), normalize_to_only_use_kwargs=True
    )
    assert result is not None
    assert list(result.kwargs) == ["input", "kernel_size", "stride", "padding", "dilation", "ceil_mode",
                                   "return_indices"]
    assert impl.operator_schemas.normalize_function(_dispatched(False), (x, 2)) == ((x, 2), {"flag": False})


def test_unambiguous_op(impl: Implementation) -> None:
    x = torch.randn(2, 3)
    result = impl.operator_schemas.normalize_function(torch.flatten, (x,), normalize_to_only_use_kwargs=True)
    assert result.args == () and result.kwargs == {"input": x, "start_dim": 0, "end_dim": -1}


def test_ambiguous_op_without_types_raises(impl: Implementation) -> None:
    x = torch.randn(3)
    with pytest.raises(RuntimeError, match="ambiguous"):
        impl.operator_schemas.normalize_function(torch.add, (x, x))


@pytest.mark.parametrize(
    ("arg_types", "expected_other"),
    [((torch.Tensor, torch.Tensor), torch.Tensor), ((torch.Tensor, float), numbers.Number)],
    ids=["tensor", "scalar"],
)
def test_overload_resolved_by_types(impl: Implementation, arg_types: tuple[Any, ...], expected_other: Any) -> None:
    x = torch.randn(3)
    result = impl.operator_schemas.normalize_function(
        torch.add, (x, 2.0), arg_types=arg_types, normalize_to_only_use_kwargs=True
    )
    assert result is not None and result.kwargs == {"input": x, "other": 2.0, "alpha": 1}


def test_no_overload_fits_the_types(impl: Implementation) -> None:
    x = torch.randn(3)
    result = impl.operator_schemas.normalize_function(torch.add, (x, x), arg_types=(str, str, str))
    assert result is None


def test_no_overload_fits_the_call(impl: Implementation) -> None:
    x = torch.randn(3)
    assert impl.operator_schemas.normalize_function(torch.flatten, (x, x, x, x, x)) is None


def test_op_with_kwargs_types(impl: Implementation) -> None:
    x = torch.randn(3)
    result = impl.operator_schemas.normalize_function(
        torch.add, (x,), {"other": x}, arg_types=(torch.Tensor,), kwarg_types={"other": torch.Tensor}
    )
    assert result is not None and result.args == (x,) and result.kwargs == {"other": x, "alpha": 1}


def test_wrapped_op_overload_is_unwrapped(impl: Implementation) -> None:
    class EdgeOp:
        def __init__(self, op: Any) -> None:
            self._op = op

        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return self._op(*args, **kwargs)

    x = torch.randn(3)
    result = impl.operator_schemas.normalize_function(EdgeOp(torch.ops.aten.sin.default), (x,))
    assert result == ((x,), {})
    result = impl.operator_schemas.normalize_function(EdgeOp(torch.ops.aten.sin.default), (x,))
    assert result == ((x,), {})


def test_op_overload_positional_layout(impl: Implementation) -> None:
    inp, template = torch.rand([1]), torch.rand([4])
    for target in (torch.ops.aten.resize_as_.default, torch.ops.aten.resize_as_):
        result = impl.operator_schemas.normalize_function(target, (inp,), {"the_template": template})
        assert result.args == (inp,)
        assert result.kwargs["the_template"] is template and result.kwargs["memory_format"] is None


def test_op_overload_keyword_call_is_callable(request: pytest.FixtureRequest, impl: Implementation) -> None:
    upstream_diverges(request, impl, "normalize-args-self-parameter-name")
    x, y = torch.randn(3), torch.randn(3)
    op = torch.ops.aten.add.Tensor
    result = impl.operator_schemas.normalize_function(op, (x, y), normalize_to_only_use_kwargs=True)
    torch.testing.assert_close(op(*result.args, **result.kwargs), x + y)


def test_random_from_keeps_positional_only_parameters_normalizable(impl: Implementation) -> None:
    x = torch.zeros(4)
    result = impl.operator_schemas.normalize_function(getattr(torch.ops.aten.random_, "from"), (x, 0, 10))
    assert result.args == (x, 0, 10) and result.kwargs == {"generator": None}


def test_normalize_function_or_error(impl: Implementation) -> None:
    x = torch.randn(3)
    assert impl.operator_schemas._normalize_function_or_error(torch.flatten, (x,)).args == (x,)
    with pytest.raises(RuntimeError, match="Failed to normalize"):
        impl.operator_schemas._normalize_function_or_error(torch.flatten, (x, x, x, x, x))


# target, positional arguments ("t" a tensor, "b" a mask), their parameter names, keywords
_CALLS = {
    "add": (torch.add, ("t", "t"), ("input", "other"), {"alpha": 2}),
    "sub": (torch.sub, ("t", 1.5), ("input", "other"), {}),
    "clamp": (torch.clamp, ("t",), ("input",), {"min": -0.5, "max": 0.5}),
    "sum": (torch.sum, ("t", 1), ("input", "dim"), {"keepdim": True}),
    "where": (torch.where, ("b", "t", "t"), ("condition", "input", "other"), {}),
    "cat": (torch.cat, (["t", "t"],), ("tensors",), {"dim": 1}),
    "softmax": (torch.softmax, ("t", -1), ("input", "dim"), {}),
    "mean": (torch.mean, ("t",), ("input",), {"dim": 0}),
    "lerp": (torch.lerp, ("t", "t", 0.3), ("input", "end", "weight"), {}),
    "transpose": (torch.transpose, ("t", 0, 1), ("input", "dim0", "dim1"), {}),
}


def _materialize(value: Any, x: torch.Tensor) -> Any:
    if isinstance(value, list):
        return [_materialize(v, x) for v in value]
    if value == "t":
        return x
    if value == "b":
        return x > 0
    return value


def _type_of(value: Any) -> Any:
    if isinstance(value, list):
        return list[type(value[0])]
    return type(value)


@pytest.mark.parametrize("op_name", sorted(_CALLS))
def test_normalized_call_computes_the_same(impl: Implementation, op_name: str) -> None:
    """Normalizing a call, whichever of its arguments were passed by keyword, never changes
    what it computes."""
    schemas = impl.operator_schemas
    target, spec, names, keywords = _CALLS[op_name]

    @settings(max_examples=12, deadline=None)
    @given(only_kwargs=st.booleans(), moved=st.integers(0, 2))
    def check(only_kwargs: bool, moved: int) -> None:
        x = torch.randn(3, 4)
        values = [_materialize(a, x) for a in spec]
        split = max(1, len(values) - moved)
        args = values[:split]
        kwargs = {**dict(zip(names[split:], values[split:])), **keywords}
        expected = target(*args, **kwargs)
        result = schemas.normalize_function(
            target, tuple(args), kwargs,
            arg_types=tuple(_type_of(a) for a in args),
            kwarg_types={k: _type_of(v) for k, v in kwargs.items()},
            normalize_to_only_use_kwargs=only_kwargs,
        )
        assert result is not None
        assert len(result.args) == (0 if only_kwargs else len(args))
        torch.testing.assert_close(target(*result.args, **result.kwargs), expected)

    check()


# -- normalize_module and mutation checks ----------------------------------------------------


class _Holder(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(3, 2)
        self.block = torch.nn.Sequential(torch.nn.Conv2d(1, 1, 3))
        self.custom = _Custom()


class _Custom(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def test_normalize_standard_module(impl: Implementation) -> None:
    x = torch.randn(2, 3)
    result = impl.operator_schemas.normalize_module(_Holder(), "linear", (x,), normalize_to_only_use_kwargs=True)
    assert result.args == () and result.kwargs == {"input": x}
    result = impl.operator_schemas.normalize_module(_Holder(), "block.0", (x,))
    assert result.args == (x,) and result.kwargs == {}


def test_user_module_is_not_normalized(impl: Implementation) -> None:
    assert impl.operator_schemas.normalize_module(_Holder(), "custom", (torch.randn(1),)) is None


def test_missing_submodule_raises(impl: Implementation) -> None:
    with pytest.raises(RuntimeError, match="did not have that target"):
        impl.operator_schemas.normalize_module(_Holder(), "nope", ())


def test_mutable_operation_is_rejected(impl: Implementation) -> None:
    x = torch.randn(3)
    with pytest.raises(RuntimeError, match="mutable operation"):
        impl.operator_schemas.check_for_mutable_operation(torch.sin, (x,), {"out": x})


@pytest.mark.parametrize(
    ("target", "args"),
    [(torch.add, ("x", "x")), (torch.relu, ("x",)), (torch.nonzero, ("x",)), (len, ("x",))],
    ids=["ambiguous", "functional", "hand-written", "no-schema"],
)
def test_functional_or_unknown_calls_pass_the_mutation_check(impl: Implementation, target: Any, args: tuple) -> None:
    x = torch.randn(3)
    impl.operator_schemas.check_for_mutable_operation(target, tuple(x for _ in args), {})


@pytest.mark.parametrize(
    ("target", "args"),
    [(torch.pow, (2, "t")), (torch.remainder, (2, "t")), (torch.xlogy, (2.0, "t"))],
    ids=["pow", "remainder", "xlogy"],
)
def test_scalar_self_keyword_call_is_callable(request: pytest.FixtureRequest, impl: Implementation,
                                              target: Any, args: tuple[Any, ...]) -> None:
    upstream_diverges(request, impl, "normalize-args-self-parameter-name")
    x = torch.rand(3) + 0.5
    call_args = tuple(x if a == "t" else a for a in args)
    result = impl.operator_schemas.normalize_function(
        target, call_args, arg_types=(type(args[0]), torch.Tensor), normalize_to_only_use_kwargs=True
    )
    assert result is not None and "self" in result.kwargs
    torch.testing.assert_close(target(**result.kwargs), target(*call_args))
