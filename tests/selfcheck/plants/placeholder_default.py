"""split_module: the parent module's inputs lose their default values when they are renamed
(``keep_original_node_name=False``): an argument the caller leaves out is then missing."""

from __future__ import annotations

from typing import Any

from plants import replace
from reference.split_module import _Parent

_bring_in = _Parent.bring_in


def bring_in(self: _Parent, node: Any) -> None:
    if node.op == "placeholder" and not self.keep_names and node.name not in self.env:
        new = self.graph.placeholder(node.target, type_expr=node.type)
        new.meta = node.meta.copy()
        self.env[node.name] = new
        return
    _bring_in(self, node)


replace("split_module", "_Parent.bring_in", bring_in)
