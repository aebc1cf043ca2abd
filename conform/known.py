"""The known-divergence registry: every accepted difference, declared once, with its reason.

An outcome that matches an entry is reported as *known* rather than as a failure. Each
entry carries a *witness*: a ``"module:function"`` returning a :class:`Witness` (a case,
the transform and its parameters) that shows the divergence. A test and every campaign
replay the witnesses; an entry whose witness no longer diverges is reported as *stale*.

To add an entry, append a :class:`KnownDivergence` to :data:`KNOWN` (``issue`` is the PyTorch
issue that reports the bug, or ``"unfiled"``)::

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

from conform.outcome import SIDES, DiffEntry, Outcome, Stage, Symptom
from generators.sources import trust_factory

if TYPE_CHECKING:
    from conform.case import Case


class Kind(StrEnum):
    UPSTREAM_BUG = "upstream-bug"  # upstream is wrong; the reference does the right thing
    BY_DESIGN = "by-design"  # a deliberate difference (an upstream limitation not copied, ...)


#: A :class:`Diff` value pattern for "the path exists on the other side only".
ABSENT = "<absent>"

#: A ``place`` pattern for a crash while applying the transform itself: not a metamorphic
#: oracle's second application or re-run (``"retrace:upstream"``, ...) and not the harness's
#: fingerprinting of the result.
APPLYING = r"(?!(retrace|idempotent|roundtrip|compose):|conform/fingerprints/).*"


@dataclasses.dataclass(frozen=True)
class Diff:
    r"""A pattern for one diff entry (:class:`~conform.outcome.DiffEntry`) of an outcome.

    ``path`` is a regular expression the entry's path must match in full
    (``r"fingerprint\.nodes\.nonzero(_\d+)?\[.*"``). ``left`` and ``right``, when set, must
    match the entry's two values in full (the :class:`~conform.outcome.Mismatch`'s sides:
    upstream and reference for a fingerprint or output comparison, eager and the
    implementation for an eager mismatch, reference and upstream for two exception types);
    ``right`` may refer back to a group of ``left`` (``left=r"(\w+)", right=r"\*{1,2}\1"``).
    :data:`ABSENT` matches a path that the side does not have.
    """

    path: str
    left: str | None = None
    right: str | None = None

    def __call__(self, entry: DiffEntry) -> bool:
        if not re.fullmatch(self.path, entry.path, re.S):
            return False
        patterns = []
        for pattern, value in ((self.left, entry.left), (self.right, entry.right)):
            if pattern == ABSENT:
                if value is not None:
                    return False
                pattern = None
            elif pattern is not None and value is None:
                return False
            patterns.append(pattern or ".*")
        if self.left in (None, ABSENT) and self.right in (None, ABSENT):
            return True
        # one expression over both values, so the right one may refer back to the left's groups
        joined = f"(?:{patterns[0]})\x00(?:{patterns[1]})"
        return re.fullmatch(joined, f"{entry.left or ''}\x00{entry.right or ''}", re.S) is not None


@dataclasses.dataclass(frozen=True)
class Match:
    """Declarative matcher over an outcome's structured fields; every field that is set must hold.

    Nothing here reads the engine's own prose (``outcome.message``, a diff's rendered
    ``detail``): a match names data the outcome carries, so rewording a message never turns an
    entry stale.

    ``stage``, ``symptom``, ``exception`` (the exception type's name), ``side`` (the
    implementation the symptom belongs to: ``"reference"``, ``"upstream"``, ``"both"`` or
    ``"user"``) and ``source`` (a case source name) compare equal. ``params`` holds key/value
    pairs the outcome's parameters must contain.

    ``place`` is a regular expression the outcome's place must match in full (an execution
    crash's place is ``"<impl>@<file:line:function>"``, an eager mismatch's
    ``"<impl>:outputs"``; the metamorphic oracles' places are ``"<oracle>:<impl>"``,
    ``"retrace:upstream"`` say; :data:`APPLYING` is any crash while applying the transform).
    ``node`` is a regular expression searched in the first diverging node's name. ``error`` is
    a regular expression searched in the raised exception's own message (``outcome.error``:
    what torch, upstream or the reference wrote, never the engine).

    ``diffs`` are :class:`Diff` patterns over the outcome's diff entries: each must match some
    entry. With ``diffs_only`` every entry must match one of them (a fingerprint that differs
    only under ``parent``, say).

    ``case`` names a *trait*, a ``"module:function"`` predicate over the case,
    ``(graph_module, built, params) -> bool`` (the traced module, the
    :class:`~generators.sources.Built` case and the transform's parameters). The engine
    evaluates the traits that the registry's entries for a transform name and records the
    ones that hold in ``outcome.notes["traits"]``; the entry matches only when its trait is
    among them. A trait lets an entry claim every symptom a bug causes on the cases that have
    the bug's shape (a conv module called twice, say) without claiming the same symptom on
    other cases.

    One bug often shows as several symptoms: ``Match(...) | Match(...)`` is an
    :class:`AnyMatch`, which holds when any of its matches does.
    """

    stage: Stage | None = None
    symptom: Symptom | None = None
    exception: str | None = None
    side: str | None = None
    place: str | None = None
    node: str | None = None
    source: str | None = None
    params: tuple[tuple[str, Any], ...] = ()
    case: str | None = None
    error: str | None = None
    diffs: tuple[Diff, ...] = ()
    diffs_only: bool = False

    def __post_init__(self) -> None:
        if self.side is not None and self.side not in SIDES:
            raise ValueError(f"Match(side={self.side!r}): expected one of {', '.join(SIDES)}")

    @property
    def cases(self) -> tuple[str, ...]:
        return (self.case,) if self.case else ()

    def __or__(self, other: Match | AnyMatch) -> AnyMatch:
        return AnyMatch((self,)) | other

    def __call__(self, outcome: Outcome) -> bool:
        if self.case is not None and self.case not in outcome.notes.get("traits", ()):
            return False
        if self.stage is not None and outcome.stage != self.stage:
            return False
        if self.symptom is not None and outcome.symptom != self.symptom:
            return False
        if self.exception is not None and outcome.exception != self.exception:
            return False
        if self.side is not None and outcome.side != self.side:
            return False
        if self.source is not None and outcome.source != self.source:
            return False
        if self.place is not None and not (outcome.place and re.fullmatch(self.place, outcome.place)):
            return False
        if self.node is not None and not (outcome.node and re.search(self.node, outcome.node)):
            return False
        if self.error is not None and not (outcome.error is not None and re.search(self.error, outcome.error, re.S)):
            return False
        if self.diffs or self.diffs_only:
            entries = [e for d in outcome.diffs for e in d.entries]
            if not all(any(pattern(e) for e in entries) for pattern in self.diffs):
                return False
            if self.diffs_only and not (entries and all(any(p(e) for p in self.diffs) for e in entries)):
                return False
        return all(outcome.params.get(k) == v for k, v in self.params)


@dataclasses.dataclass(frozen=True)
class AnyMatch:
    """Several matchers of which any may hold: one bug seen as several symptoms."""

    matches: tuple[Match, ...]

    @property
    def cases(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(c for m in self.matches for c in m.cases))

    @property
    def case(self) -> str | None:
        """The trait every alternative names, or None when they do not share one."""
        cases = {m.case for m in self.matches}
        return cases.pop() if len(cases) == 1 else None

    @property
    def place(self) -> str | None:
        places = {m.place for m in self.matches}
        return places.pop() if len(places) == 1 else None

    def __or__(self, other: Match | AnyMatch) -> AnyMatch:
        more = other.matches if isinstance(other, AnyMatch) else (other,)
        return AnyMatch((*self.matches, *more))

    def __call__(self, outcome: Outcome) -> bool:
        return any(m(outcome) for m in self.matches)


@dataclasses.dataclass(frozen=True)
class Witness:
    """A case that shows a known divergence: the engine checks ``case`` with ``transform``
    and ``params`` and expects an outcome matching the entry."""

    case: Case
    params: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class KnownDivergence:
    """One accepted difference between upstream and the reference.

    ``id`` names the entry in reports; ``transform`` is the registry transform it belongs to;
    ``kind`` says whether upstream is wrong or the difference is deliberate; ``reason`` explains
    the difference; ``match`` decides which outcomes the entry claims; ``witness`` is the
    ``"module:function"`` returning the :class:`Witness` that shows it.

    ``issue`` is a PyTorch issue URL (``https://github.com/pytorch/pytorch/issues/N``, or
    ``/pull/N`` when a pull request is the only report of the bug) that reports this very bug:
    same function, same trigger, same wrong behaviour. It is ``"unfiled"`` when no such report
    exists; a by-design entry links an issue only when one documents the limitation.
    """

    id: str
    transform: str
    kind: Kind
    reason: str
    match: Match | AnyMatch
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


# Traits and raw exception texts that several matchers of one entry share.
VARIADIC = "conform.traits.split:variadic_forward_with_kept_names"
COLLISION = "conform.traits.split:flattened_target_collision"
INPLACE = "conform.traits.split:inplace_write_across_partitions"
SEVERAL_TENSORS = "conform.traits.graph_utils:node_with_several_tensors"
_NO_SHAPE = r"'(tuple|list|immutable_list|immutable_dict|dict)' object has no attribute 'shape'"
KEYWORDS = "conform.traits.normalize:binary_op_with_keywords"
SELF = "conform.traits.normalize:calls_with_self_parameter"
DIM_ZERO = "conform.traits.normalize:size_of_dim_zero"
SHARED = "conform.traits.optimization:fold_into_shared_module"
SCALAR = "conform.traits.optimization:arithmetic_with_a_number"
_NO_TARGET = r"'(int|float|bool|NoneType)' object has no attribute 'target'"
UNEVEN_POOL = "conform.traits.optimization:uneven_adaptive_pool_in_layout"
SHARED_OPERAND = "conform.traits.optimization:batched_shared_operand"
_SPLIT_SIZES = "split_with_sizes expects split_sizes to sum exactly"
MUTATION = "conform.traits.optimization:in_place_update_in_merged_graph"
TRUNCATION = "conform.traits.optimization:truncation_in_expression"
BITWISE = "conform.traits.optimization:bitwise_in_expression"
PARTITION_INPLACE = "conform.traits.partition:inplace_write_across_partitions"


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
            "before the output."
        ),
        match=Match(stage=Stage.TRANSFORM_UPSTREAM, symptom=Symptom.CRASH, exception="KeyError",
                    case="conform.traits.split:returned_attribute_with_original_order"),
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
            "input or dependency for it."
        ),
        match=Match(stage=Stage.TRANSFORM_UPSTREAM, symptom=Symptom.CRASH, exception="RuntimeError",
                    case="conform.traits.split:symbol_bound_in_reading_partition",
                    error="cycle exists between partitions"),
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
    KnownDivergence(
        id="graph-manipulation-multi-tensor-node-size",
        transform="graph_manipulation",
        kind=Kind.UPSTREAM_BUG,
        reason=(
            "get_size_of_node reads tensor_meta.shape, but ShapeProp records a tuple/list of "
            "TensorMetadata for a node producing several tensors (topk, chunk, split), so upstream "
            "raises AttributeError on any graph with one (also when a later node without a tensor "
            "result makes the reference raise RuntimeError: upstream stops at the multi-tensor node "
            "first). The reference counts every tensor the node produces."
        ),
        # also when a later node makes both raise: upstream fails on the multi-tensor node first
        match=Match(case=SEVERAL_TENSORS, exception="AttributeError", error=_NO_SHAPE)
              | Match(case=SEVERAL_TENSORS, place="exception-type",
                      diffs=(Diff("exception", right="AttributeError"), Diff("message", right=f".*{_NO_SHAPE}.*"))),
        witness="conform.witnesses.graph_utils:tuple_output_sizes_witness",
        issue="unfiled",
    ),
    KnownDivergence(
        id="annotate-getitem-bare-generic",
        transform="annotate_getitem_nodes",
        kind=Kind.UPSTREAM_BUG,
        reason=(
            "a getitem on a value annotated with a bare typing.Tuple or typing.List (no element "
            "types) raises AssertionError upstream; the reference leaves the getitem unannotated."
        ),
        match=Match(stage=Stage.TRANSFORM_UPSTREAM, symptom=Symptom.CRASH, exception="AssertionError",
                    case="conform.traits.graph_utils:getitem_of_bare_generic",
                    error=r"out of range for parameterized_types \(len=0\)|Expected 1 parameterized "
                            r"type, got 0"),
        witness="conform.witnesses.graph_utils:bare_tuple_witness",
        issue="unfiled",
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
                    case="conform.traits.graph_utils:slice_of_tuple",
                    error="not supported between instances of 'int' and 'slice'"),
        witness="conform.witnesses.graph_utils:sliced_tuple_witness",
        issue="unfiled",
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
        match=Match(stage=Stage.TRANSFORM_UPSTREAM, symptom=Symptom.CRASH, exception="KeyError",
                    case="conform.traits.graph_utils:slice_of_namedtuple", error=r"\A\("),
        witness="conform.witnesses.graph_utils:sliced_namedtuple_witness",
        issue="unfiled",
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
                    case="conform.traits.graph_utils:getitem_of_annotated_class",
                    error="has no attribute '_fields'"),
        witness="conform.witnesses.graph_utils:annotated_class_witness",
        issue="unfiled",
    ),
    KnownDivergence(
        id="annotate-getitem-slice-of-bare-list",
        transform="annotate_getitem_nodes",
        kind=Kind.UPSTREAM_BUG,
        reason=(
            "a slice of a value annotated with a bare typing.List (seq[1:]) raises AssertionError "
            "upstream: the List branch asserts exactly one element type whatever the index. The "
            "slice of an untyped list has no element type to give, and the reference leaves it "
            "unannotated."
        ),
        match=Match(stage=Stage.TRANSFORM_UPSTREAM, symptom=Symptom.CRASH, exception="AssertionError",
                    case="conform.traits.graph_utils:slice_of_bare_list",
                    error=r"Expected 1 parameterized type, got 0"),
        witness="conform.witnesses.graph_utils:sliced_bare_list_witness",
        issue="unfiled",
    ),
    KnownDivergence(
        id="annotate-getitem-slice-of-list",
        transform="annotate_getitem_nodes",
        kind=Kind.UPSTREAM_BUG,
        reason=(
            "upstream types every getitem of a value typed as a sequence of one element type "
            "(list[T], typing.List[T], Tuple[T, ...]) as T, slices included: seq[1:] is "
            "annotated T though it is a list (or tuple), and an index into the slice is then left "
            "untyped. A slice of a sequence has the sequence's type; the reference annotates it so."
        ),
        match=Match(stage=Stage.COMPARE, symptom=Symptom.IMPL_DIVERGENCE,
                    case="conform.traits.graph_utils:slice_of_typed_list",
                    diffs=(Diff(r"fingerprint\.getitem\w*"),)),
        witness="conform.witnesses.graph_utils:sliced_list_witness",
        issue="unfiled",
    ),
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
                "...) or torch.pow(input=2, ...), which raises when the module runs. The reference "
                "keeps 'self' wherever the callable takes it."
            ),
            match=Match(case=SELF, stage=Stage.EXECUTE, symptom=Symptom.CRASH, side="upstream", place="upstream@.*",
                        error=r"\A[^\n]*(missing value for argument 'self'|received an invalid combination of "
                              r"arguments - got \([^)]*\binput=)")
                  | Match(case=SELF, diffs=(Diff(r".*\]\.self", left=ABSENT),)),
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
            "tuple). The reference answers size(0) with the size of dimension 0."
        ),
        match=Match(case=DIM_ZERO, stage=Stage.EXECUTE, symptom=Symptom.CRASH, side="upstream", place="upstream@.*")
              | Match(case=DIM_ZERO, symptom=Symptom.EAGER_MISMATCH, side="upstream")
              | Match(case=DIM_ZERO, stage=Stage.COMPARE, symptom=Symptom.IMPL_DIVERGENCE, place="outputs")
              | Match(case=DIM_ZERO, stage=Stage.TRANSFORM_UPSTREAM, symptom=Symptom.CRASH, place=APPLYING,
                      exception="TypeError"),
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
            "split raises, or, when the batch size happens to equal the summed rows, the merged "
            "module silently returns wrong blocks (an eager mismatch and an output divergence). "
            "The reference stacks rows only for a right operand of at most 2 dims and multiplies "
            "batched ones one by one."
        ),
        match=Match(case=SHARED_OPERAND, error=_SPLIT_SIZES)
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
)


def _trust_witness_modules() -> None:
    """Witness cases are factory cases of the witness modules: trust the functions those
    modules define, so a recorded witness replays (nothing else they import is trusted)."""
    for module_name in sorted({entry.witness.partition(":")[0] for entry in KNOWN}):
        trust_factory(f"{module_name}:*")


_trust_witness_modules()


_CACHE: dict[str, Any] = {}


def entries() -> tuple[KnownDivergence, ...]:
    """Every registered entry: the built-in :data:`KNOWN` and the entries plugins add."""
    from conform import plugins

    stamp = (plugins.generation(), id(KNOWN))
    if _CACHE.get("stamp") != stamp:
        _CACHE["entries"] = tuple(plugins.collect("conform_known"))
        _CACHE["stamp"] = stamp
    return _CACHE["entries"]


def traits_for(transform: str) -> list[str]:
    """The trait predicates that entries for ``transform`` name, in registry order."""
    return list(dict.fromkeys(c for e in entries() if e.transform == transform for c in e.match.cases))


def classify(outcome: Outcome) -> KnownDivergence | None:
    """The first registry entry matching ``outcome``, or None."""
    for entry in entries():
        if entry.matches(outcome):
            return entry
    return None


def by_id() -> dict[str, KnownDivergence]:
    return {entry.id: entry for entry in entries()}


def load_witness(entry: KnownDivergence) -> Witness:
    """Call the entry's witness function."""
    from conform.registry import load

    witness = load(entry.witness)()
    if not isinstance(witness, Witness):
        raise TypeError(f"witness {entry.witness} returned {type(witness).__name__}, expected Witness")
    return witness
