"""Known divergences of the graph utilities: graph_manipulation and annotate_getitem_nodes (conform/traits/graph_utils.py,
conform/witnesses/graph_utils.py).

Entries keep the order in which :func:`conform.known.classify` tries them.
"""

from __future__ import annotations

from conform.known.core import Diff, Kind, KnownDivergence, Match
from conform.outcome import Stage, Symptom

# Traits and raw exception texts that several matchers of one entry share.
SEVERAL_TENSORS = "conform.traits.graph_utils:node_with_several_tensors"
_NO_SHAPE = r"'(tuple|list|immutable_list|immutable_dict|dict)' object has no attribute 'shape'"


KNOWN: tuple[KnownDivergence, ...] = (
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
)
