"""graph_manipulation: element sizes come from the float type table, and every other dtype
(int64 indices, bool masks) is assumed to take four bytes."""

from __future__ import annotations

from typing import Any

import torch

from plants import replace


def _element_size(meta: Any) -> int:
    if meta.dtype.is_floating_point:
        return torch.finfo(meta.dtype).bits // 8
    return 4


replace("graph_manipulation", "_element_size", _element_size)
