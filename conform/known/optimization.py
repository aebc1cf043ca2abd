"""Known divergences of torch.fx.experimental.optimization and its neighbours: fuse, remove_dropout,
optimize_for_inference (with gen_mkl_autotuner), merge_matmul and the translation validator
(conform/traits/optimization.py, conform/witnesses/optimization.py).

Entries keep the order in which :func:`conform.known.classify` tries them.
"""

from __future__ import annotations

from conform.known.core import APPLYING, Diff, Kind, KnownDivergence, Match
from conform.outcome import Stage, Symptom

# Traits and raw exception texts that several matchers of one entry share.
SHARED = "conform.traits.optimization:fold_into_shared_module"
SCALAR = "conform.traits.optimization:arithmetic_with_a_number"
_NO_TARGET = r"'(int|float|bool|NoneType)' object has no attribute 'target'"
UNEVEN_POOL = "conform.traits.optimization:uneven_adaptive_pool_in_layout"
SHARED_OPERAND = "conform.traits.optimization:batched_shared_operand"
_SPLIT_SIZES = "split_with_sizes expects split_sizes to sum exactly"
MUTATION = "conform.traits.optimization:in_place_update_in_merged_graph"
TRUNCATION = "conform.traits.optimization:truncation_in_expression"
BITWISE = "conform.traits.optimization:bitwise_in_expression"


