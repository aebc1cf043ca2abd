"""Known divergences of the accelerator Partitioner (conform/traits/partition.py, conform/witnesses/partition.py).

Entries keep the order in which :func:`conform.known.classify` tries them.
"""

from __future__ import annotations

from conform.known.core import APPLYING, Diff, Kind, KnownDivergence, Match
from conform.outcome import Stage, Symptom

# Traits and raw exception texts that several matchers of one entry share.
PARTITION_INPLACE = "conform.traits.partition:inplace_write_across_partitions"
AOT_IDS = "conform.traits.partition:aot_partition_id_past_the_count"


KNOWN: tuple[KnownDivergence, ...] = (
    KnownDivergence(
        id="partition-inplace-order",
        transform="partition",
        kind=Kind.UPSTREAM_BUG,
        reason=(
            "the partitioner builds module_with_submodules with split_module, and upstream's "
            "split_module orders partitions by data flow alone (split-module-inplace-order): a "
            "partition holding an in-place write can be called before a partition that reads the "
            "same memory earlier in the graph, and the partitioned module silently computes "
            "something else than eager. The reference's split also follows in-place writes, so "
            "its DAG lists the partitions in another order (or, when no order works, it raises "
            "RuntimeError 'cycle exists between partitions!')."
        ),
        match=Match(case=PARTITION_INPLACE, symptom=Symptom.EAGER_MISMATCH, side="upstream")
              | Match(case=PARTITION_INPLACE, stage=Stage.COMPARE, symptom=Symptom.IMPL_DIVERGENCE,
                      place="(outputs|fingerprint)")
              | Match(case=PARTITION_INPLACE, stage=Stage.TRANSFORM_REFERENCE, symptom=Symptom.CRASH, place=APPLYING,
                      exception="RuntimeError",
                      error=r"\Acycle exists between partitions! \(.*touch the same memory"),
        witness="conform.witnesses.partition:inplace_order_witness",
        issue="unfiled",
    ),
    KnownDivergence(
        id="partition-sparse-nn-dense-only",
        transform="partition",
        kind=Kind.UPSTREAM_BUG,
        reason=(
            "sparse_nn merges each group of partitions by popping the smallest one without "
            "checking the group is empty: on a module without embedding operations upstream "
            "raises IndexError ('pop from empty list'). The reference skips the empty group and "
            "raises RuntimeError, since dense partitions run on the embedding partitions' "
            "devices and there are none."
        ),
        match=Match(stage=Stage.COMPARE, symptom=Symptom.IMPL_DIVERGENCE, place="exception-type",
                    diffs=(Diff("exception", right="IndexError"),), params=(("mode", "sparse_nn"),)),
        witness="conform.witnesses.partition:sparse_nn_dense_only_witness",
        issue="unfiled",
    ),
    KnownDivergence(
        id="partition-sparse-nn-embeddings-only",
        transform="partition",
        kind=Kind.UPSTREAM_BUG,
        reason=(
            "sparse_nn on a module whose operations are all embeddings: the empty dense group "
            "makes upstream raise IndexError ('pop from empty list'); the reference places "
            "each embedding partition on its own device."
        ),
        match=Match(stage=Stage.TRANSFORM_UPSTREAM, symptom=Symptom.CRASH, exception="IndexError",
                    params=(("mode", "sparse_nn"),)),
        witness="conform.witnesses.partition:sparse_nn_embeddings_only_witness",
        issue="unfiled",
    ),
    KnownDivergence(
        id="partition-sparse-nn-too-large-typeerror",
        transform="partition",
        kind=Kind.UPSTREAM_BUG,
        reason=(
            "sparse_nn reports an operation too large for a device with "
            "`node.target + ' is too large to fit into a device'`, which raises TypeError "
            "when the target is a function (call_function); the reference raises the "
            "intended RuntimeError."
        ),
        match=Match(stage=Stage.COMPARE, symptom=Symptom.IMPL_DIVERGENCE, place="exception-type",
                    diffs=(Diff("exception", right="TypeError"),), params=(("mode", "sparse_nn"),)),
        witness="conform.witnesses.partition:sparse_nn_too_large_function_witness",
        issue="unfiled",
    ),
    KnownDivergence(
        id="partition-cost-aware-unplaced",
        transform="partition",
        kind=Kind.UPSTREAM_BUG,
        reason=(
            "cost_aware ignores the result of its final device placement: when the merged "
            "partitions do not all fit the devices it returns partitions with empty "
            "logical_device_ids (and DAG nodes without devices) instead of failing. The "
            "reference reproduces the result; the partition oracle rejects it."
        ),
        match=Match(stage=Stage.TRANSFORM_REFERENCE, symptom=Symptom.CRASH,
                    exception="PartitionConstraintViolation", error=r"has no device",
                    params=(("mode", "cost_aware"),)),
        witness="conform.witnesses.partition:cost_aware_unplaced_witness",
        issue="unfiled",
    ),
    KnownDivergence(
        id="partition-kl-overfull-device",
        transform="partition",
        kind=Kind.UPSTREAM_BUG,
        reason=(
            "kl_based applies the chosen swap and then only places partitions that have no "
            "device, so a partition that grew keeps a device it no longer fits. The reference "
            "reproduces the result; the partition oracle rejects it."
        ),
        match=Match(stage=Stage.TRANSFORM_REFERENCE, symptom=Symptom.CRASH,
                    exception="PartitionConstraintViolation", error=r"needs \d+ bytes",
                    params=(("mode", "kl_based"),)),
        witness="conform.witnesses.partition:kl_overfull_device_witness",
        issue="unfiled",
    ),
    KnownDivergence(
        id="partition-kl-unplaced",
        transform="partition",
        kind=Kind.UPSTREAM_BUG,
        reason=(
            "kl_based ignores failed device placements (during the swap search and at the "
            "end), so a partition can be returned without a logical device. The reference "
            "reproduces the result; the partition oracle rejects it."
        ),
        match=Match(stage=Stage.TRANSFORM_REFERENCE, symptom=Symptom.CRASH,
                    exception="PartitionConstraintViolation", error=r"has no device",
                    params=(("mode", "kl_based"),)),
        witness="conform.witnesses.partition:kl_unplaced_witness",
        issue="unfiled",
    ),
    KnownDivergence(
        id="partition-aot-dag-by-position",
        transform="partition",
        kind=Kind.UPSTREAM_BUG,
        reason=(
            "aot_based keeps the partition ids the mapping gives, but dump_dag then looks each "
            "partition up by its id as a position in the partition list: ids that are not 0..n-1 "
            "(1 and 2 for two partitions) raise IndexError 'list index out of range'. The "
            "reference raises the same IndexError for such a map (a scattered map is a failure "
            "both sides share), except where it has already refused to order partitions around an "
            "in-place write (partition-inplace-order); then the two sides raise different "
            "exceptions, and upstream's is this bug. The trait reads the ids off the parameters."
        ),
        match=Match(case=AOT_IDS, stage=Stage.COMPARE, symptom=Symptom.IMPL_DIVERGENCE, place="exception-type",
                    params=(("mode", "aot_based"),),
                    diffs=(Diff("exception", left="RuntimeError", right="IndexError"),
                           Diff("message", left=r"cycle exists between partitions! \(.*touch the same memory.*",
                                right=r"list index out of range"))),
        witness="conform.witnesses.partition:aot_ids_past_count_witness",
        issue="unfiled",
    ),
    KnownDivergence(
        id="partition-kl-cyclic-partitions",
        transform="partition",
        kind=Kind.UPSTREAM_BUG,
        reason=(
            "kl_based can return partitions whose values flow from one partition to another and "
            "back, so no order of running them (and no DAG of them) exists; upstream returns them "
            "without complaint. The reference reproduces the result; the partition oracle rejects "
            "it. The trait follows the graph's values between upstream's own partitions."
        ),
        match=Match(case="conform.traits.partition:partitions_in_a_cycle", stage=Stage.TRANSFORM_REFERENCE,
                    symptom=Symptom.CRASH, exception="PartitionConstraintViolation", error=r"in a cycle",
                    params=(("mode", "kl_based"),)),
        witness="conform.witnesses.partition:kl_cycle_witness",
        issue="unfiled",
    ),
)
