"""Precision of the known divergences of the normalization and tracing family: each trait
holds on its witness and not on a nearby case without the bug's shape, where a planted bug
with the claimed symptom stays a failure."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.fx
from _known_traits import (
    LIKE_ENTRY,
    assert_unclaimed_failure,
    factory,
    miscompile_module,
    plant,
    raising,
    run,
    swap_first_add_or_sub,
    trait_holds,
    witness_trait_holds,
)

from conform import known
from conform.witnesses.normalize import _ShapeGate
from generators.sources import Built

# --- nearby cases ------------------------------------------------------------------------------


class KeywordFreeOperators(torch.nn.Module):
    def forward(self, x, y):
        return torch.sub(x, y) * torch.add(x, y, alpha=1)


def keyword_free_operators() -> Built:
    return Built(KeywordFreeOperators(), (torch.randn(3, 4), torch.randn(3, 4)))


class KeywordAndSub(torch.nn.Module):
    def forward(self, x, y):
        return torch.add(x, y, alpha=2) * torch.sub(x, y)


def keyword_and_sub() -> Built:
    return Built(KeywordAndSub(), (torch.randn(3, 4), torch.randn(3, 4)))


class PositionalAdd(torch.nn.Module):
    def forward(self, x, y):
        return torch.add(x, y) - 1


def positional_add() -> Built:
    return Built(PositionalAdd(), (torch.randn(2, 3), torch.randn(2, 3)))


class LayerNamedNonzero(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.nonzero = torch.nn.Linear(4, 2)

    def forward(self, x):
        return self.nonzero(x) + 1


def layer_named_nonzero() -> Built:
    return Built(LayerNamedNonzero(), (torch.randn(3, 4),))


class SizeOfDimOne(torch.nn.Module):
    def forward(self, x):
        return x.reshape(x.size(1), -1) + 1


def size_of_dim_one() -> Built:
    return Built(SizeOfDimOne(), (torch.randn(2, 3, 4),))


class ShapeAfterLayerNorm(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.norm = torch.nn.LayerNorm(5)
        self.gate = _ShapeGate()

    def forward(self, x):
        return self.gate(self.norm(x))


def shape_after_layer_norm() -> Built:
    return Built(ShapeAfterLayerNorm(), (torch.randn(3, 5),), leaf_modules=(_ShapeGate,))


class CheckingParent(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.child = torch.nn.Identity()

    def forward(self, x):
        assert self.training in (True, False)
        return self.child(x) * 2


def checking_parent() -> Built:
    return Built(CheckingParent(), (torch.randn(2, 3),))


class ProtectedScale(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self._scale = 2.0

    def forward(self, x):
        assert self._scale > 0
        return x * self._scale


def protected_scale() -> Built:
    return Built(ProtectedScale(), (torch.randn(2, 3),))


class PlainLocal(torch.nn.Module):
    def forward(self, x):
        y = x * 2
        assert self.training in (True, False)
        return y + 1


def plain_local() -> Built:
    return Built(PlainLocal(), (torch.randn(2, 3),))


class InstanceFactor(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.factor = 3

    def forward(self, x):
        assert self.factor > 0
        return x * self.factor


def instance_factor() -> Built:
    return Built(InstanceFactor(), (torch.randn(2, 3),))


OFFSET = 0.5


class GlobalOffset(torch.nn.Module):
    def forward(self, x):
        assert OFFSET > 0
        return x + OFFSET


def global_offset() -> Built:
    return Built(GlobalOffset(), (torch.randn(2, 3),))


class ExplicitSuper(torch.nn.Linear):
    def forward(self, x):
        assert self.in_features == 3
        return super(ExplicitSuper, self).forward(x)  # noqa: UP008 - the explicit form is the point


def explicit_super() -> Built:
    return Built(ExplicitSuper(3, 2), (torch.randn(4, 3),))


class Unannotated(torch.nn.Module):
    def forward(self, x, scale=2.0):
        assert self.training in (True, False)
        return x * scale


def unannotated() -> Built:
    return Built(Unannotated(), (torch.randn(2, 3),))


def _here(builder: str):
    return factory(__name__, builder)


# --- planted bugs ------------------------------------------------------------------------------


def _reference_transformer_miscompiles(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    import reference.normalize as module

    original = getattr(module, name)

    class Planted(original):  # type: ignore[misc, valid-type]
        def transform(self) -> torch.fx.GraphModule:
            return miscompile_module(super().transform())

    plant(monkeypatch, "reference.normalize", name, Planted)


def _names_self_input(module_path: str) -> Callable[[pytest.MonkeyPatch], None]:
    """The implementation passes the first aten call's arguments by keyword with 'self'
    renamed to 'input', whatever normalize_to_only_use_kwargs says."""

    def planting(monkeypatch: pytest.MonkeyPatch) -> None:
        import importlib

        original = importlib.import_module(module_path).NormalizeArgs

        class Planted(original):  # type: ignore[misc, valid-type]
            def transform(self) -> torch.fx.GraphModule:
                result = super().transform()
                for node in result.graph.nodes:
                    if not isinstance(node.target, torch._ops.OpOverload):
                        continue
                    given = dict(zip(("self", "other"), node.args)) | dict(node.kwargs)
                    node.args = ()
                    node.kwargs = {("input" if k == "self" else k): v for k, v in given.items()}
                    result.recompile()
                    break
                return result

        plant(monkeypatch, module_path, "NormalizeArgs", Planted)

    return planting


def _reference_types_layer(monkeypatch: pytest.MonkeyPatch) -> None:
    """The reference types the call of the layer named 'nonzero' as int."""
    from reference.normalize import NormalizeArgs

    class Planted(NormalizeArgs):
        def transform(self) -> torch.fx.GraphModule:
            result = super().transform()
            for node in result.graph.nodes:
                if node.op == "call_module":
                    node.type = int
            return result

    plant(monkeypatch, "reference.normalize", "NormalizeArgs", Planted)


def _reference_meta_tracer_miscompiles(monkeypatch: pytest.MonkeyPatch) -> None:
    from reference.meta_tracer import MetaTracer

    class Planted(MetaTracer):
        def trace(self, *args: Any, **kwargs: Any) -> torch.fx.Graph:
            graph = super().trace(*args, **kwargs)
            swap_first_add_or_sub(graph)
            return graph

    plant(monkeypatch, "reference.meta_tracer", "MetaTracer", Planted)


def _upstream_raises(module: str, name: str, error: BaseException) -> Callable[[pytest.MonkeyPatch], None]:
    return lambda monkeypatch: plant(monkeypatch, module, name, raising(error))


def _types_differ_by_side(monkeypatch: pytest.MonkeyPatch) -> None:
    """Upstream records the placeholders' types as classes, the reference as strings."""
    import torch.fx.experimental.rewriter as upstream

    import reference.rewriter

    def typing(tracer_class: type, kind: Any) -> type:
        class Planted(tracer_class):  # type: ignore[misc, valid-type]
            def trace(self, *args: Any, **kwargs: Any) -> torch.fx.Graph:
                graph = super().trace(*args, **kwargs)
                for node in graph.nodes:
                    if node.op == "placeholder":
                        node.type = kind
                return graph

        return Planted

    monkeypatch.setattr(upstream, "RewritingTracer", typing(upstream.RewritingTracer, torch.Tensor))
    monkeypatch.setattr(reference.rewriter, "RewritingTracer", typing(reference.rewriter.RewritingTracer,
                                                                       "torch.Tensor"))