KNOWN: tuple[KnownDivergence, ...] = (
    *(
        KnownDivergence(
            id=f"{prefix}-shared-conv-module",
            transform=transform,
            kind=Kind.UPSTREAM_BUG,
            reason=(
                "upstream folds a batch norm into a convolution (or Linear) by replacing the module "
                "at its qualified name, so every other use of that module sees the folded weights: a "
                "second call of the same conv, or a read of conv.weight, silently computes something "
                "else (an eager mismatch and an output divergence of upstream's module, and module "
                "calls that differ in the fingerprint). The reference installs the folded module "
                "under a new name ('conv_fused') when the original is used elsewhere."
            ),
            match=Match(case=SHARED, symptom=Symptom.EAGER_MISMATCH, side="upstream")
                  | Match(case=SHARED, stage=Stage.COMPARE, symptom=Symptom.IMPL_DIVERGENCE, place="outputs")
                  | Match(case=SHARED, diffs=(Diff(r"fingerprint\.calls\[\d+\]\[0\]", left=r"[\w.]+",
                                                   right=r"\w+_fused(_\d+)?\b.*"),)),
            witness=f"conform.witnesses.optimization:shared_conv{suffix}_witness",
            issue="https://github.com/pytorch/pytorch/issues/104593",
        )
        for transform, prefix, suffix in (
            ("fuse", "fuse", ""), ("optimize_for_inference", "optimize-for-inference", "_inference"))
    ),
    *(
        KnownDivergence(
            id=f"{prefix}-linear-bn-without-affine",
            transform=transform,
            kind=Kind.UPSTREAM_BUG,
            reason=(
                "fusing Linear + BatchNorm1d(affine=False) multiplies the missing bn.weight (None) "
                "in torch.nn.utils.fusion.fuse_linear_bn_weights and raises TypeError; the conv "
                "path handles affine=False. The reference folds with weight 1 and bias 0."
            ),
            match=Match(stage=Stage.TRANSFORM_UPSTREAM, symptom=Symptom.CRASH, exception="TypeError",
                        error="'NoneType'", case="conform.traits.optimization:linear_norm_without_affine"),
            witness=f"conform.witnesses.optimization:linear_bn_without_affine{suffix}_witness",
            issue="https://github.com/pytorch/pytorch/issues/122183",
        )
        for transform, prefix, suffix in (
            ("fuse", "fuse", ""), ("optimize_for_inference", "optimize-for-inference", "_inference"))
    ),
    *(
        KnownDivergence(
            id=f"{prefix}-linear-bn-channel-mismatch",
            transform=transform,
            kind=Kind.UPSTREAM_BUG,
            reason=(
                "a BatchNorm1d normalizing the channels of a Linear's (N, C, L) output (C != "
                "out_features) cannot be folded, and upstream asserts instead of skipping the pair "
                "(AssertionError 'To fuse, linear.out_features == bn.num_features'). The reference "
                "leaves the pair unfused."
            ),
            match=Match(stage=Stage.TRANSFORM_UPSTREAM, symptom=Symptom.CRASH, exception="AssertionError",
                        error="To fuse, linear.out_features",
                        case="conform.traits.optimization:linear_norm_other_channels"),
            witness=f"conform.witnesses.optimization:linear_bn_over_sequence{suffix}_witness",
            issue="unfiled",
        )
        for transform, prefix, suffix in (
            ("fuse", "fuse", ""), ("optimize_for_inference", "optimize-for-inference", "_inference"))
    ),
    *(
        KnownDivergence(
            id=f"{prefix}-linear-bn-sequence-channels",
            transform=transform,
            kind=Kind.BY_DESIGN,
            reason=(
                "BatchNorm1d normalizes dim 1, which is a Linear's output features only when that "
                "output is 2-D (N, C). On a 3-D (N, L, C) output whose L equals out_features the "
                "pair looks foldable, and both implementations fold the norm's per-channel scale "
                "into the output features: the wrong axis, an eager mismatch on both sides. fuse "
                "takes no example inputs and the traced graph carries no shapes, so neither side can "
                "tell the two apart; the reference keeps upstream's result (a fused module that "
                "checked the rank at run time would no longer be a plain nn.Linear)."
            ),
            match=Match(stage=Stage.COMPARE, symptom=Symptom.EAGER_MISMATCH, place="(reference|upstream):outputs",
                        case="conform.traits.optimization:linear_norm_over_sequence"),
            witness=f"conform.witnesses.optimization:linear_bn_sequence_channels{suffix}_witness",
            issue="unfiled",
        )
        for transform, prefix, suffix in (
            ("fuse", "fuse", ""), ("optimize_for_inference", "optimize-for-inference", "_inference"))
    ),
    *(
        KnownDivergence(
            id=f"{prefix}-keyword-input",
            transform=transform,
            kind=Kind.UPSTREAM_BUG,
            reason=(
                "upstream expects the dropout's input as the one positional argument and raises "
                "AssertionError 'Expected 1 arg for Dropout, got 0' for self.drop(input=x). The "
                "reference takes the input by position or keyword."
            ),
            match=Match(stage=Stage.TRANSFORM_UPSTREAM, symptom=Symptom.CRASH, exception="AssertionError",
                        error="Expected 1 arg for Dropout, got 0",
                        case="conform.traits.optimization:dropout_called_by_keyword"),
            witness=f"conform.witnesses.optimization:keyword_dropout{suffix}_witness",
            issue="unfiled",
        )
        for transform, prefix, suffix in (
            ("remove_dropout", "remove-dropout", ""),
            ("optimize_for_inference", "optimize-for-inference-dropout", "_inference"))
    ),
    KnownDivergence(
        id="optimize-for-inference-scalar-operand",
        transform="optimize_for_inference",
        kind=Kind.UPSTREAM_BUG,
        reason=(
            "to decide whether add/mul joins an MKLDNN region upstream reads .target of every "
            "argument, and a Python number argument (x * 2, x + 1 where x is not an MKLDNN value) "
            "raises AttributeError; when an MKLDNN operand comes first (torch.relu(x) + 2) the add "
            "joins the region and the optimized module raises RuntimeError ('itensor_from_mkldnn "
            "expects MKL-DNN tensor input'), since MKLDNN add rejects numbers. The reference only "
            "looks at node arguments and keeps add with a number in dense layout."
        ),
        # Also when the reference refuses the model with one of the pass's own AssertionErrors
        # (a float64 module, a batch norm without running statistics), which upstream would
        # raise too had it not crashed first.
        match=Match(case=SCALAR, stage=Stage.TRANSFORM_UPSTREAM, symptom=Symptom.CRASH, place=APPLYING,
                    exception="AttributeError", error=f"\\A{_NO_TARGET}")
              | Match(case=SCALAR, place="exception-type",
                      diffs=(Diff("exception", "AssertionError", "AttributeError"),
                             Diff("message", right=f".*{_NO_TARGET}.*")))
              | Match(case=SCALAR, stage=Stage.EXECUTE, symptom=Symptom.CRASH, side="upstream", place="upstream@.*",
                      exception="RuntimeError", error=r"\Aitensor_from_mkldnn expects MKL-DNN tensor input"),
        witness="conform.witnesses.optimization:scalar_operand_witness",
        issue="unfiled",
    ),
    KnownDivergence(
        id="optimize-for-inference-mutates-model",
        transform="optimize_for_inference",
        kind=Kind.UPSTREAM_BUG,
        reason=(
            "the MKLDNN layout pass converts the modules of the model it was given; with "
            "conv_bn_fuse and remove_dropout off that is the caller's model, which is left with "
            "MkldnnConv2d/MkldnnLinear submodules. The reference converts a private copy."
        ),
        match=Match(stage=Stage.TRANSFORM_UPSTREAM, symptom=Symptom.CRASH, exception="InputModified",
                    error="replaced submodules of its input",
                    case="conform.traits.optimization:layout_pass_on_callers_model"),
        witness="conform.witnesses.optimization:mutated_model_witness",
        issue="unfiled",
    ),
    KnownDivergence(
        id="optimize-for-inference-trace-time-constants",
        transform="optimize_for_inference",
        kind=Kind.UPSTREAM_BUG,
        reason=(
            "upstream traces a copy of the model but builds the optimized GraphModule on the "
            "original model, so attributes that only the tracer's root has are missing: a tensor "
            "made in forward from no traced value (torch.ones(3), torch.rand(2)) is stored as "
            "_tensor_constant<N> on the root, and building the result raises AttributeError. "
            "(With conv_bn_fuse or remove_dropout on, the model is first replaced by a GraphModule "
            "that holds the constants, and the bug is hidden.) The reference builds the result on "
            "the traced root."
        ),
        match=Match(stage=Stage.TRANSFORM_UPSTREAM, symptom=Symptom.CRASH, exception="AttributeError",
                    error=r"has no attribute '_tensor_constant\d+'"),
        witness="conform.witnesses.optimization:trace_time_constant_witness",
        issue="unfiled",
    ),
    KnownDivergence(
        id="gen-mkl-autotuner-broken",
        transform="optimize_for_inference",
        kind=Kind.UPSTREAM_BUG,
        reason=(
            "gen_mkl_autotuner passes its example inputs to ShapeProp as one list argument, runs "
            "a graph whose MKLDNN modules are not installed in the module it runs, and reads "
            "node.shape, which ShapeProp no longer sets: every use raises. The reference records "
            "shapes with its own interpreter and times each region on the converted modules."
        ),
        # The heuristic is the case's shape (params); the message names the two ways it fails:
        # ShapeProp running the graph on one list argument, or reading node.shape.
        match=Match(stage=Stage.TRANSFORM_UPSTREAM, symptom=Symptom.CRASH, params=(("mkldnn", "autotune"),),
                    error=r"ShapeProp error for: node|object has no attribute 'shape'"),
        witness="conform.witnesses.optimization:autotuner_witness",
        issue="unfiled",
    ),
    KnownDivergence(
        id="optimize-for-inference-broadcasting",
        transform="optimize_for_inference",
        kind=Kind.UPSTREAM_BUG,
        reason=(
            "upstream runs add/mul in MKLDNN layout whenever an operand comes from an MKLDNN "
            "region, but MKLDNN's kernels do not broadcast: a channel gate (x * sigmoid(pool(x))) "
            "or any add/mul of differently shaped tensors makes the optimized module raise "
            "('currently mkldnn not support broadcasting', or oneDNN's 'could not create a "
            "primitive descriptor for the sum primitive' when an operand has fewer dims). The "
            "reference checks the shapes when the module runs and computes mismatched ones in "
            "dense layout."
        ),
        match=Match(stage=Stage.EXECUTE, symptom=Symptom.CRASH, exception="RuntimeError", side="upstream",
                    place="upstream@.*", error=r"\A(mkldnn_\w+: currently mkldnn not support broadcasting|could "
                                               r"not create a primitive descriptor for the sum primitive)",
                    case="conform.traits.optimization:broadcasting_arithmetic"),
        witness="conform.witnesses.optimization:broadcasting_witness",
        issue="unfiled",
    ),
    KnownDivergence(
        id="optimize-for-inference-uneven-adaptive-pool",
        transform="optimize_for_inference",
        kind=Kind.UPSTREAM_BUG,
        reason=(
            "upstream runs every adaptive average pool of an MKLDNN region in MKLDNN layout, but "
            "MKLDNN pools only input sizes that the output size divides: F.adaptive_avg_pool2d(y, "
            "(2, 2)) of a 5x5 map makes the optimized module raise RuntimeError ('input size is not "
            "divisible by the output size is not supported yet'). Input sizes are unknown when the "
            "pass runs, so the reference keeps pools whose output is not 1x1 in dense layout: its "
            "regions differ from upstream's (the conversions and, through the heuristic, the "
            "converted modules differ in the fingerprint) even where upstream's pool happens to "
            "divide evenly."
        ),
        match=Match(case=UNEVEN_POOL, stage=Stage.EXECUTE, symptom=Symptom.CRASH, side="upstream", place="upstream@.*",
                    exception="RuntimeError", error=r"\Ainput size is not divisible by the output size")
              | Match(case=UNEVEN_POOL, diffs=(Diff(r"fingerprint\.(conversions|calls).*"),)),
        witness="conform.witnesses.optimization:uneven_pool_witness",
        issue="unfiled",
    ),
    KnownDivergence(
        id="optimize-for-inference-unconvertible-region-input",
        transform="optimize_for_inference",
        kind=Kind.BY_DESIGN,
        reason=(
            "MKLDNN layout holds neither 0-dim tensors nor integer, bool or float64 ones, so a "
            "region that such a value enters (torch.relu(x.min()), F.relu(x.argmax(1))) makes the "
            "optimized module raise RuntimeError at its to_mkldnn conversion ('could not create a "
            "primitive descriptor for the reorder primitive', 'dense_to_mkldnn expects float, "
            "...'), upstream's and the reference's alike. Shapes and dtypes are unknown when the "
            "pass runs; guarding the conversions at run time would replace upstream's "
            "to_mkldnn/to_dense nodes on every graph, so the reference keeps upstream's "
            "conversions."
        ),
        match=Match(stage=Stage.EXECUTE, symptom=Symptom.CRASH, exception="RuntimeError", place="(reference|upstream)@.*",
                    error=r"\A(could not create a primitive descriptor for the reorder primitive|dense_to_mkldnn "
                          r"expects)",
                    case="conform.traits.optimization:unconvertible_value_in_layout"),
        witness="conform.witnesses.optimization:unconvertible_input_witness",
        issue="unfiled",
    ),
    KnownDivergence(
        id="merge-matmul-second-group",
        transform="merge_matmul",
        kind=Kind.UPSTREAM_BUG,
        reason=(
            "after merging one group upstream restores topological order with legalize_graph, "
            "which copies every node into a new Graph; the next group still holds nodes of the "
            "old graph and erasing them fails ('Attempting to remove ... from wrong graph'), so "
            "any module with two groups to merge raises. The reference reorders the graph in "
            "place and reads each group's operands when it merges it (an operand may be a "
            "product of an earlier group)."
        ),
        match=Match(stage=Stage.TRANSFORM_UPSTREAM, symptom=Symptom.CRASH, exception="RuntimeError",
                    error="from wrong graph", case="conform.traits.optimization:two_groups_to_merge"),
        witness="conform.witnesses.optimization:two_groups_witness",
        issue="unfiled",
    ),
    KnownDivergence(
        id="merge-matmul-batched-shared-operand",
        transform="merge_matmul",
        kind=Kind.UPSTREAM_BUG,
        reason=(
            "upstream concatenates the left operands along dim 0 and splits the product along "
            "dim 0, which is the batch dim when the shared right operand has 3 or more dims: the "
            "split or the batched product raises, or, when the batch size happens to equal the summed rows, the merged "
            "module silently returns wrong blocks (an eager mismatch and an output divergence). "
            "The reference stacks rows only for a right operand of at most 2 dims and multiplies "
            "batched ones one by one."
        ),
        match=Match(case=SHARED_OPERAND, error=_SPLIT_SIZES)
              | Match(case=SHARED_OPERAND, stage=Stage.EXECUTE, symptom=Symptom.CRASH, side="upstream",
                      error="Expected size for first two dimensions of batch2 tensor")
              | Match(case=SHARED_OPERAND, place="exception-type", diffs=(Diff("message", right=f".*{_SPLIT_SIZES}.*"),))
              | Match(case=SHARED_OPERAND, symptom=Symptom.EAGER_MISMATCH, side="upstream")
              | Match(case=SHARED_OPERAND, stage=Stage.COMPARE, symptom=Symptom.IMPL_DIVERGENCE, place="outputs"),
        witness="conform.witnesses.optimization:shared_batched_operand_witness",
        issue="unfiled",
    ),
    KnownDivergence(
        id="optimize-for-inference-converted-parameter-read",
        transform="optimize_for_inference",
        kind=Kind.BY_DESIGN,
        reason=(
            "an upstream limitation the reference shares on purpose, not a bug of either: the "
            "layout pass replaces a Conv2d/Linear/BatchNorm2d it converts by an MKLDNN module "
            "whose weight and bias are MKLDNN tensors, assuming only the module's own call reads "
            "them. A forward that also reads the parameter (x + self.conv.weight.mean()) then "
            "runs a dense operator on an MKLDNN tensor, which raises NotImplementedError ('Could "
            "not run aten::mean.out with arguments from the MkldnnCPU backend'). Keeping the "
            "dense parameters next to the converted ones would change which modules the pass "
            "produces, so the reference converts the same modules and fails the same way."
        ),
        match=Match(stage=Stage.EXECUTE, symptom=Symptom.CRASH, exception="NotImplementedError",
                    place="(upstream|reference)@.*",
                    error=r"\ACould not run '[\w:.]+' with arguments from the 'MkldnnCPU' backend",
                    case="conform.traits.optimization:parameter_of_converted_module_read"),
        witness="conform.witnesses.optimization:converted_parameter_read_witness",
        issue="unfiled",
    ),
    KnownDivergence(
        id="merge-matmul-batched-operand-mixed-ranks",
        transform="merge_matmul",
        kind=Kind.UPSTREAM_BUG,
        reason=(
            "upstream concatenates the left operands of a group with torch.cat along dim 0 "
            "whatever their ranks; with a batched right operand (2, K, N), a vector (K,) next to "
            "a batch (2, M, K) makes the merged module raise 'Tensors must have same number of "
            "dimensions', though each matmul is valid on its own. The reference multiplies the "
            "operands of a batched group one by one."
        ),
        match=Match(stage=Stage.EXECUTE, symptom=Symptom.CRASH, exception="RuntimeError", side="upstream",
                    place="upstream@.*", error=r"\ATensors must have same number of dimensions",
                    case="conform.traits.optimization:batched_left_operands_of_mixed_ranks"),
        witness="conform.witnesses.optimization:batched_operand_mixed_ranks_witness",
        issue="unfiled",
    ),
    KnownDivergence(
        id="merge-matmul-vector-left-operand",
        transform="merge_matmul",
        kind=Kind.UPSTREAM_BUG,
        reason=(
            "upstream stacks the left operands with torch.cat along dim 0, which only lines up "
            "rows when every operand has the same rank of at least 2 and the same sizes after "
            "dim 0: 1-D operands (a vector @ w), operands of different ranks, or (2, 3, K) next to "
            "(2, 5, K) make the merged module raise. The reference flattens each operand to rows "
            "of length K before stacking and restores its shape after."
        ),
        match=Match(stage=Stage.EXECUTE, symptom=Symptom.CRASH, exception="RuntimeError", side="upstream",
                    place="upstream@.*",
                    error=r"\A(Tensors must have same number of dimensions|mat1 and mat2 shapes cannot be "
                          r"multiplied|Sizes of tensors must match except in dimension 0|inconsistent tensor size)",
                    case="conform.traits.optimization:left_operands_not_stackable"),
        witness="conform.witnesses.optimization:vector_left_operands_witness",
        issue="unfiled",
    ),
    KnownDivergence(
        id="merge-matmul-keyword-operand",
        transform="merge_matmul",
        kind=Kind.UPSTREAM_BUG,
        reason=(
            "upstream unpacks node.args into (lhs, rhs), so torch.matmul(a, other=w) raises "
            "ValueError. The reference reads operands by position or keyword."
        ),
        match=Match(stage=Stage.TRANSFORM_UPSTREAM, symptom=Symptom.CRASH, exception="ValueError",
                    error="values to unpack", case="conform.traits.optimization:matmul_with_keyword_operand"),
        witness="conform.witnesses.optimization:keyword_operand_witness",
        issue="unfiled",
    ),
    KnownDivergence(
        id="merge-matmul-retraced-split-sizes",
        transform="merge_matmul",
        kind=Kind.UPSTREAM_BUG,
        reason=(
            "upstream's merged module calls split_result_tensors, a plain function: tracing the "
            "merged module again runs it on a Proxy, where it asks for blocks of size 0, and the "
            "re-traced module records torch.split(product, [0, 0, ...]), which raises when it "
            "runs. merge_matmul applied to its own output traces it the same way, so merging "
            "twice gives a module that raises too. The reference's merged product is one call of "
            "a function registered with torch.fx.wrap, a leaf that keeps reading the block sizes "
            "when the module runs, and a second merge finds no torch.matmul left to merge."
        ),
        match=Match(stage=Stage.EXECUTE, symptom=Symptom.CRASH, exception="RuntimeError",
                    place="(retrace|idempotent):upstream"),
        witness="conform.witnesses.optimization:shared_right_operand_witness",
        issue="unfiled",
    ),
    KnownDivergence(
        id="merge-matmul-mutation-between",
        transform="merge_matmul",
        kind=Kind.UPSTREAM_BUG,
        reason=(
            "upstream's merge ignores in-place updates twice: the merged product reads every "
            "left operand where the last matmul of the group was (a.add_(1) after a @ w reaches "
            "the earlier product), and legalize_graph then re-sorts the whole graph "
            "breadth-first by data dependences alone, which can move any read of updated memory "
            "to the other side of the update (relu(y) ahead of y.mul_(gate) when the gate takes "
            "longer to compute). Either way the merged module silently computes something else "
            "(an eager mismatch and an output divergence of upstream's module). The reference "
            "leaves a group unmerged when an in-place update between its matmuls may reach what "
            "the merge reads (the kept matmuls differ in the fingerprint) and restores order with "
            "a stable sort that moves only the nodes that must follow a merged product."
        ),
        match=Match(case=MUTATION, diffs=(Diff(r"fingerprint\.kept", left=r"\[.*\]", right=r"\[.*\]"),))
              | Match(case=MUTATION, symptom=Symptom.EAGER_MISMATCH, side="upstream")
              | Match(case=MUTATION, stage=Stage.COMPARE, symptom=Symptom.IMPL_DIVERGENCE, place="outputs"),
        witness="conform.witnesses.optimization:mutation_between_witness",
        issue="unfiled",
    ),
    KnownDivergence(
        id="validator-trunc-to-int",
        transform="validator",
        kind=Kind.UPSTREAM_BUG,
        reason=(
            "SympyToZ3.trunc_to_int translates TruncToInt(x) as z3 ToInt(x), which floors: for "
            "negative non-integral x the guard means something else than int(x) and validation "
            "fails (or passes) wrongly. The reference translates If(x >= 0, ToInt(x), -ToInt(-x))."
        ),
        match=Match(stage=Stage.TRANSFORM_UPSTREAM, symptom=Symptom.CRASH,
                    exception="TranslationMismatch", error="TruncToInt",
                    case="conform.traits.optimization:truncation_of_negative_fraction"),
        witness="conform.witnesses.optimization:trunc_to_int_witness",
        issue="unfiled",
    ),
    KnownDivergence(
        id="validator-trunc-to-int-term",
        transform="validator",
        kind=Kind.UPSTREAM_BUG,
        reason=(
            "the structural side of validator-trunc-to-int: the z3 terms of TruncToInt differ "
            "even where both agree with Python (non-negative arguments)."
        ),
        match=Match(stage=Stage.COMPARE, symptom=Symptom.IMPL_DIVERGENCE, case=TRUNCATION,
                    diffs=(Diff(r"fingerprint\.term", left=".*TruncToInt.*"),))
              | Match(stage=Stage.COMPARE, symptom=Symptom.IMPL_DIVERGENCE, case=TRUNCATION,
                      diffs=(Diff(r"fingerprint\.term", right=".*TruncToInt.*"),)),
        witness="conform.witnesses.optimization:trunc_to_int_term_witness",
        issue="unfiled",
    ),
    KnownDivergence(
        id="validator-bitwise-unsigned",
        transform="validator",
        kind=Kind.UPSTREAM_BUG,
        reason=(
            "bitwise and/or/shifts go through 64-bit vectors that upstream reads back with "
            "BV2Int unsigned: a negative result (-8 | 1, -3 & -1) becomes 2**64 - |r| instead of "
            "Python's negative value. The reference reads the vector as signed."
        ),
        match=Match(stage=Stage.TRANSFORM_UPSTREAM, symptom=Symptom.CRASH,
                    exception="TranslationMismatch", error="BitwiseFn_bitwise_",
                    case="conform.traits.optimization:negative_bitwise_result"),
        witness="conform.witnesses.optimization:negative_bitwise_witness",
        issue="unfiled",
    ),
    KnownDivergence(
        id="validator-bitwise-unsigned-term",
        transform="validator",
        kind=Kind.UPSTREAM_BUG,
        reason=(
            "the structural side of validator-bitwise-unsigned: the z3 terms of bitwise "
            "operations differ even where both agree with Python (non-negative results)."
        ),
        match=Match(stage=Stage.COMPARE, symptom=Symptom.IMPL_DIVERGENCE, case=BITWISE,
                    diffs=(Diff(r"fingerprint\.term", left=".*BitwiseFn_bitwise_.*"),))
              | Match(stage=Stage.COMPARE, symptom=Symptom.IMPL_DIVERGENCE, case=BITWISE,
                      diffs=(Diff(r"fingerprint\.term", right=".*BitwiseFn_bitwise_.*"),)),
        witness="conform.witnesses.optimization:bitwise_term_witness",
        issue="unfiled",
    ),
)
