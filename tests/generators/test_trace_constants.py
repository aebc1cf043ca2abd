"""Random modules never write in place to a value tracing folds into a constant: the traced
module keeps that tensor across calls, so a second call would start from the first call's
result."""

from __future__ import annotations

from generators.vocab.base import Gene, Planner
from generators.vocab.patterns import Constant
from generators.vocab.pointwise import InPlace


def test_values_computed_from_constants_alone_are_not_written() -> None:
    p = Planner("float32", training=False, max_cost=50)
    constant = Constant().plan(p, Gene([0]))
    derived = p.add("relu", [constant], {"style": 0}, constant.shape, "float32", 1.0)
    assert derived.storage is None and not derived.traced
    x = p.new_input(constant.shape)
    mixed = p.add("add", [derived, x], {"style": 0}, constant.shape, "float32", 2.0)
    assert mixed.storage is not None and mixed.traced
    # the in-place kind only ever finds the traced value
    written = InPlace().plan(p, Gene([0]))
    assert written is not None and written.storage == mixed.storage
