"""validator: Python's ``%`` is translated to z3's own ``%``, which is Euclidean (never
negative), where Python's remainder takes the divisor's sign."""

from __future__ import annotations

from typing import Any

from plants import replace


def mod(self: Any, p: Any, q: Any) -> Any:
    self.validator.add_assertion(q != 0)
    if p.is_int() and q.is_int():
        return p % q
    return p - self.floordiv(p, q) * q


replace("validator", "_PythonSemantics.mod", mod)
