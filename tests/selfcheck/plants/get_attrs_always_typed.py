"""schema_type_annotation: AnnotateTypesWithSchema types ``get_attr`` nodes even when asked
not to (``annotate_get_attrs=False``): the switch is stored but never read."""

from __future__ import annotations

from typing import Any

from plants import replace
from reference.schema_type_annotation import AnnotateTypesWithSchema

_annotate_get_attr = AnnotateTypesWithSchema.get_attr


def get_attr(self: AnnotateTypesWithSchema, target: Any, args: tuple[Any, ...],
             kwargs: dict[str, Any]) -> Any:
    asked, self.annotate_get_attrs = self.annotate_get_attrs, True
    try:
        return _annotate_get_attr(self, target, args, kwargs)
    finally:
        self.annotate_get_attrs = asked


replace("schema_type_annotation", "AnnotateTypesWithSchema.get_attr", get_attr)
