"""Shards: split one campaign's case space over several machines.

``--shard I/N`` (1-based: ``1/4`` ... ``4/4``) makes a run draw only cases whose seed is
``I - 1`` modulo ``N``. A case's key covers its seed, so the N shards' cases are disjoint by
construction, on every machine, whatever each shard's worker count. Within a run, the
workers split their shard's seeds the same way (:func:`seed_share`), so no worker draws a
case that it would have to throw away. Shard stores are combined with ``conform merge``.

Example::

    >>> [parse_shard(f"{i}/3").owns(7) for i in (1, 2, 3)]
    [False, True, False]
    >>> stride, offset = seed_share(parse_shard("2/3"), workers=2, index=1)
    >>> [offset + stride * k for k in range(3)]
    [4, 10, 16]
"""

from __future__ import annotations

import dataclasses

from conform.errors import UsageError


@dataclasses.dataclass(frozen=True)
class Shard:
    """Shard ``index`` (1-based) of ``count``."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if isinstance(self.index, bool) or isinstance(self.count, bool) \
                or not isinstance(self.index, int) or not isinstance(self.count, int):
            raise UsageError(f"shard must be two integers I/N, got {self.index!r}/{self.count!r}")
        if self.count < 1 or not 1 <= self.index <= self.count:
            raise UsageError(f"shard {self.index}/{self.count} is out of range; expected I/N with 1 <= I <= N "
                             "(shards are numbered from 1)")

    @property
    def label(self) -> str:
        return f"{self.index}/{self.count}"

    def owns(self, seed: int) -> bool:
        """Whether a case with seed ``seed`` belongs to this shard."""
        return seed % self.count == self.index - 1


def seed_share(shard: Shard | None, workers: int, index: int) -> tuple[int, int]:
    """``(stride, offset)``: worker ``index`` of ``workers`` (0-based) in ``shard`` draws the
    case seeds ``offset + stride * k``. The shards split the seeds modulo their count, and a
    shard's workers split its seeds again, so every (shard, worker) pair draws from its own
    residue class."""
    count, part = (shard.count, shard.index - 1) if shard is not None else (1, 0)
    return workers * count, index * count + part


def parse_shard(text: str) -> Shard:
    """``"I/N"`` (1-based) as a :class:`Shard`; anything else raises :class:`UsageError`."""
    index, sep, count = text.strip().partition("/")
    try:
        if not sep:
            raise ValueError
        shard = (int(index), int(count))
    except ValueError:
        raise UsageError(f"shard must be I/N with 1 <= I <= N (e.g. 1/4), got {text!r}") from None
    return Shard(*shard)
