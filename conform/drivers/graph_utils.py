"""Drivers for the graph utilities that annotate a graph in place rather than returning a
new module: node sizes (``graph_manipulation``), lowering attributes (``param_fetch``) and
getitem types (``annotate_getitem_nodes``). Each returns the annotated subject; the row's
fingerprint reads the annotations."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from conform.adapters import Applied, Subject

if TYPE_CHECKING:
    from conform.implementations import Implementation
    from conform.registry import TransformSpec


def _annotated(subject: Subject) -> Applied:
    return Applied(runnable=subject.graph_module, value=None, subject=subject,
                   graphs=[subject.graph_module])


def drive_sizes(impl: Implementation, row: TransformSpec, subject: Subject, params: dict[str, Any]) -> Applied:
    """``get_size_of_all_nodes(gm, list(inputs))``: shape propagation with the same
    implementation's ``ShapeProp``, then ``node.size_bytes`` on every node."""
    target = impl.resolve(row.target)
    target(subject.graph_module, list(subject.inputs), **params)
    return _annotated(subject)


def drive_lowering_attrs(impl: Implementation, row: TransformSpec, subject: Subject,
                         params: dict[str, Any]) -> Applied:
    """``lift_lowering_attrs_to_nodes(gm)``: ``node.attrs_for_lowering`` on leaf-module
    calls."""
    impl.resolve(row.target)(subject.graph_module, **params)
    return _annotated(subject)


def drive_getitem_types(impl: Implementation, row: TransformSpec, subject: Subject,
                        params: dict[str, Any]) -> Applied:
    """``annotate_getitem_nodes(gm.graph)``: ``node.type`` on getitem nodes."""
    impl.resolve(row.target)(subject.graph_module.graph, **params)
    return _annotated(subject)