_REWRITER = "torch.fx.experimental.rewriter"
_TRACE_ERROR = torch.fx.proxy.TraceError("symbolically traced variables cannot be used as inputs to control flow")

# entry -> (transform, nearby case, params, planting, text of the claimed symptom it gives)
NEARBY: dict[str, tuple[str, Any, dict[str, Any], Callable[[pytest.MonkeyPatch], None], str | None]] = {
    # torch.sub/add without keywords away from their neutral value
    "normalize-operators-drops-keywords": (
        "normalize_operators", _here("keyword_free_operators"), {},
        lambda mp: _reference_transformer_miscompiles(mp, "NormalizeOperators"),
        "transformed modules compute different outputs"),
    # the aten call keeps its positional arguments
    "normalize-args-self-parameter-name": (
        "normalize_args", factory("conform.witnesses.normalize", "aten_overload_call_case"),
        {"normalize_to_only_use_kwargs": False}, _names_self_input("torch.fx.experimental.normalize"), None),
    "normalize-args-typed-self-parameter-name": (
        "normalize_args_typed", factory("conform.witnesses.normalize", "aten_overload_call_case"),
        {"normalize_to_only_use_kwargs": False}, _names_self_input("torch.fx.experimental.normalize"), None),
    # a layer named 'nonzero' rather than a torch.nonzero call
    "normalize-args-hand-written-signatures": (
        "normalize_args", _here("layer_named_nonzero"), {"normalize_to_only_use_kwargs": True},
        _reference_types_layer, None),
    "normalize-args-typed-hand-written-signatures": (
        "normalize_args_typed", _here("layer_named_nonzero"), {"normalize_to_only_use_kwargs": True},
        _reference_types_layer, None),
    # positional tensors into a tensor-valued call
    "normalize-args-argument-types": (
        "normalize_args_typed", _here("positional_add"), {"normalize_to_only_use_kwargs": True},
        lambda mp: _reference_transformer_miscompiles(mp, "NormalizeArgs"),
        "transformed modules compute different outputs"),
    # size(1), which upstream answers right
    "meta-trace-size-of-dim-zero": (
        "meta_trace", _here("size_of_dim_one"), {}, _reference_meta_tracer_miscompiles,
        "transformed modules compute different outputs"),
    # a LayerNorm, whose metadata upstream computes without calling it
    "meta-trace-leaf-module-state": (
        "meta_trace", _here("shape_after_layer_norm"), {},
        _upstream_raises("torch.fx.experimental.meta_tracer", "MetaTracer", _TRACE_ERROR), "TraceError"),
    # the assert is in the root
    "rewrite-submodule-asserts": (
        "rewrite", _here("checking_parent"), {}, _upstream_raises(_REWRITER, "RewritingTracer", _TRACE_ERROR),
        "TraceError"),
    # a protected (single underscore) attribute, which Python does not mangle
    "rewrite-private-names": (
        "rewrite", _here("protected_scale"), {},
        _upstream_raises(_REWRITER, "RewritingTracer",
                         AttributeError("'RewrittenModule' object has no attribute '__scale'")), None),
    # a plain assignment
    "rewrite-annotated-assignments": (
        "rewrite", _here("plain_local"), {},
        _upstream_raises(_REWRITER, "RewritingTracer", NameError("name 'annotate' is not defined")), None),
    # an instance attribute
    "rewrite-class-attributes-lost": (
        "rewrite", _here("instance_factor"), {},
        _upstream_raises(_REWRITER, "RewritingTracer",
                         AttributeError("'RewrittenModule' object has no attribute 'factor'")), None),
    # a module-level global instead of a closure variable
    "rewrite-closure-variables": (
        "rewrite", _here("global_offset"), {},
        _upstream_raises(_REWRITER, "RewritingTracer", NameError("name 'offset' is not defined")), None),
    # super() with explicit arguments
    "rewrite-zero-argument-super": (
        "rewrite", _here("explicit_super"), {},
        _upstream_raises(_REWRITER, "RewritingTracer", RuntimeError("super(): __class__ cell not found")), None),
    # a forward defined in its class
    "rewrite-function-name-already-global": (
        "rewrite", _here("plain_local"), {},
        _upstream_raises(_REWRITER, "RewritingTracer", AssertionError("Expected 1 new key, got 0")), None),
    # a forward without annotations
    "rewrite-postponed-annotations": ("rewrite", _here("unannotated"), {}, _types_differ_by_side, None),
}

