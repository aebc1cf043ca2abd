"""The OpInfo and nn-module normalization sweeps: case loading and the checks each case runs.

``op_db`` and the nn-module test lists are imported lazily (``op_db`` takes seconds); the
sweep test modules parametrize over names only.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.fx
import torch.utils._pytree as pytree
from torch.fx.passes.shape_prop import ShapeProp

OP_NAMES_FILE = Path(__file__).with_name("op_db_names.txt")


def op_key(op: Any) -> str:
    """``name`` or ``name.variant`` (unique across op_db)."""
    return f"{op.name}.{op.variant_test_name}" if op.variant_test_name else op.name


def recorded_op_names() -> list[str]:
    """The op_db names the sweep parametrizes over (checked against op_db by a test)."""
    return OP_NAMES_FILE.read_text().split()


@functools.cache
def op_db_by_name() -> dict[str, Any]:
    from torch.testing._internal.common_methods_invocations import op_db

    return {op_key(op): op for op in op_db}


def sample_profile(names: list[str], profile: str, stride: int = 8) -> list[str]:
    """Every ``stride``-th name in the pr profile (a deterministic sample), all in nightly."""
    return list(names) if profile == "nightly" else list(names[::stride])


# -- values ----------------------------------------------------------------------------------


class NormalizationFailure(AssertionError):
    """A normalized call that is missing, left unnormalized, or computes something else."""


def clone(value: Any) -> Any:
    # deepcopy keeps views as views of a copied storage, so as_strided-style samples still
    # address the same memory layout
    return copy.deepcopy(value)


def seeded_call(fn: Callable[..., Any], args: Any, kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` on private copies of the inputs, with a fixed RNG seed (random
    ops draw the same numbers on every call)."""
    torch.manual_seed(0)
    return fn(*clone(args), **clone(kwargs))


def assert_same(actual: Any, expected: Any, *, meta_only: bool = False) -> None:
    if meta_only:
        actual, expected = (pytree.tree_map(_meta_of, v) for v in (actual, expected))
        if actual != expected:
            raise NormalizationFailure(f"the normalized call computes {actual}, expected {expected}")
        return
    try:
        torch.testing.assert_close(actual, expected, equal_nan=True, check_stride=False)
    except AssertionError as exc:
        raise NormalizationFailure(f"the normalized call computes something else: {exc}") from None


def _meta_of(value: Any) -> Any:
    return (tuple(value.shape), str(value.dtype)) if isinstance(value, torch.Tensor) else value


def script_type(value: Any) -> Any:
    """The type the OpInfo normalization test gives an argument: a tensor's class, else
    TorchScript's inferred type of the value as a Python type."""
    if isinstance(value, torch.Tensor):
        return type(value)
    from torch.fx.operator_schemas import _torchscript_type_to_python_type

    inferred = torch._C._jit_try_infer_type(value)
    if not inferred.success():
        return type(value)
    return _torchscript_type_to_python_type(inferred.type())


# -- the FX half -----------------------------------------------------------------------------


