"""Known divergences of the normalizing passes: normalize_operators, normalize_args, normalize_args_typed, and the
tracers that rewrite or re-trace a module, meta_trace and rewrite (conform/traits/normalize.py,
conform/witnesses/normalize.py).

Entries keep the order in which :func:`conform.known.classify` tries them.
"""

from __future__ import annotations

from conform.known.core import ABSENT, APPLYING, Diff, Kind, KnownDivergence, Match
from conform.outcome import Stage, Symptom

# Traits and raw exception texts that several matchers of one entry share.
KEYWORDS = "conform.traits.normalize:binary_op_with_keywords"
SELF = "conform.traits.normalize:calls_with_self_parameter"
DIM_ZERO = "conform.traits.normalize:size_of_dim_zero"


KNOWN: tuple[KnownDivergence, ...] = (
    KnownDivergence(
        id="normalize-operators-drops-keywords",
        transform="normalize_operators",
        kind=Kind.UPSTREAM_BUG,
        reason=(
            "NormalizeOperators rewrites any torch.add/sub/mul/div/floor_divide/remainder/eq/... "
            "call with two positional operands to the operator.* spelling and drops its keyword "
            "arguments: torch.add(x, y, alpha=2) becomes x + y and torch.div(x, y, "
            "rounding_mode='floor') becomes x / y and torch.add(x, y, out=z) no longer writes z, a "
            "silent miscompile (also reported as an eager mismatch of upstream's module and an "
            "output divergence). The reference rewrites only calls whose keyword arguments are at "
            "their neutral value (alpha=1, rounding_mode=None)."
        ),
        # Only upstream's module can be wrong here: a reference miscompile on such a case still
        # fails as the reference's own eager mismatch.
        match=Match(case=KEYWORDS, symptom=Symptom.EAGER_MISMATCH, side="upstream")
              | Match(case=KEYWORDS, stage=Stage.COMPARE, symptom=Symptom.IMPL_DIVERGENCE, place="outputs")
              | Match(case=KEYWORDS, stage=Stage.COMPARE,
                      diffs=(Diff(r".*\]\.(alpha|rounding_mode|out)", left=ABSENT),))
              | Match(case=KEYWORDS, stage=Stage.COMPARE,
                      diffs=(Diff(".*", left=ABSENT,
                                  right=r"\['call_function', 'torch\.\w+', [^\n]*'(alpha|rounding_mode|out)'.*"),)),
        witness="conform.witnesses.normalize:operators_with_keywords",
        issue="unfiled",
    ),
    *(
        KnownDivergence(
            id=f"{transform.replace('_', '-')}-self-parameter-name",
            transform=transform,
            kind=Kind.UPSTREAM_BUG,
            reason=(
                "upstream renames every schema parameter called 'self' to 'input', but only the "
                "torch.* bindings' Tensor 'self' is called 'input': torch.ops overloads "
                "(OpOverload, OpOverloadPacket) and Scalar-'self' overloads (torch.pow(2, x), "
                "torch.remainder(2, x), torch.where(c, 2.0, x)) take 'self'. Normalized to keywords "
                "(NormalizeArgs' default) such a node becomes torch.ops.aten.add.Tensor(input=x, "
                "...) or torch.pow(input=2, ...), which raises when the module runs (an overload packet "
                "matches no schema); a call that passes self= by keyword binds to none of the renamed "
                "signatures and is left unnormalized. The reference keeps 'self' wherever the callable "
                "takes it."
            ),
            match=Match(case=SELF, stage=Stage.EXECUTE, symptom=Symptom.CRASH, side="upstream", place="upstream@.*",
                        error=r"\A[^\n]*(missing value for argument 'self'|received an invalid combination of "
                              r"arguments - got \([^)]*\binput=|Overloaded torch operator invoked from Python "
                              r"failed to match any schema)")
                  | Match(case=SELF, diffs=(Diff(r".*\]\.self", left=ABSENT),))
                  # self= passed by keyword binds to no renamed signature: upstream leaves the call
                  # as it was, the reference fills its defaults
                  | Match(case=SELF, stage=Stage.COMPARE, symptom=Symptom.IMPL_DIVERGENCE, place="fingerprint",
                          diffs=(Diff(r"fingerprint\.argument_typed_calls\.\w+\[\d+\]\.\w+", left=ABSENT),),
                          diffs_only=True),
            witness="conform.witnesses.normalize:aten_overload_call",
            issue="unfiled",
        )
        for transform in ("normalize_args", "normalize_args_typed")
    ),
    *(
        KnownDivergence(
            id=f"{transform.replace('_', '-')}-hand-written-signatures",
            transform=transform,
            kind=Kind.UPSTREAM_BUG,
            reason=(
                "get_signature_for_torch_op returns None instead of the hand-written signatures "
                "of an operator whose Python form has no schema (torch.nonzero's as_tuple) unless "
                "return_schemas=True, so upstream never normalizes torch.nonzero calls. The "
                "reference returns the hand-written signatures (with the parameter named 'input', "
                "as torch.nonzero accepts it)."
            ),
            match=Match(stage=Stage.COMPARE, symptom=Symptom.IMPL_DIVERGENCE,
                        case="conform.traits.normalize:calls_nonzero",
                        diffs=(Diff(r"fingerprint\.nodes\.nonzero(_\d+)?\[.*"),)),
            witness="conform.witnesses.normalize:nonzero_call",
            issue="unfiled",
        )
        for transform in ("normalize_args", "normalize_args_typed")
    ),
    KnownDivergence(
        id="normalize-args-argument-types",
        transform="normalize_args_typed",
        kind=Kind.UPSTREAM_BUG,
        reason=(
            "NormalizeArgs resolves overloads from argument types, but upstream types every "
            "positional node argument by the consuming node's own meta['type'] and every keyword "
            "argument by the class of its value in the new graph (torch.fx.Proxy for a node, "
            "tuple for stride=(2,)): a call with a node or a sequence by keyword "
            "(torch.add(x, other=y), conv2d(..., stride=(2, 2))) or a call whose result is not a "
            "tensor (torch.sort, torch.frexp, torch.var_mean, torch.max(x, 1)) matches no "
            "overload and is left unnormalized. The reference types each argument node by its "
            "own meta['type'] and sequences element-wise. (Without ShapeProp no node has a type "
            "and both leave such calls alone.)"
        ),
        match=Match(stage=Stage.COMPARE, symptom=Symptom.IMPL_DIVERGENCE,
                    case="conform.traits.normalize:calls_typed_by_argument",
                    diffs=(Diff(r"fingerprint\.argument_typed_calls\..*"),)),
        witness="conform.witnesses.normalize:keyword_node_call",
        issue="unfiled",
    ),
    KnownDivergence(
        id="meta-trace-size-of-dim-zero",
        transform="meta_trace",
        kind=Kind.UPSTREAM_BUG,
        reason=(
            "MetaProxy.size(dim) tests 'if dim' rather than 'dim is not None', so x.size(0) "
            "returns the whole torch.Size when x has metadata, and is recorded as x.size() when it "
            "has none: the traced module passes a tuple where an int was meant "
            "(x.reshape(x.size(0), -1) raises TypeError; arithmetic on it silently repeats the "
            "tuple; a value whose metadata is lost this way makes a later size(0) a graph value, and "
            "a branch on it raises TraceError). The reference answers size(0) with the size of "
            "dimension 0."
        ),
        match=Match(case=DIM_ZERO, stage=Stage.EXECUTE, symptom=Symptom.CRASH, side="upstream", place="upstream@.*")
              | Match(case=DIM_ZERO, symptom=Symptom.EAGER_MISMATCH, side="upstream")
              | Match(case=DIM_ZERO, stage=Stage.COMPARE, symptom=Symptom.IMPL_DIVERGENCE, place="outputs")
              | Match(case=DIM_ZERO, stage=Stage.TRANSFORM_UPSTREAM, symptom=Symptom.CRASH, place=APPLYING,
                      exception="TypeError")
              # the lost metadata makes a later size(0) a graph value: a branch on it cannot trace
              | Match(case=DIM_ZERO, stage=Stage.TRANSFORM_UPSTREAM, symptom=Symptom.CRASH, place=APPLYING,
                      exception="TraceError", error="symbolically traced variables cannot be used as inputs to "
                                                    "control flow"),
        witness="conform.witnesses.normalize:size_of_dim_zero",
        issue="unfiled",
    ),
    KnownDivergence(
        id="meta-trace-leaf-module-state",
        transform="meta_trace",
        kind=Kind.UPSTREAM_BUG,
        reason=(
            "upstream computes a leaf module's metadata by running its forward on meta inputs with "
            "the module's real (CPU) parameters, which meta kernels reject for every leaf with "
            "parameters outside its override table (Linear, Conv*, BatchNorm*, ...): the output "
            "gets no metadata, and shape-dependent control flow after it raises TraceError. The "
            "reference moves the leaf's parameters and buffers to the meta device for the call."
        ),
        match=Match(stage=Stage.TRANSFORM_UPSTREAM, symptom=Symptom.CRASH, exception="TraceError",
                    case="conform.traits.normalize:leaf_module_with_state"),
        witness="conform.witnesses.normalize:shape_after_linear",
        issue="unfiled",
    ),
    KnownDivergence(
        id="rewrite-submodule-asserts",
        transform="rewrite",
        kind=Kind.UPSTREAM_BUG,
        reason=(
            "RewritingTracer rewrites the root's forward only: its RewrittenModule copies the "
            "instance __dict__, where submodules are not (they live in _modules), so an assert on "
            "a traced value in a submodule's forward still raises TraceError. The reference "
            "rewrites every module it traces through."
        ),
        match=Match(stage=Stage.TRANSFORM_UPSTREAM, symptom=Symptom.CRASH, exception="TraceError",
                    case="conform.traits.normalize:assert_in_submodule"),
        witness="conform.witnesses.normalize:assert_in_submodule",
        issue="https://github.com/pytorch/pytorch/issues/52564",
    ),
    KnownDivergence(
        id="rewrite-private-names",
        transform="rewrite",
        kind=Kind.UPSTREAM_BUG,
        reason=(
            "upstream recompiles a forward outside its class, so class-private names "
            "(self.__scale) are no longer mangled to _Class__scale and the attribute lookup "
            "raises AttributeError. The reference compiles inside a class of the same name, "
            "which mangles them as the original compilation did."
        ),
        match=Match(stage=Stage.TRANSFORM_UPSTREAM, symptom=Symptom.CRASH, exception="AttributeError",
                    case="conform.traits.normalize:private_name_in_forward",
                    error=r"has no attribute '__\w+'"),
        witness="conform.witnesses.normalize:private_attribute",
        issue="unfiled",
    ),
    KnownDivergence(
        id="rewrite-annotated-assignments",
        transform="rewrite",
        kind=Kind.UPSTREAM_BUG,
        reason=(
            "upstream turns 'y: T = value' into a call of a global named 'annotate', which the "
            "forward's module need not define (NameError), and a bare declaration 'y: T' into "
            "annotate(None, T), which does not compile (ValueError 'None disallowed in expression "
            "list'). The reference calls its own annotate helper and drops bare declarations."
        ),
        match=Match(stage=Stage.TRANSFORM_UPSTREAM, symptom=Symptom.CRASH,
                    case="conform.traits.normalize:annotated_assignment_in_forward",
                    error=r"name 'annotate' is not defined|None disallowed in expression list"),
        witness="conform.witnesses.normalize:annotated_local",
        issue="unfiled",
    ),
    KnownDivergence(
        id="rewrite-class-attributes-lost",
        transform="rewrite",
        kind=Kind.UPSTREAM_BUG,
        reason=(
            "upstream's RewrittenModule is a bare nn.Module holding the instance __dict__, so a "
            "forward that uses another method or a class attribute of its module raises "
            "AttributeError, and one that iterates or indexes its module (nn.Sequential's) or "
            "calls super(Class, self) raises TypeError. The reference traces a subclass of the "
            "module's class that only replaces forward."
        ),
        match=Match(stage=Stage.TRANSFORM_UPSTREAM, symptom=Symptom.CRASH,
                    case="conform.traits.normalize:class_attribute_in_forward",
                    error=r"'RewrittenModule' object (has no attribute|is not)|super\(type, obj\): obj "
                            r"must be an instance or subtype of type"),
        witness="conform.witnesses.normalize:assert_with_helper",
        issue="https://github.com/pytorch/pytorch/issues/52538",
    ),
    KnownDivergence(
        id="rewrite-closure-variables",
        transform="rewrite",
        kind=Kind.UPSTREAM_BUG,
        reason=(
            "upstream recompiles a forward at module level, so variables it closes over (a "
            "module class defined inside a function) become undefined globals: NameError. The "
            "reference compiles it inside a scope with the same free variables and binds the "
            "original closure cells."
        ),
        match=Match(stage=Stage.TRANSFORM_UPSTREAM, symptom=Symptom.CRASH, exception="NameError",
                    case="conform.traits.normalize:closure_in_forward",
                    error=r"name '(?!annotate')\w+' is not defined"),
        witness="conform.witnesses.normalize:assert_with_closure",
        issue="unfiled",
    ),
    KnownDivergence(
        id="rewrite-zero-argument-super",
        transform="rewrite",
        kind=Kind.UPSTREAM_BUG,
        reason=(
            "upstream recompiles a forward outside its class, so zero-argument super() has no "
            "__class__ cell and raises RuntimeError. The reference binds the original __class__ "
            "cell."
        ),
        match=Match(stage=Stage.TRANSFORM_UPSTREAM, symptom=Symptom.CRASH, exception="RuntimeError",
                    case="conform.traits.normalize:zero_argument_super_in_forward",
                    error="__class__ cell not found"),
        witness="conform.witnesses.normalize:assert_with_super",
        issue="unfiled",
    ),
    KnownDivergence(
        id="rewrite-function-name-already-global",
        transform="rewrite",
        kind=Kind.UPSTREAM_BUG,
        reason=(
            "upstream finds the recompiled function as the one new name in a copy of its globals; "
            "a function whose name already is a global there (any module-level function, such as "
            "one assigned as a module's forward) adds none and fails with AssertionError "
            "'Expected 1 new key, got 0'. The reference takes the function from a private scope."
        ),
        match=Match(stage=Stage.TRANSFORM_UPSTREAM, symptom=Symptom.CRASH, exception="AssertionError",
                    case="conform.traits.normalize:forward_named_as_a_global",
                    error="Expected 1 new key, got 0"),
        witness="conform.witnesses.normalize:shared_forward",
        issue="https://github.com/pytorch/pytorch/pull/54011",
    ),
    KnownDivergence(
        id="rewrite-postponed-annotations",
        transform="rewrite",
        kind=Kind.UPSTREAM_BUG,
        reason=(
            "upstream recompiles a forward without the 'from __future__ import annotations' of "
            "the module that defined it, so its annotations are evaluated at rewrite time: "
            "placeholder and output types become classes where plain symbolic_trace records the "
            "annotation strings, and an annotation naming something imported only under "
            "TYPE_CHECKING raises NameError. The reference compiles with the original's future "
            "flags."
        ),
        match=Match(stage=Stage.COMPARE, symptom=Symptom.IMPL_DIVERGENCE,
                    case="conform.traits.normalize:postponed_annotations_in_forward",
                    diffs=(Diff(r"fingerprint\.types\.\w+", left=r"[\w.]+", right="'.*"),)),
        witness="conform.witnesses.normalize:annotated_forward",
        issue="unfiled",
    ),
)
