"""A user's own pass as a one-sided registry row.

``conform run --transform mypkg.passes:fold_constants`` checks a pass that has no reference
twin: the transformed module must compute what the eager module computes (and agree across
devices). The name is ``MODULE:ATTR`` and may point at

* a ``GraphModule -> GraphModule`` function (returning the module, a ``PassResult``, or
  None when it rewrites the module in place),
* a ``torch.fx.Transformer`` subclass (``Pass(gm).transform()``),
* a ``torch.fx.passes.infra.pass_base.PassBase`` subclass or instance.

The person named the pass on the command line, so its module is imported; a name read from
a record is never imported (``conform replay`` asks for ``--transform`` or ``--plugin``).
Such a name is an implicit plugin: :func:`conform.plugins.load` accepts it, so it is loaded
in every campaign worker, in ``replay`` and in repro scripts like any ``--plugin MODULE``.

Example::

    >>> from conform.user_pass import row_for
    >>> row_for("torch.fx.experimental.optimization:remove_dropout").sides
    ('user',)
"""

from __future__ import annotations

from typing import Any

from conform.errors import UsageError
from conform.plugins import hookimpl
from conform.registry import Oracle, TransformSpec, load

#: What a one-sided row checks: there is no upstream side to compare with.
ORACLES = frozenset({Oracle.EAGER, Oracle.DEVICE})

_KINDS = {
    "graph_module": "a GraphModule -> GraphModule function",
    "transformer": "a torch.fx.Transformer subclass",
    "pass_base": "a PassBase pass",
}


def is_pass_name(name: str) -> bool:
    """Whether ``name`` has the ``MODULE:ATTR`` shape of a user's pass."""
    module, sep, attr = name.partition(":")
    return bool(sep and module and attr)


def convention_of(obj: Any, name: str) -> str:
    """The calling convention of a user's pass object.

    Raises:
        UsageError: ``obj`` is none of the accepted kinds of pass.
    """
    import torch.fx
    from torch.fx.passes.infra.pass_base import PassBase

    if isinstance(obj, type):
        if issubclass(obj, torch.fx.Transformer):
            return "transformer"
        if issubclass(obj, PassBase):
            return "pass_base"
    elif isinstance(obj, PassBase):
        return "pass_base"
    elif callable(obj):
        return "graph_module"
    what = f"the class {obj.__name__}" if isinstance(obj, type) else f"an object of type {type(obj).__name__}"
    raise UsageError(f"{name} is {what}, not a pass: name a GraphModule -> GraphModule function, a "
                     "torch.fx.Transformer subclass or a torch.fx.passes.infra.pass_base.PassBase")


def row_for(name: str) -> TransformSpec:
    """The one-sided row of the pass ``MODULE:ATTR`` (imported here), named ``name``.

    Raises:
        UsageError: the name is malformed, its module does not import, or it names no pass.
    """
    if not is_pass_name(name):
        raise UsageError(f"{name!r} is not a pass name: expected MODULE:ATTR, such as mypkg.passes:fold_constants")
    try:
        obj = load(name)
    except Exception as exc:
        raise UsageError(f"cannot load the pass {name}: {type(exc).__name__}: {exc}; give MODULE:ATTR of an "
                         "importable pass (such as mypkg.passes:fold_constants)") from None
    convention = convention_of(obj, name)
    doc = (getattr(obj, "__doc__", None) or "").strip().splitlines()
    summary = doc[0] if doc else ""
    return TransformSpec(
        name=name, target=name, convention=convention, oracles=ORACLES,
        description=f"user pass, {_KINDS[convention]}" + (f": {summary}" if summary else ""),
    )


class UserPass:
    """The plugin that adds one user's pass as a row."""

    def __init__(self, name: str) -> None:
        self.row = row_for(name)

    @hookimpl
    def conform_transforms(self) -> list[TransformSpec]:
        return [self.row]