FAMILY = ("normalize_operators", "normalize_args", "normalize_args_typed", "meta_trace", "rewrite")
ENTRIES = sorted(NEARBY)


def test_every_entry_has_a_trait_and_a_nearby_case() -> None:
    ids = {e.id for e in known.KNOWN if e.transform in FAMILY}
    assert ids == set(NEARBY)
    assert all(known.by_id()[i].match.case for i in ids)


@pytest.mark.parametrize("entry_id", ENTRIES)
def test_trait_holds_on_the_witness(entry_id: str) -> None:
    assert witness_trait_holds(entry_id)


@pytest.mark.parametrize("entry_id", ENTRIES)
def test_trait_does_not_hold_on_a_nearby_case(entry_id: str) -> None:
    _, case, params, _, _ = NEARBY[entry_id]
    assert not trait_holds(entry_id, case, params)


@pytest.mark.parametrize("entry_id", ENTRIES)
def test_planted_bug_on_a_nearby_case_stays_a_failure(entry_id: str, monkeypatch: pytest.MonkeyPatch) -> None:
    transform, case, params, planting, symptom_text = NEARBY[entry_id]
    planting(monkeypatch)
    outcomes = run(case, transform, params)
    assert_unclaimed_failure(outcomes, entry_id, message=symptom_text or LIKE_ENTRY)


