"""Parameter strategies shared by every transform family: dtypes and devices.

Each factory has the registry's parameter signature, ``(graph_module) -> SearchStrategy[dict]``,
and draws JSON-able dicts; the narrower strategies (:func:`dtypes`, :func:`devices`) take
keyword-only knobs where None means "draw it".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from hypothesis import strategies as st

#: Floating dtypes a case may be converted to, by name.
FLOAT_DTYPES: tuple[str, ...] = ("float32", "float64", "bfloat16")


def available_devices() -> list[str]:
    """``"cpu"``, plus ``"cuda"`` when a CUDA device is present."""
    return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]


def dtypes(*, choices: Sequence[str] | None = None) -> st.SearchStrategy[str]:
    """A floating dtype name, shrinking toward float32.

    Args:
        choices: dtype names to draw from; None is :data:`FLOAT_DTYPES`.

    Returns:
        A strategy of names such as ``"float64"`` (``getattr(torch, name)`` gives the dtype).
    """
    names = tuple(choices) if choices is not None else FLOAT_DTYPES
    unknown = [n for n in names if not isinstance(getattr(torch, n, None), torch.dtype)]
    if unknown or not names:
        raise ValueError(f"unknown dtype names {unknown} (valid: {', '.join(FLOAT_DTYPES)})")
    return st.sampled_from(names)


def devices(*, cuda: bool | None = None) -> st.SearchStrategy[str]:
    """A device name, shrinking toward ``"cpu"``.

    Args:
        cuda: True to always draw ``"cuda"`` (an error without a GPU), False never, None
            to draw it when a GPU is present.
    """
    if cuda is True:
        if not torch.cuda.is_available():
            raise ValueError("cuda=True but no CUDA device is available")
        return st.just("cuda")
    if cuda is False:
        return st.just("cpu")
    return st.sampled_from(available_devices())


def graph_dtypes(graph_module: torch.fx.GraphModule) -> list[str]:
    """Floating dtypes of the module's parameters and buffers, by name, first seen first."""
    seen: dict[str, None] = {}
    for tensor in [*graph_module.parameters(), *graph_module.buffers()]:
        if tensor.is_floating_point():
            seen.setdefault(str(tensor.dtype).removeprefix("torch."), None)
    return list(seen)


def dtype_params(graph_module: torch.fx.GraphModule) -> st.SearchStrategy[dict[str, Any]]:
    """``{"dtype": name}``: the module's own floating dtype first (where shrinking goes),
    then the others."""
    own = [d for d in graph_dtypes(graph_module) if d in FLOAT_DTYPES]
    order = [*own, *(d for d in FLOAT_DTYPES if d not in own)]
    return dtypes(choices=order).map(lambda d: {"dtype": d})


def device_params(graph_module: torch.fx.GraphModule) -> st.SearchStrategy[dict[str, Any]]:
    """``{"device": name}`` over the devices present."""
    return devices().map(lambda d: {"device": d})


def dtype_device_params(graph_module: torch.fx.GraphModule) -> st.SearchStrategy[dict[str, Any]]:
    """``{"dtype": name, "device": name}``."""
    return st.builds(lambda a, b: {**a, **b}, dtype_params(graph_module), device_params(graph_module))
