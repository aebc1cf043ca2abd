"""Which transform gets the next batch of draws: more time where new things still turn up.

The policy, in the spirit of HypoFuzz's scheduler (``hypofuzz/bayes.py``: each test's
estimated behaviours per second, ``1 / inputs since the last new branch`` times its
inputs per second, decides which test the worker fuzzes next):

1. **Warm-up.** The first ``warmup`` batches of every transform are handed out round robin
   in the order given, so each one has a measured rate before any is favoured.
2. **Discovery rate.** After every batch a worker reports its seconds and what was new:
   measurable lines reached for the first time
   (:meth:`conform.coverage_summary.CoverageAccumulator.add`) plus outcome origins seen for
   the first time. Each transform keeps exponentially decayed sums of both (a batch's weight
   halves every ``half_life`` of that transform's later batches), and its rate is
   ``decayed new / decayed seconds``: recent batches count most, so a transform that has
   saturated drops quickly and one that starts finding things again rises.
3. **Pick.** The next transform is drawn with probability
   ``(1 - floor) * rate / sum(rates) + floor / n``: proportional to its rate, plus an
   exploration floor so that no transform starves (each gets at least ``floor / n`` of the
   batches in expectation, and a saturated one can still be found to rise again). While no
   transform has found anything the draw is uniform.

Unlike HypoFuzz, which counts inputs since the last new branch per test, the unit here is a
batch (a worker reports per batch, not per input), and the weights are proportional rather
than a softmax, which would be dominated by whichever rate has the largest scale.

The choice is deterministic given ``seed`` and the sequence of :meth:`Scheduler.next` and
:meth:`Scheduler.report` calls.

Example::

    >>> scheduler = Scheduler(["split_module", "partition"], seed=0)
    >>> name = scheduler.next()
    >>> scheduler.report(name, seconds=4.2, cases=20, new_lines=31, new_origins=1)
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any

from conform.errors import UsageError, unknown


@dataclasses.dataclass
class _Stats:
    issued: int = 0  # batches handed out
    reported: int = 0  # batches reported back
    cases: int = 0
    seconds: float = 0.0
    found: int = 0  # new lines + new origins, undecayed total
    decayed_found: float = 0.0
    decayed_seconds: float = 0.0

    @property
    def rate(self) -> float:
        """Recent discoveries per second of batch time."""
        return self.decayed_found / self.decayed_seconds if self.decayed_seconds > 0 else 0.0


class Scheduler:
    """Hands out transforms for batches; see the module docstring for the policy.

    Args:
        transforms: the campaign's transform names, in registry order.
        seed: the campaign seed.
        warmup: batches each transform gets, round robin, before rates steer.
        half_life: after this many later batches of a transform, a batch weighs half.
        floor: the share of batches spread evenly whatever the rates, in [0, 1].
    """

    def __init__(self, transforms: list[str], seed: int, *, warmup: int = 2, half_life: float = 4.0,
                 floor: float = 0.2) -> None:
        if not transforms:
            raise UsageError("a scheduler needs at least one transform")
        if len(set(transforms)) != len(transforms):
            raise UsageError(f"transforms listed twice: {sorted({t for t in transforms if transforms.count(t) > 1})}")
        if not 0.0 <= floor <= 1.0:
            raise UsageError(f"floor must lie in [0, 1], not {floor}")
        if warmup < 0 or half_life <= 0:
            raise UsageError(f"warmup must be >= 0 and half_life > 0 (got {warmup}, {half_life})")
        self.transforms = list(transforms)
        self.warmup = warmup
        self.decay = 0.5 ** (1.0 / half_life)
        self.floor = floor
        self._rng = random.Random(f"scheduler:{seed}")
        self._issued = 0
        self.stats = {name: _Stats() for name in self.transforms}

    def next(self) -> str:
        """The transform for the next batch."""
        if self._issued < self.warmup * len(self.transforms):
            name = self.transforms[self._issued % len(self.transforms)]
        else:
            weights = self.weights()
            name = self._rng.choices(self.transforms, weights=[weights[t] for t in self.transforms])[0]
        self._issued += 1
        self.stats[name].issued += 1
        return name

    def report(self, transform: str, *, seconds: float, cases: int, new_lines: int, new_origins: int) -> None:
        """What one batch of ``transform`` took and found (counts new to the campaign)."""
        if transform not in self.stats:
            raise unknown("transform", transform, self.transforms)
        if seconds < 0 or cases < 0 or new_lines < 0 or new_origins < 0:
            raise UsageError(f"a batch report needs non-negative numbers (got seconds={seconds}, cases={cases}, "
                             f"new_lines={new_lines}, new_origins={new_origins})")
        s = self.stats[transform]
        found = new_lines + new_origins
        s.reported += 1
        s.cases += cases
        s.seconds += seconds
        s.found += found
        s.decayed_found = self.decay * s.decayed_found + found
        s.decayed_seconds = self.decay * s.decayed_seconds + seconds

    def weights(self) -> dict[str, float]:
        """The probability each transform gets the next batch once warm-up is over."""
        n = len(self.transforms)
        rates = {t: self.stats[t].rate for t in self.transforms}
        total = sum(rates.values())
        if total <= 0:
            return {t: 1.0 / n for t in self.transforms}
        return {t: (1.0 - self.floor) * rates[t] / total + self.floor / n for t in self.transforms}

    def state(self) -> dict[str, dict[str, Any]]:
        """Per transform: batches issued and reported, cases, seconds, discoveries, the
        current rate and share (JSON-able, for the campaign summary)."""
        weights = self.weights()
        return {t: {"batches": s.issued, "reported": s.reported, "cases": s.cases, "seconds": round(s.seconds, 3),
                    "found": s.found, "rate": round(s.rate, 4), "share": round(weights[t], 4)}
                for t, s in self.stats.items()}