def test_sub_spelled_as_add_is_not_claimed_next_to_a_keyword_call(monkeypatch: pytest.MonkeyPatch) -> None:
    # the case has the bug's shape (torch.add with alpha=2), and the reference also respells
    # torch.sub as '+': the reference's own eager mismatch stays a failure
    import reference.normalize

    remap = dict(reference.normalize.NormalizeOperators.binary_magic_method_remap)
    remap[torch.sub] = remap[torch.add]
    monkeypatch.setattr(reference.normalize.NormalizeOperators, "binary_magic_method_remap", remap)
    outcomes = run(_here("keyword_and_sub"), "normalize_operators", {})
    own = [o for o in outcomes if o.symptom and o.symptom.value == "eager-mismatch" and "reference" in o.message]
    assert own and all(o.verdict.value == "fail" for o in own), [o.describe() for o in outcomes]
    assert all(o.notes.get("traits") for o in outcomes)


def test_super_with_arguments_is_a_lost_class() -> None:
    # super(Class, self) needs self to be an instance of the class, which upstream's
    # RewrittenModule is not: the class-attribute entry claims it, the __class__-cell one not
    outcomes = run(_here("explicit_super"), "rewrite", {})
    assert [o.known_id for o in outcomes] == ["rewrite-class-attributes-lost"], [o.describe() for o in outcomes]


_GENERATED_SOURCE = '''
class Generated(torch.nn.Module):
    def forward(self, x, alpha: float = 0.5):
        assert self.training in (True, False)
        return x * alpha
'''


def generated_with_inherited_future() -> Built:
    # compile() called from this module inherits its 'from __future__ import annotations', as
    # the random source's generated modules do
    import linecache

    filename = "<fx-conform test: generated forward>"
    linecache.cache[filename] = (len(_GENERATED_SOURCE), None, _GENERATED_SOURCE.splitlines(True), filename)
    namespace: dict[str, Any] = {"torch": torch}
    exec(compile(_GENERATED_SOURCE, filename, "exec"), namespace)
    return Built(namespace["Generated"](), (torch.randn(2, 3),))


def test_postponed_annotations_inherited_by_compile_are_claimed() -> None:
    case = _here("generated_with_inherited_future")
    assert trait_holds("rewrite-postponed-annotations", case, {})
    outcomes = run(case, "rewrite", {})
    assert [o.known_id for o in outcomes] == ["rewrite-postponed-annotations"], [o.describe() for o in outcomes]


def test_reference_renaming_self_is_not_claimed_on_the_witness(monkeypatch: pytest.MonkeyPatch) -> None:
    # the witness has the bug's shape; a reference that repeats upstream's renaming crashes
    # when its module runs, and that crash is the reference's own failure
    _names_self_input("reference.normalize")(monkeypatch)
    witness = known.load_witness(known.by_id()["normalize-args-self-parameter-name"])
    outcomes = run(witness.case, "normalize_args", witness.params)
    own = [o for o in outcomes if "module reference produced raises" in o.message]
    assert own and all(o.verdict.value == "fail" for o in own), [o.describe() for o in outcomes]


class FlaggedPrivateScale(torch.nn.Module):
    """A ``flag`` argument the case fixes by concrete args, and a private attribute upstream's
    rewriter loses."""

    def __init__(self) -> None:
        super().__init__()
        self.__scale = 2.0

    def forward(self, x, flag=True):
        if flag:
            x = x + 1.0
        return x * self.__scale


def flagged_private_scale() -> Built:
    return Built(FlaggedPrivateScale(), (torch.randn(2, 3),), concrete_args={"flag": True})


def test_rewrite_traces_with_the_case_concrete_args() -> None:
    # with the flag fixed both sides get past `if flag:`, so upstream's own failure shows
    # (and is claimed) instead of both sides raising TraceError on the flag
    outcomes = run(factory(__name__, "flagged_private_scale"), "rewrite", {})
    assert [o.known_id for o in outcomes] == ["rewrite-private-names"], [o.describe() for o in outcomes]
