"""Shards: split one campaign's case space over several machines.

``--shard I/N`` (1-based: ``1/4`` ... ``4/4``) makes a run check only the cases whose key
hashes to its shard. The hash is SHA-256 of the case key, so every process and machine
agrees, and the N shards partition the key space exactly: each case belongs to exactly one
shard. Shard stores are combined with ``conform merge``.

Example::

    >>> shard = parse_shard("2/3")
    >>> [parse_shard(f"{i}/3").owns("0123abcd") for i in (1, 2, 3)].count(True)
    1
"""

from __future__ import annotations

import dataclasses
import hashlib

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

    def owns(self, case_key: str) -> bool:
        """Whether the case with key ``case_key`` belongs to this shard."""
        digest = hashlib.sha256(case_key.encode()).digest()
        return int.from_bytes(digest[:8], "big") % self.count == self.index - 1


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
