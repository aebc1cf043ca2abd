"""The known-divergence registry: every accepted difference, declared once, with its reason.

An outcome that matches an entry is reported as *known* rather than as a failure. Each
entry carries a *witness*: a ``"module:function"`` returning a :class:`Witness` (a case,
the transform and its parameters) that shows the divergence. A test and every campaign
replay the witnesses; an entry whose witness no longer diverges is reported as *stale*.

To add an entry, append a :class:`KnownDivergence` to :data:`KNOWN`::

    KnownDivergence(
        id="split-module-inplace-only-partition",
        transform="split_module",
        kind=Kind.UPSTREAM_BUG,
        reason="upstream drops the output of a partition holding only an in-place op",
        issue="https://github.com/pytorch/pytorch/issues/NNNNN",
        match=Match(stage=Stage.TRANSFORM_UPSTREAM, symptom=Symptom.CRASH, exception="KeyError"),
        witness="conform.witnesses.split:inplace_only_partition",
    )
"""

from __future__ import annotations

import dataclasses
import re
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from conform.outcome import Outcome, Stage, Symptom

if TYPE_CHECKING:
    from conform.case import Case


class Kind(StrEnum):
    UPSTREAM_BUG = "upstream-bug"  # upstream is wrong; the reference does the right thing
    BY_DESIGN = "by-design"  # a deliberate difference (an upstream limitation not copied, ...)


@dataclasses.dataclass(frozen=True)
class Match:
    """Declarative matcher; every field that is set must hold.

    ``message`` and ``node`` are regular expressions searched in the outcome's message (and
    rendered diffs) and first diverging node name; ``source`` is a case source name;
    ``params`` holds key/value pairs the outcome's parameters must contain.
    """

    stage: Stage | None = None
    symptom: Symptom | None = None
    exception: str | None = None
    message: str | None = None
    node: str | None = None
    source: str | None = None
    params: tuple[tuple[str, Any], ...] = ()

    def __call__(self, outcome: Outcome) -> bool:
        if self.stage is not None and outcome.stage != self.stage:
            return False
        if self.symptom is not None and outcome.symptom != self.symptom:
            return False
        if self.exception is not None and outcome.exception != self.exception:
            return False
        if self.source is not None and outcome.source != self.source:
            return False
        if self.message is not None:
            text = "\n".join([outcome.message, *(d.render() for d in outcome.diffs)])
            if not re.search(self.message, text, re.S):
                return False
        if self.node is not None and not (outcome.node and re.search(self.node, outcome.node)):
            return False
        return all(outcome.params.get(k) == v for k, v in self.params)


@dataclasses.dataclass(frozen=True)
class Witness:
    """A case that shows a known divergence: the engine checks ``case`` with ``transform``
    and ``params`` and expects an outcome matching the entry."""

    case: Case
    params: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class KnownDivergence:
    id: str
    transform: str
    kind: Kind
    reason: str
    match: Match
    witness: str
    issue: str | None = None

    def matches(self, outcome: Outcome) -> bool:
        return outcome.transform == self.transform and self.match(outcome)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "transform": self.transform,
            "kind": self.kind.value,
            "reason": self.reason,
            "issue": self.issue,
            "witness": self.witness,
        }