def graph_calling(target: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
                  ) -> tuple[torch.fx.GraphModule, list[torch.Tensor]]:
    """A GraphModule whose forward calls ``target`` once, every tensor of the call an input."""
    graph = torch.fx.Graph()
    inputs: list[torch.Tensor] = []

    def lift(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            inputs.append(value)
            return graph.placeholder(f"t{len(inputs) - 1}")
        return value

    lifted_args, lifted_kwargs = pytree.tree_map(lift, (tuple(args), dict(kwargs)))
    graph.output(graph.call_function(target, tuple(lifted_args), dict(lifted_kwargs)))
    return torch.fx.GraphModule(torch.nn.Module(), graph), inputs


def normalize_graph(impl: Any, gm: torch.fx.GraphModule, inputs: list[torch.Tensor]) -> torch.fx.GraphModule:
    """ShapeProp (for overload resolution), then the implementation's NormalizeArgs."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        ShapeProp(gm).propagate(*clone(inputs))
        return impl.normalize.NormalizeArgs(gm).transform()


@dataclasses.dataclass
class SweepResult:
    checked: int = 0
    eager_errors: list[str] = dataclasses.field(default_factory=list)
    fx_skipped: str | None = None


# Ops whose output is uninitialized memory: only shapes and dtypes can be compared.
UNINITIALIZED_OUTPUT = frozenset({"empty", "empty_like", "empty_strided", "empty_permuted", "new_empty",
                                  "new_empty_strided"})


def _nameable(target: Any) -> bool:
    """Whether generated FX code can refer to ``target`` (lambdas have no importable name)."""
    return getattr(target, "__name__", "") != "<lambda>"


def check_op(impl: Any, op: Any, max_samples: int | None) -> SweepResult:
    """Normalize the CPU float32 samples of ``op`` (up to ``max_samples``) with ``impl``: with
    ``normalize_function`` (argument types as the OpInfo normalization test gives them), and
    as a one-call FX graph through ShapeProp and NormalizeArgs; each normalized call must
    compute the op's own output. Samples the op itself rejects are counted, not checked.

    Raises:
        NormalizationFailure: a sample that does not normalize or computes something else.
    """
    result = SweepResult()
    meta_only = op.name in UNINITIALIZED_OUTPUT
    if not _nameable(op.op):
        result.fx_skipped = "op_db implements it as a lambda, which generated FX code cannot name"
    for sample in op.sample_inputs("cpu", torch.float32, requires_grad=False):
        if max_samples is not None and result.checked >= max_samples:
            break
        args, kwargs = (sample.input, *sample.args), dict(sample.kwargs)
        try:
            expected = seeded_call(op.op, args, kwargs)
        except Exception as exc:
            result.eager_errors.append(f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}")
            continue
        try:
            normalized = impl.operator_schemas.normalize_function(
                op.op, args, kwargs,
                tuple(script_type(a) for a in args), {k: script_type(v) for k, v in kwargs.items()},
            )
        except Exception as exc:
            raise NormalizationFailure(f"normalize_function raises {type(exc).__name__}: {exc}") from exc
        if normalized is None:
            raise NormalizationFailure("normalize_function returned None")
        assert_same(_normalized_call(op.op, normalized.args, normalized.kwargs), expected, meta_only=meta_only)

        if result.fx_skipped is None:
            gm, inputs = graph_calling(op.op, args, kwargs)
            try:
                normalized_gm = normalize_graph(impl, gm, inputs)
            except Exception as exc:
                raise NormalizationFailure(f"NormalizeArgs raises {type(exc).__name__}: {exc}") from exc
            call = result_call(normalized_gm)
            if call.args != ():
                raise NormalizationFailure(f"NormalizeArgs left the call as {call.format_node()}")
            assert_same(_normalized_call(normalized_gm, inputs, {}), expected, meta_only=meta_only)
        result.checked += 1
    return result


def _normalized_call(fn: Callable[..., Any], args: Any, kwargs: Any) -> Any:
    try:
        return seeded_call(fn, args, kwargs)
    except Exception as exc:
        raise NormalizationFailure(f"the normalized call raises {type(exc).__name__}: {exc}") from exc


def result_call(gm: torch.fx.GraphModule) -> torch.fx.Node:
    """The node whose value the graph returns (the op call; other call nodes may build
    constant arguments)."""
    output = next(n for n in reversed(gm.graph.nodes) if n.op == "output")
    return output.args[0]


# -- nn-module tests -------------------------------------------------------------------------


def module_test_name(params: dict[str, Any]) -> str:
    if "fullname" in params:
        return params["fullname"]
    name = params.get("module_name", "module")
    return f"{name}_{params['desc']}" if params.get("desc") else name


@functools.cache
def module_tests_by_name() -> dict[str, dict[str, Any]]:
    from torch.testing._internal.common_nn import get_new_module_tests, module_tests

    named: dict[str, dict[str, Any]] = {}
    for params in module_tests + get_new_module_tests():
        name = module_test_name(params)
        suffix = 1
        while name in named:  # a few entries share a name; keep every one
            suffix += 1
            name = f"{module_test_name(params)}#{suffix}"
        named[name] = params
    return named


def build_module_test(params: dict[str, Any]) -> tuple[torch.nn.Module, tuple[Any, ...]]:
    constructor = params.get("constructor") or getattr(torch.nn, params["module_name"])
    module = constructor(*params.get("constructor_args", ()))
    if "input_fn" in params:
        inputs = params["input_fn"]()
    elif "input" in params:
        inputs = params["input"]
    else:
        inputs = torch.randn(params["input_size"])
    if not isinstance(inputs, (tuple, list)):
        inputs = (inputs,)
    return module, tuple(inputs)


class ModuleCall(torch.nn.Module):
    """Calls one module with every input positionally, so the module is a leaf call site."""

    def __init__(self, mod: torch.nn.Module) -> None:
        super().__init__()
        self.mod = mod

    def forward(self, *inputs: Any) -> Any:
        return self.mod(*inputs)


def module_call_graph(mod: torch.nn.Module, n_inputs: int) -> torch.fx.GraphModule:
    """A traced wrapper whose graph is ``placeholders -> call_module mod -> output``."""
    graph = torch.fx.Graph()
    placeholders = [graph.placeholder(f"v{i}") for i in range(n_inputs)]
    graph.output(graph.call_module("mod", tuple(placeholders)))
    return torch.fx.GraphModule(ModuleCall(mod), graph)


def is_standard_module(mod: torch.nn.Module) -> bool:
    cls = type(mod)
    return getattr(torch.nn, cls.__name__, None) is cls


# Modules that draw random numbers in a way the seed does not pin down across the call
# forms: compared by shape and dtype only.
STOCHASTIC_MODULES = frozenset({"FractionalMaxPool2d", "FractionalMaxPool3d", "RReLU"})


def check_module(impl: Any, params: dict[str, Any]) -> None:
    """Normalize the call of one nn-module test's module with ``impl``: ``normalize_module``
    on the call site (the call rewritten to the normalized arguments must compute the same),
    then NormalizeArgs on the traced call (every argument by keyword, same outputs).

    Raises:
        NormalizationFailure: the call does not normalize or computes something else.
    """
    mod, inputs = build_module_test(params)
    meta_only = type(mod).__name__ in STOCHASTIC_MODULES
    expected = seeded_call(mod, inputs, {})

    gm = module_call_graph(mod, len(inputs))
    call = result_call(gm)
    normalized = impl.operator_schemas.normalize_module(gm, call.target, call.args, call.kwargs)
    if normalized is None:
        raise NormalizationFailure("normalize_module returned None")
    call.args, call.kwargs = normalized.args, normalized.kwargs
    gm.recompile()
    assert_same(seeded_call(gm, inputs, {}), expected, meta_only=meta_only)

    try:
        normalized_gm = impl.normalize.NormalizeArgs(module_call_graph(mod, len(inputs))).transform()
    except Exception as exc:
        raise NormalizationFailure(f"NormalizeArgs raises {type(exc).__name__}: {exc}") from exc
    call = result_call(normalized_gm)
    if call.args != ():
        raise NormalizationFailure(f"NormalizeArgs left the call as {call.format_node()}")
    assert_same(seeded_call(normalized_gm, inputs, {}), expected, meta_only=meta_only)


def check_module_left_alone(impl: Any, params: dict[str, Any]) -> None:
    """A module whose class is not a ``torch.nn`` class is not normalized: normalize_module
    gives None and NormalizeArgs keeps the call (and its outputs) as they were."""
    mod, inputs = build_module_test(params)
    gm = module_call_graph(mod, len(inputs))
    call = result_call(gm)
    assert impl.operator_schemas.normalize_module(gm, call.target, call.args, call.kwargs) is None
    normalized_gm = impl.normalize.NormalizeArgs(module_call_graph(mod, len(inputs))).transform()
    kept = result_call(normalized_gm)
    assert (repr(kept.args), kept.kwargs) == (repr(call.args), call.kwargs)
    expected = seeded_call(mod, inputs, {})
    assert_same(seeded_call(normalized_gm, inputs, {}), expected,
                meta_only=type(mod).__name__ in STOCHASTIC_MODULES)
