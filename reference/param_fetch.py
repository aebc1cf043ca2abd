"""Lowering attributes: the constructor arguments and tensors a backend needs to rebuild a
standard module, attached to the ``call_module`` nodes that call it.

:data:`module_fetch_book` says, per module class, which attributes to fetch and for which
version of the class that list was written; a module newer than its entry is refused rather
than read with possibly renamed attributes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn
from torch.fx import GraphModule

__all__ = [
    "default_matching",
    "extract_attrs_for_lowering",
    "lift_lowering_attrs_to_nodes",
]


def default_matching(name: str, target_version: int) -> str:
    """Attribute name to read for ``name`` on a module of version ``target_version``: the
    name itself (no class has renamed a listed attribute yet).

    Args:
        name (str): the attribute as listed in :data:`module_fetch_book`.
        target_version (int): the module's ``_version``.

    Returns:
        str: the attribute name to read.
    """
    return name


_CONV_ATTRS = ["weight", "bias", "kernel_size", "stride", "padding", "dilation", "groups", "padding_mode"]
_MAXPOOL_ATTRS = ["kernel_size", "stride", "padding", "dilation", "return_indices", "ceil_mode"]

#: Module class -> (version the list was written for, attributes to fetch, name matcher).
module_fetch_book: dict[type, tuple[int, list[str], Callable[[str, int], str]]] = {
    nn.Linear: (1, ["weight", "bias"], default_matching),
    nn.Conv2d: (1, _CONV_ATTRS, default_matching),
    nn.BatchNorm2d: (2, ["weight", "bias", "running_mean", "running_var", "eps"], default_matching),
    nn.AdaptiveAvgPool2d: (1, [], default_matching),
    nn.MaxPool2d: (1, _MAXPOOL_ATTRS, default_matching),
    nn.ReLU: (1, ["inplace"], default_matching),
}


def extract_attrs_for_lowering(mod: nn.Module) -> dict[str, Any]:
    """The lowering attributes of ``mod``: ``name`` (its qualified class name) and every
    attribute its :data:`module_fetch_book` entry lists.

    Args:
        mod (nn.Module): a module whose exact class is in the book.

    Returns:
        Dict[str, Any]: attribute name -> value (tensors are the module's own).

    Raises:
        RuntimeError: the class is not in the book, or the module's ``_version`` is newer
            than the entry.
    """
    name = torch.typename(mod)
    # exact class: a subclass may have changed what its attributes mean
    entry = module_fetch_book.get(type(mod))
    if entry is None:
        raise RuntimeError(
            f"{name} is not in the module_fetch_book yet; add an entry for it to fetch its "
            "lowering attributes."
        )
    version, attrs, matching = entry
    if mod._version > version:
        raise RuntimeError(
            f"Fetcher version {version} cannot fetch {name} version {mod._version}; its "
            "attribute list in module_fetch_book needs updating."
        )
    fetched: dict[str, Any] = {"name": name}
    for attr in attrs:
        fetched[attr] = getattr(mod, matching(attr, mod._version))
    return fetched


def lift_lowering_attrs_to_nodes(fx_module: GraphModule) -> None:
    """Set ``node.attrs_for_lowering`` on every ``call_module`` node of ``fx_module`` that
    calls a leaf module, descending into called ``GraphModule`` children.

    Args:
        fx_module (GraphModule): the module to annotate in place.

    Raises:
        RuntimeError: a called leaf module cannot be fetched (see
            :func:`extract_attrs_for_lowering`).
    """
    for node in fx_module.graph.nodes:
        if node.op != "call_module":
            continue
        called = fx_module.get_submodule(node.target)
        if isinstance(called, GraphModule):
            lift_lowering_attrs_to_nodes(called)
        else:
            node.attrs_for_lowering = extract_attrs_for_lowering(called)
