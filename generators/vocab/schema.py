"""Field checks for random-module specs: what each value of a spec may be.

A spec is data that may come from anywhere (a results file, a report, a hand edit), and
the op kinds paste its values into Python source that is compiled and run. So every value
is checked before any source is written: names must be the generator's own (``x3``,
``v7``, ``fc2``), numbers are ints, bools or finite floats within bounds, and a string
is accepted only from a closed set. A failed check raises
:class:`~generators.sources.SpecError` naming the field's path in the spec, such as
``nodes[3].attrs.style``.

Each op kind describes its attributes with :class:`Field` objects (``OpKind.fields``);
:func:`check_fields` applies such a description to a dict.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from generators.sources import SpecError
from generators.vocab.base import MAX_ELEMENTS

#: The largest rank a spec's shapes, dims and permutations may name.
MAX_RANK = 24
#: Bound on the size-like integers of a spec (dims, widths, channels, counts).
MAX_SIZE = MAX_ELEMENTS
#: Bound on the magnitude of float literals.
MAX_FLOAT = 1.0e6


def show(value: Any, limit: int = 48) -> str:
    """A short repr of ``value`` for an error message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Field:
    """One value's rule; ``optional`` fields may be absent from their dict."""

    optional: bool = False

    def check(self, value: Any, path: str) -> None:
        raise NotImplementedError

    def maybe(self) -> Field:
        """The same rule, for a field that may be absent."""
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.optional = True
        return clone


class Int(Field):
    """An int in ``[lo, hi]`` (a bool is not an int here); ``none`` allows None."""

    def __init__(self, lo: int, hi: int, *, none: bool = False) -> None:
        self.lo, self.hi, self.none = lo, hi, none

    def check(self, value: Any, path: str) -> None:
        if value is None and self.none:
            return
        if not isinstance(value, int) or isinstance(value, bool):
            raise SpecError(f"{path}: {show(value)} is not an integer")
        if not self.lo <= value <= self.hi:
            raise SpecError(f"{path}: {value} is outside [{self.lo}, {self.hi}]")


def size(lo: int = 1) -> Int:
    """A size-like int: a dim, a width, a channel count."""
    return Int(lo, MAX_SIZE)


def dim() -> Int:
    """A dimension index, possibly negative."""
    return Int(-MAX_RANK, MAX_RANK)


class Bool(Field):
    def check(self, value: Any, path: str) -> None:
        if not isinstance(value, bool):
            raise SpecError(f"{path}: {show(value)} is not a bool")


class Float(Field):
    """A finite number (int or float, not bool) of magnitude at most ``MAX_FLOAT``."""

    def __init__(self, *, none: bool = False) -> None:
        self.none = none

    def check(self, value: Any, path: str) -> None:
        if value is None and self.none:
            return
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise SpecError(f"{path}: {show(value)} is not a number")
        if not (math.isfinite(value) and abs(value) <= MAX_FLOAT):
            raise SpecError(f"{path}: {show(value)} is not a finite number of magnitude at most {MAX_FLOAT:g}")


class OneOf(Field):
    """A value from a closed set (strings pasted into code come only from such sets)."""

    def __init__(self, values: Iterable[Any]) -> None:
        self.values = tuple(values)

    def check(self, value: Any, path: str) -> None:
        # exact types: True is not 1, 1.0 is not 1
        if not any(type(value) is type(v) and value == v for v in self.values):
            raise SpecError(f"{path}: {show(value)} is not one of {', '.join(map(repr, self.values))}")


class Name(Field):
    """A name the generator makes: one of ``prefixes`` followed by a positive counter
    (``fc3``, ``v12``). Such a name is a plain identifier, never a keyword or dunder."""

    def __init__(self, *prefixes: str) -> None:
        self.prefixes = prefixes
        self.pattern = re.compile(f"(?:{'|'.join(map(re.escape, prefixes))})[1-9][0-9]{{0,8}}")

    def check(self, value: Any, path: str) -> None:
        if not isinstance(value, str) or not value.isidentifier():
            raise SpecError(f"{path}: {show(value)} is not an identifier")
        if not self.pattern.fullmatch(value):
            expected = " or ".join(f"'{p}<n>'" for p in self.prefixes)
            raise SpecError(f"{path}: {show(value)} is not a generated name ({expected})")


class IntList(Field):
    """A list of ints in ``[lo, hi]`` with a length in ``[min_len, max_len]``; ``numel``
    bounds the product (for shapes)."""

    def __init__(self, lo: int = 0, hi: int = MAX_SIZE, *, min_len: int = 0, max_len: int = MAX_RANK,
                 numel: int | None = None) -> None:
        self.item = Int(lo, hi)
        self.min_len, self.max_len, self.numel = min_len, max_len, numel

    def check(self, value: Any, path: str) -> None:
        if not isinstance(value, list):
            raise SpecError(f"{path}: {show(value)} is not a list")
        if not self.min_len <= len(value) <= self.max_len:
            raise SpecError(f"{path}: has {len(value)} items, expected {self.min_len} to {self.max_len}")
        for i, item in enumerate(value):
            self.item.check(item, f"{path}[{i}]")
        if self.numel is not None and math.prod(value) > self.numel:
            raise SpecError(f"{path}: {value} has {math.prod(value)} elements, more than {self.numel}")


def shape() -> IntList:
    """A tensor shape: small non-negative ints, bounded rank and element count."""
    return IntList(0, MAX_SIZE, numel=MAX_ELEMENTS)


class NameList(Field):
    def __init__(self, name: Name, *, max_len: int = MAX_SIZE) -> None:
        self.name, self.max_len = name, max_len

    def check(self, value: Any, path: str) -> None:
        if not isinstance(value, list) or len(value) > self.max_len:
            raise SpecError(f"{path}: {show(value)} is not a list of at most {self.max_len} names")
        for i, item in enumerate(value):
            self.name.check(item, f"{path}[{i}]")


def check_fields(data: Any, fields: Mapping[str, Field], path: str) -> None:
    """Check ``data`` is a dict holding exactly ``fields`` (optional ones may be absent)."""
    if not isinstance(data, dict):
        raise SpecError(f"{path}: {show(data)} is not a dict")
    # the values first: a bad value is named even where it changes which fields are expected
    for key, field in fields.items():
        if key in data:
            field.check(data[key], f"{path}.{key}")
    for key in data:
        if key not in fields:
            raise SpecError(f"{path}: unknown field {show(key)} (valid: {', '.join(fields) or 'none'})")
    for key, field in fields.items():
        if key not in data and not field.optional:
            raise SpecError(f"{path}.{key}: missing")


def style(options: Iterable[Any] | int) -> Int:
    """An index into a kind's table of templates."""
    count = options if isinstance(options, int) else len(tuple(options))
    return Int(0, count - 1)