KNOWN: tuple[KnownDivergence, ...] = (
    KnownDivergence(
        id="split-module-kwargs-keep-node-name-crash",
        transform="split_module",
        kind=Kind.UPSTREAM_BUG,
        reason=(
            "with keep_original_node_name=True upstream recreates each parent placeholder with "
            "its node name as target, dropping the '*'/'**' of a *args/**kwargs forward: the split "
            "module's forward takes a positional 'kwargs' and a call with keywords raises TypeError. "
            "The reference keeps the marker."
        ),
        match=Match(stage=Stage.EXECUTE, symptom=Symptom.CRASH, exception="TypeError",
                    message="module upstream produced", params=(("keep_original_node_name", True),)),
        witness="conform.witnesses.split:kwargs_keep_node_name_witness",
    ),
    KnownDivergence(
        id="split-module-kwargs-keep-node-name-signature",
        transform="split_module",
        kind=Kind.UPSTREAM_BUG,
        reason=(
            "the structural side of split-module-kwargs-keep-node-name-crash: the parent's "
            "varargs/varkw placeholder target is 'kwargs' upstream and '**kwargs' in the reference."
        ),
        match=Match(stage=Stage.COMPARE, symptom=Symptom.IMPL_DIVERGENCE,
                    message=r"parent\.placeholders\[\d+\]\[1\]: (\w+) vs \*{1,2}\1\b",
                    params=(("keep_original_node_name", True),)),
        witness="conform.witnesses.split:kwargs_keep_node_name_witness",
    ),
    KnownDivergence(
        id="split-module-keep-order-returned-attribute",
        transform="split_module",
        kind=Kind.UPSTREAM_BUG,
        reason=(
            "with keep_original_order=True upstream fetches an attribute in the parent only for a "
            "partition that reads it; an attribute (a parameter, say) returned directly by forward "
            "is never fetched and building the output raises KeyError. The reference fetches it "
            "before the output."
        ),
        match=Match(stage=Stage.TRANSFORM_UPSTREAM, symptom=Symptom.CRASH, exception="KeyError",
                    params=(("keep_original_order", True),)),
        witness="conform.witnesses.split:returned_attribute_witness",
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
        match=Match(stage=Stage.COMPARE, symptom=Symptom.IMPL_DIVERGENCE,
                    message=r"nodes\[\d+\]\[2\]: (\w+) vs \1_\d+\b"),
        witness="conform.witnesses.split:flatten_collision_witness",
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
                    params=(("partition_affix", "pp"),)),
        witness="conform.witnesses.split:affix_with_regions_witness",
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
                    message=r"highest: -1, this node's: -\d"),
        witness="conform.witnesses.split:negative_ids_with_regions_witness",
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
            "input or dependency for it."
        ),
        match=Match(stage=Stage.TRANSFORM_UPSTREAM, symptom=Symptom.CRASH, exception="RuntimeError",
                    message="cycle exists between partitions"),
        witness="conform.witnesses.split:symbol_bound_in_partition_witness",
    ),
    KnownDivergence(
        id="graph-manipulation-multi-tensor-node-size",
        transform="graph_manipulation",
        kind=Kind.UPSTREAM_BUG,
        reason=(
            "get_size_of_node reads tensor_meta.shape, but ShapeProp records a tuple/list of "
            "TensorMetadata for a node producing several tensors (topk, chunk, split), so upstream "
            "raises AttributeError on any graph with one. The reference counts every tensor the "
            "node produces."
        ),
        match=Match(stage=Stage.TRANSFORM_UPSTREAM, symptom=Symptom.CRASH, exception="AttributeError",
                    message="object has no attribute 'shape'"),
        witness="conform.witnesses.graph_utils:tuple_output_sizes_witness",
    ),
    KnownDivergence(
        id="annotate-getitem-bare-generic",
        transform="annotate_getitem_nodes",
        kind=Kind.UPSTREAM_BUG,
        reason=(
            "a getitem on a value annotated with a bare typing.Tuple or typing.List (no element "
            "types) raises AssertionError upstream; the reference leaves the getitem unannotated."
        ),
        match=Match(stage=Stage.TRANSFORM_UPSTREAM, symptom=Symptom.CRASH, exception="AssertionError"),
        witness="conform.witnesses.graph_utils:bare_tuple_witness",
    ),
    KnownDivergence(
        id="annotate-getitem-slice-of-tuple",
        transform="annotate_getitem_nodes",
        kind=Kind.UPSTREAM_BUG,
        reason=(
            "a slice of a tuple-typed value (t[1:]) compares the slice with an int and raises "
            "TypeError upstream; the reference types it as the sliced tuple type."
        ),
        match=Match(stage=Stage.TRANSFORM_UPSTREAM, symptom=Symptom.CRASH, exception="TypeError",
                    message="not supported between instances of 'int' and 'slice'"),
        witness="conform.witnesses.graph_utils:sliced_tuple_witness",
    ),
    KnownDivergence(
        id="annotate-getitem-slice-of-namedtuple",
        transform="annotate_getitem_nodes",
        kind=Kind.UPSTREAM_BUG,
        reason=(
            "a slice of a NamedTuple-typed value looks the tuple of sliced field names up as one "
            "field and raises KeyError upstream; the reference types it as a tuple of the fields' "
            "types."
        ),
        match=Match(stage=Stage.TRANSFORM_UPSTREAM, symptom=Symptom.CRASH, exception="KeyError"),
        witness="conform.witnesses.graph_utils:sliced_namedtuple_witness",
    ),
    KnownDivergence(
        id="annotate-getitem-annotated-class",
        transform="annotate_getitem_nodes",
        kind=Kind.UPSTREAM_BUG,
        reason=(
            "upstream treats any class with __annotations__ as a NamedTuple, so a getitem on a "
            "value typed with an ordinary annotated class raises AttributeError (_fields); the "
            "reference only reads NamedTuple fields."
        ),
        match=Match(stage=Stage.TRANSFORM_UPSTREAM, symptom=Symptom.CRASH, exception="AttributeError",
                    message="_fields"),
        witness="conform.witnesses.graph_utils:annotated_class_witness",
    ),
)


def classify(outcome: Outcome) -> KnownDivergence | None:
    """The first registry entry matching ``outcome``, or None."""
    for entry in KNOWN:
        if entry.matches(outcome):
            return entry
    return None


def by_id() -> dict[str, KnownDivergence]:
    return {entry.id: entry for entry in KNOWN}


def load_witness(entry: KnownDivergence) -> Witness:
    """Call the entry's witness function."""
    from conform.registry import load

    witness = load(entry.witness)()
    if not isinstance(witness, Witness):
        raise TypeError(f"witness {entry.witness} returned {type(witness).__name__}, expected Witness")
    return witness
