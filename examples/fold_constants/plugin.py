"""The fx-conform plugin of :mod:`examples.fold_constants.passes`: its row and its known
limitation.

``conform run --plugin examples.fold_constants.plugin --transform fold_constants`` checks
the pass against the eager module on generated cases; ``pytest --conform-plugin
examples.fold_constants.plugin`` makes the row available to the pytest plugin.
"""

from __future__ import annotations

import torch
import torch.fx

from conform.case import Case
from conform.known import Kind, KnownDivergence, Match, Witness
from conform.outcome import Symptom
from conform.plugins import hookimpl
from conform.registry import Oracle, TransformSpec
from examples.fold_constants.passes import _is_identity, _scalar_op
from generators.sources import Built

NAME = "fold_constants"
HERE = "examples.fold_constants.plugin"


@hookimpl
def conform_transforms() -> list[TransformSpec]:
    return [TransformSpec(
        name=NAME, target="examples.fold_constants.passes:fold_constants", convention="graph_module",
        description="fold_constants(gm): scalar add/mul chains folded, integer identities dropped",
        oracles=frozenset({Oracle.EAGER, Oracle.DEVICE}),
    )]


@hookimpl
def conform_known() -> list[KnownDivergence]:
    return [KnownDivergence(
        id="fold-constants-identity-aliases", transform=NAME, kind=Kind.BY_DESIGN,
        reason="x + 0 and x * 1 are dropped, so their result is x itself: an in-place op on it "
               "mutates x, and a bool x keeps its dtype where eager promotes it to int64",
        match=Match(symptom=Symptom.EAGER_MISMATCH, case=f"{HERE}:drops_an_identity"),
        witness=f"{HERE}:identity_then_inplace_witness",
        issue="unfiled",
    )]


def drops_an_identity(gm: torch.fx.GraphModule, built: Built, params: dict) -> bool:
    """Trait: the graph has ``x + 0``, ``x - 0`` or ``x * 1`` (integer constant), directly or
    once a chain is folded."""
    for node in gm.graph.nodes:
        op = _scalar_op(node)
        if op is None:
            continue
        family, operand, scalar = op
        inner = _scalar_op(operand)
        if inner is not None and inner[0] == family and len(operand.users) == 1:
            scalar = inner[2] + scalar if family == "add" else inner[2] * scalar
        if _is_identity(family, scalar):
            return True
    return False


class IdentityThenInplace(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x + 0
        y.mul_(2)
        return y


def identity_then_inplace() -> Built:
    return Built(IdentityThenInplace(), (torch.randn(3, 4),), {})


def identity_then_inplace_witness() -> Witness:
    return Witness(Case(source="factory", spec={"factory": f"{HERE}:identity_then_inplace"}))
