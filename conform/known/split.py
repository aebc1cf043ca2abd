"""Known divergences of split_module (conform/traits/split.py, conform/witnesses/split.py).

Entries keep the order in which :func:`conform.known.classify` tries them.
"""

from __future__ import annotations

from conform.known.core import ABSENT, APPLYING, Diff, Kind, KnownDivergence, Match
from conform.outcome import Stage, Symptom

# Traits and raw exception texts that several matchers of one entry share.
VARIADIC = "conform.traits.split:variadic_forward_with_kept_names"
COLLISION = "conform.traits.split:flattened_target_collision"
INPLACE = "conform.traits.split:inplace_write_across_partitions"


KNOWN: tuple[KnownDivergence, ...] = (
    KnownDivergence(
        id="split-module-kwargs-keep-node-name-crash",
        transform="split_module",
        kind=Kind.UPSTREAM_BUG,
        reason=(
            "with keep_original_node_name=True upstream recreates each parent placeholder with "
            "its node name as target, dropping the '*'/'**' of a *args/**kwargs forward: the split "
            "module's forward takes a positional 'kwargs' and a call with keywords raises TypeError; "
            "a positional 'args' binds the first extra argument alone, so forward(x, y) silently "
            "reads y[0] for args[0] (or raises TypeError with more extra arguments). The reference "
            "keeps the marker."
        ),
        match=Match(case=VARIADIC, stage=Stage.EXECUTE, symptom=Symptom.CRASH, side="upstream", place="upstream@.*",
                    exception="TypeError", error=r"unexpected keyword argument|positional argument")
              | Match(case=VARIADIC, symptom=Symptom.EAGER_MISMATCH, side="upstream")
              | Match(case=VARIADIC, stage=Stage.COMPARE, symptom=Symptom.IMPL_DIVERGENCE, place="outputs"),
        witness="conform.witnesses.split:kwargs_keep_node_name_witness",
        issue="unfiled",
    ),
    KnownDivergence(
        id="split-module-kwargs-keep-node-name-signature",
        transform="split_module",
        kind=Kind.UPSTREAM_BUG,
        reason=(
            "the structural side of split-module-kwargs-keep-node-name-crash: the parent's "
            "varargs/varkw placeholder target is 'kwargs' upstream and '**kwargs' in the reference."
        ),
        match=Match(stage=Stage.COMPARE, symptom=Symptom.IMPL_DIVERGENCE, case=VARIADIC,
                    diffs=(Diff(r".*parent\.placeholders\[\d+\]\[1\]", left=r"(\w+)", right=r"\*{1,2}\1\b.*"),)),
        witness="conform.witnesses.split:kwargs_keep_node_name_witness",
        issue="unfiled",
    ),
    KnownDivergence(
        id="split-module-kwargs-keep-node-name-syntax",
        transform="split_module",
        kind=Kind.UPSTREAM_BUG,
        reason=(
            "the same dropped '**' as split-module-kwargs-keep-node-name-crash, on a forward whose "
            "**kwargs follows a parameter with a default value: with keep_original_node_name=True "
            "upstream writes the parent's signature as (x, alpha=0.5, kwargs), which Python refuses "
            "to compile (SyntaxError: non-default argument follows default argument), so the split "
            "fails outright. The reference keeps the marker and the signature compiles."
        ),
        match=Match(stage=Stage.TRANSFORM_UPSTREAM, symptom=Symptom.CRASH, exception="SyntaxError",
                    case="conform.traits.split:variadic_forward_with_kept_names"),
        witness="conform.witnesses.split:kwargs_after_default_keep_node_name_witness",
        issue="unfiled",
    ),
    KnownDivergence(
        id="split-module-keep-order-returned-attribute",
        transform="split_module",
        kind=Kind.UPSTREAM_BUG,
        reason=(
            "with keep_original_order=True upstream fetches an attribute in the parent only for a "
            "partition that reads it; an attribute (a parameter, say) returned directly by forward "
            "is never fetched and building the output raises KeyError. The reference fetches it "
            "before the output. (When the same case also writes in place across partitions, the "
            "reference refuses the order instead, split-module-inplace-order, and the two sides "
            "raise different exceptions; upstream's KeyError is still this bug.)"
        ),
        match=Match(stage=Stage.TRANSFORM_UPSTREAM, symptom=Symptom.CRASH, exception="KeyError",
                    case="conform.traits.split:returned_attribute_with_original_order")
              | Match(stage=Stage.COMPARE, symptom=Symptom.IMPL_DIVERGENCE, place="exception-type",
                      case="conform.traits.split:returned_attribute_with_original_order",
                      diffs=(Diff("exception", left="RuntimeError", right="KeyError"),
                             Diff("message", left=r"cycle exists between partitions! \(.*touch the same memory.*"))),
        witness="conform.witnesses.split:returned_attribute_witness",
        issue="unfiled",
    ),
    KnownDivergence(
        id="split-module-flattened-target-collision",
        transform="split_module",
        kind=Kind.UPSTREAM_BUG,
        reason=(
            "upstream names a called submodule inside a partition by replacing '.' with '_', so "
            "'a.b_c' and 'a_b.c' both become 'a_b_c' and the second overwrites the first: both "
            "calls run the same module (a silent miscompile, also reported as an eager mismatch of "
            "upstream's module). The reference gives the second one a suffix ('a_b_c_1')."
        ),
        # upstream's own module goes wrong (never the reference's), and the structure shows the
        # second module under a suffixed name in the reference only: in a node's target, or in
        # the partition's qualname map (one flattened name upstream, a suffixed one next to it
        # in the reference)
        match=Match(case=COLLISION, symptom=Symptom.EAGER_MISMATCH, side="upstream")
              | Match(case=COLLISION, stage=Stage.COMPARE, symptom=Symptom.IMPL_DIVERGENCE, place="outputs")
              | Match(case=COLLISION, diffs=(Diff(r".*nodes\[\d+\]\[2\]", left=r"(\w+)", right=r"\1_\d+\b.*"),))
              | Match(case=COLLISION, diffs=(Diff(r"fingerprint\.qualname_map\.submod_\d+\.\w+_\d+", left=ABSENT,
                                                  right=r"[\w.]+.*"),)),
        witness="conform.witnesses.split:flatten_collision_witness",
        issue="unfiled",
    ),
    KnownDivergence(
        id="split-module-affix-with-regions",
        transform="split_module",
        kind=Kind.UPSTREAM_BUG,
        reason=(
            "with partition_affix set and an autocast or grad-mode region in the graph, upstream "
            "looks partitions up by the bare id (str(id)) instead of '<affix>_<id>' and raises "
            "KeyError. The reference uses the affixed name."
        ),
        match=Match(stage=Stage.TRANSFORM_UPSTREAM, symptom=Symptom.CRASH, exception="KeyError",
                    case="conform.traits.split:affix_with_regions"),
        witness="conform.witnesses.split:affix_with_regions_witness",
        issue="unfiled",
    ),
    KnownDivergence(
        id="split-module-negative-ids-with-regions",
        transform="split_module",
        kind=Kind.UPSTREAM_BUG,
        reason=(
            "when the graph has an autocast or grad-mode region, upstream checks that partition ids "
            "never decrease starting from -1, so a monotone map whose first id is below -1 is "
            "rejected with AssertionError. The reference starts from the first node's id."
        ),
        match=Match(stage=Stage.TRANSFORM_UPSTREAM, symptom=Symptom.CRASH, exception="AssertionError",
                    case="conform.traits.split:ids_below_minus_one_with_regions",
                    error=r"highest: -1, this node's: -\d"),
        witness="conform.witnesses.split:negative_ids_with_regions_witness",
        issue="unfiled",
    ),
    KnownDivergence(
        id="split-module-symbol-bound-in-same-partition",
        transform="split_module",
        kind=Kind.UPSTREAM_BUG,
        reason=(
            "on graphs with dynamo example_value metadata, when a partition reads a value whose "
            "shape has a symbol first bound by a node of that same partition (x.size(0) next to a "
            "use of x), upstream makes the partition depend on itself and raises 'cycle exists "
            "between partitions'. The symbol is already in scope there; the reference adds no "
            "input or dependency for it. (With keep_original_order=True, when the first-appearance "
            "order also calls another partition before the one binding a symbol it needs, the "
            "reference fails building the parent on the missing value, KeyError, as both sides do "
            "for any order that breaks data flow; upstream's self-dependency raises first.)"
        ),
        match=Match(stage=Stage.TRANSFORM_UPSTREAM, symptom=Symptom.CRASH, exception="RuntimeError",
                    case="conform.traits.split:symbol_bound_in_reading_partition",
                    error="cycle exists between partitions")
              | Match(stage=Stage.COMPARE, symptom=Symptom.IMPL_DIVERGENCE, place="exception-type",
                      case="conform.traits.split:symbol_bound_in_reading_partition",
                      params=(("keep_original_order", True),),
                      diffs=(Diff("exception", left="KeyError", right="RuntimeError"),
                             Diff("message", right=r"cycle exists between partitions!"))),
        witness="conform.witnesses.split:symbol_bound_in_partition_witness",
        issue="unfiled",
    ),
    KnownDivergence(
        id="split-module-inplace-order",
        transform="split_module",
        kind=Kind.UPSTREAM_BUG,
        reason=(
            "upstream orders partitions by data flow alone (or by first appearance with "
            "keep_original_order=True) and calls each partition's nodes together, so a partition "
            "holding an in-place write (y.relu_(), x[i] = v, an inplace=True module) can be called "
            "before a partition that reads the same memory earlier in the graph, or after one that "
            "reads it later: the split module silently computes something else than eager. The "
            "reference also orders by in-place writes: a partition accessing the memory before "
            "the write runs first, one accessing it after runs later; when no order satisfies "
            "both (a partition on both sides of the write, or a value flowing against the write's "
            "order) it raises RuntimeError 'cycle exists between partitions!' naming the two "
            "nodes that touch the same memory."
        ),
        # upstream's module goes wrong or the reference refuses; structurally only the parent's
        # order of calls differs (every diff line is under fingerprint.parent)
        match=Match(case=INPLACE, symptom=Symptom.EAGER_MISMATCH, side="upstream")
              | Match(case=INPLACE, stage=Stage.COMPARE, symptom=Symptom.IMPL_DIVERGENCE, place="outputs")
              | Match(case=INPLACE, stage=Stage.TRANSFORM_REFERENCE, symptom=Symptom.CRASH, place=APPLYING,
                      exception="RuntimeError", error=r"\Acycle exists between partitions! \(.*touch the same memory "
                                                      r"and one of them writes it in place")
              # a fingerprint that differs only in the parent's graph (the order of the calls)
              | Match(case=INPLACE, stage=Stage.COMPARE, symptom=Symptom.IMPL_DIVERGENCE, place="fingerprint",
                      diffs=(Diff(r"fingerprint\.parent\..*"),), diffs_only=True),
        witness="conform.witnesses.split:inplace_across_partitions_witness",
        issue="unfiled",
    ),
)
