"""The focus of the ``validator`` row: its checks read only the sizes of a case's inputs
(the symbols of the expression drawn with :func:`generators.params.optimization.validator_params`),
so focused draws are a few cheap pointwise operations over inputs of every rank, and the
row's time goes to expressions rather than to building, tracing and running modules."""

from __future__ import annotations

from generators.focus.focus import Focus

VALIDATOR = Focus(
    weights={"relu": 1.0, "add": 1.0, "mul": 1.0, "neg": 0.5},
    patterns={},
    share=0.9,
    max_nodes=6,
)
