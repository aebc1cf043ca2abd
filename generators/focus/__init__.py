"""Directed generation: what each transform is sensitive to.

A registry row names a :class:`~generators.focus.focus.Focus` (op-kind weights and
*patterns*, planner-level templates that plant a whole construct the transform rewrites).
:func:`generators.focus.draw.focused_specs` draws random-module specs from it, most of them
from a swarm subset of the focus and the rest from the general vocabulary.

The pattern kinds live in one module per transform family (``optimization``, ``normalize``,
``graph_utils``, ``split``) and join :data:`generators.vocab.VOCABULARY` as internal kinds
(never drawn by the general vocabulary), so everything they plant is an ordinary spec node.
"""

from __future__ import annotations

# The pattern modules define op kinds and the vocabulary imports them: loading the
# vocabulary first keeps that order whichever module is imported first.
import generators.vocab  # noqa: F401
