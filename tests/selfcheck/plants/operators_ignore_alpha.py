"""normalize: NormalizeOperators checks that a keyword is one of the operator's neutral ones
by name only, so ``torch.add(a, b, alpha=2)`` is respelled ``a + b``."""

from __future__ import annotations

from typing import Any

from plants import replace
from reference.normalize import NormalizeOperators


def _magic_spelling(self: NormalizeOperators, target: Any, args: tuple[Any, ...],
                    kwargs: dict[str, Any]) -> Any:
    try:
        replacement = self.binary_magic_method_remap.get(target)
    except TypeError:
        return None
    if replacement is None or len(args) != 2:
        return None
    neutral = self._neutral_kwargs.get(target, {})
    if any(name not in neutral for name in kwargs):
        return None
    return replacement


replace("normalize", "NormalizeOperators._magic_spelling", _magic_spelling)
