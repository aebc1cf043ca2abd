"""Incremental evaluation of the cost-aware search's merge candidates.

Merging partitions ``i < j`` changes the list in one way only: both leave their places and
their union is appended at the end. Device placement is greedy in list order, so the
candidate's walk matches the current list's walk before ``i``. After it, the candidate has
more memory free on the devices that ``i`` and ``j`` took; that per-device offset is all
that separates the two walks for as long as no decision flips. A decision flips only when
an offset exceeds the margin by which the current walk made it: how much room the chosen
device kept, how much each device tried before it lacked, how far apart neighbours were
in the sort by free memory. Range-minimum indexes over those margins find, with one query
per offset, the first step that can flip; every step before it is known to repeat the
current walk and is skipped, and only the flippable steps are replayed.

The critical path is re-derived the same way. Only partitions whose finish time can
differ are recomputed: the merged one, those that changed device, their children, and
the descendants of any whose finish time actually changed. They are visited in a
topological order of the candidate's DAG. A candidate is dropped as soon as one finish
time plus the longest path after it (less what the changed partitions on that path can
take off it) proves the candidate's latency exceeds the best one found so far, which
cannot change the outcome of the search.

Every number compared is computed with the same operations, in the same order, as the
exhaustive evaluation (``CostAwareSearch._try``), so both give the same results.
"""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING

from reference._partition_candidate_paths import RoundPaths
from reference.partitioner_utils import Device

if TYPE_CHECKING:
    from reference._partition_cost_aware import CostAwareSearch

_INF = float("inf")


class MinIndex:
    """Sparse table over a list of numbers: the first position of a range whose value
    breaks a bound, in ``O(log n)`` lookups.

    Args:
        values (List[float]): the numbers, one per position.
    """

    __slots__ = ("levels",)

    def __init__(self, values: list[float]) -> None:
        levels = [values]
        width = 1
        while 2 * width <= len(values):
            below = levels[-1]
            # Entry x of the next level covers positions [x, x + 2 * width).
            levels.append(list(map(min, below, below[width:])))
            width *= 2
        self.levels = levels

    def first(self, lo: int, hi: int, bound: float, inclusive: bool) -> int:
        """First ``x`` in ``[lo, hi)`` with ``values[x] < bound`` (``<=`` when
        ``inclusive``), or ``hi`` when there is none."""
        levels = self.levels
        if lo >= hi:
            return hi
        # Mostly nothing breaks the bound: two overlapping blocks cover the range.
        p = (hi - lo).bit_length() - 1
        row = levels[p]
        low = min(row[lo], row[hi - (1 << p)])
        if low > bound or (low == bound and not inclusive):
            return hi
        top = len(levels) - 1
        x = lo
        while x < hi:
            p = min(top, (hi - x).bit_length() - 1)
            block = levels[p][x]
            if block > bound or (block == bound and not inclusive):
                x += 1 << p
                continue
            # The block holds a breaking value; halve it until one position is left.
            while p:
                p -= 1
                block = levels[p][x]
                if block > bound or (block == bound and not inclusive):
                    x += 1 << p
            return x
        return hi


class RoundTrace:
    """The current list's placement, step by step, with the margin of every decision.

    Args:
        devices (List[Device]): distinct devices.
        ext_at (List[List[Tuple[int, int]]]): per partition, ``(owner, bytes)`` of what
            it reads from other partitions.
        base_of (List[int]): per partition, the bytes of the nodes it holds.
        used_of (List[int]): per partition, its used memory (the cost on an empty device).
    """

    def __init__(self, devices: list[Device], ext_at: list[list[tuple[int, int]]], base_of: list[int],
                 used_of: list[int]) -> None:
        count_units, width = len(ext_at), len(devices)
        order = list(range(width))
        left = [d.available_mem_bytes for d in devices]
        count = [0] * width
        self.placed: list[int | None] = [None] * count_units
        # Before step k: free memory, partitions per device, device order before the sort;
        # at step k: the sorted order, the device chosen, the bytes it took.
        self.left: list[tuple[int, ...]] = []
        self.count: list[tuple[int, ...]] = []
        self.before: list[tuple[int, ...]] = []
        self.sorted: list[tuple[int, ...]] = []
        self.chosen: list[int] = []
        self.taken: list[int] = []
        # Margins: by how much a device tried before the chosen one lacked room, by how
        # much the chosen one had room to spare, how far apart sort neighbours were.
        self._short: list[list[float]] = [[_INF] * count_units for _ in range(width)]
        self._spare: list[list[float]] = [[_INF] * count_units for _ in range(width)]
        self._gap: dict[tuple[int, int], list[float]] = {}
        self._indexes: dict[object, MinIndex] = {}
        self.failed_at = count_units
        placed = self.placed
        for k in range(count_units):
            self.left.append(tuple(left))
            self.count.append(tuple(count))
            self.before.append(tuple(order))
            order.sort(key=left.__getitem__)
            items = ext_at[k]
            for d in order:
                if count[d]:
                    need = base_of[k]
                    for w, amount in items:
                        if placed[w] != d:
                            need += amount
                else:
                    need = used_of[k]
                if need < left[d]:
                    self._spare[d][k] = left[d] - need
                    break
                self._short[d][k] = need - left[d]
            else:
                self.failed_at = k
                return
            self.sorted.append(tuple(order))
            for a, b in zip(order, order[1:]):
                gap = self._gap.get((a, b))
                if gap is None:
                    gap = self._gap[(a, b)] = [_INF] * count_units
                gap[k] = left[b] - left[a]
            left[d] -= need
            count[d] += 1
            placed[k] = d
            self.chosen.append(d)
            self.taken.append(need)
        self.left.append(tuple(left))
        self.count.append(tuple(count))
        self.before.append(tuple(order))

    def _index(self, key: object, values: list[float]) -> MinIndex:
        index = self._indexes.get(key)
        if index is None:
            index = self._indexes[key] = MinIndex(values)
        return index

    def repeats_until(self, k: int, end: int, delta: list[int], count_delta: list[int]) -> int:
        """First step in ``[k, end)`` whose decision may differ in a walk that has
        ``delta`` more bytes free and ``count_delta`` more partitions per device than this
        one (same order before step ``k``, same needs), or ``end``."""
        counts = self.count[k]
        stop = end
        for d, extra in enumerate(delta):
            if (counts[d] + count_delta[d] == 0) != (counts[d] == 0):
                # The walks price this device differently (whole partition or increment):
                # only steps that never look at it repeat.
                stop = self._index(("short", d), self._short[d]).first(k, stop, _INF, False)
                stop = self._index(("spare", d), self._spare[d]).first(k, stop, _INF, False)
            elif extra > 0:
                stop = self._index(("short", d), self._short[d]).first(k, stop, extra, False)
            elif extra < 0:
                stop = self._index(("spare", d), self._spare[d]).first(k, stop, -extra, True)
            if stop == k:
                return k
        for (a, b), gap in self._gap.items():
            if delta[a] > delta[b]:
                stop = self._index((a, b), gap).first(k, stop, delta[a] - delta[b], True)
                if stop == k:
                    return k
        return stop


class CandidateEvaluator:
    """Latency of each merge candidate of one round of a :class:`CostAwareSearch`.

    Args:
        search (CostAwareSearch): the search, prepared for the round (its per-round
            structure and ``base_finish`` computed with ``trace.placed``).
        trace (RoundTrace): the current list's placement.
        prune (bool): whether bounds may drop candidates (needs non-negative latencies and
            transfer costs).
    """

    def __init__(self, search: CostAwareSearch, trace: RoundTrace, prune: bool) -> None:
        self.search, self.trace = search, trace
        self.paths = RoundPaths(search, trace.placed, prune)
        # Walk states seen this round -> the rest of the walk from there (the partitions
        # it moved, and free memory, counts and order at its end), or None when it failed.
        self.walks: dict[tuple, tuple | None] = {}

    def cost(self, i: int, j: int, best: float) -> float:
        """Critical path latency of the list with ``i`` and ``j`` merged; inf when it
        cannot be placed, or when it provably exceeds ``best``."""
        placement = self._place(i, j)
        if placement is None:
            return _INF
        moved, merged_device = placement
        return self.paths.latency(i, j, moved, merged_device, best)

    # Placement.

    def _place(self, i: int, j: int) -> tuple[dict[int, int], int] | None:
        """The candidate's devices where they differ from the current placement, and the
        merged partition's device; None when a partition finds no device."""
        s, tr = self.search, self.trace
        walked = self._walk(i, j)
        if walked is None:
            return None
        moved, left, count, order = walked
        merged = s._merged_unit(s.units[i], s.units[j])
        owner, out = s.owner, s.ix.out
        items = [(owner[x], c * out(x)) for x, c in merged.ext.items()]
        placed = tr.placed
        order.sort(key=left.__getitem__)
        for d in order:
            if count[d]:
                need = merged.base
                for w, amount in items:
                    if moved.get(w, placed[w]) != d:
                        need += amount
            else:
                need = merged.used_mem
            if need < left[d]:
                return moved, d
        return None

    def _walk(self, i: int, j: int) -> tuple[dict[int, int], list[int], list[int], list[int]] | None:
        """Place the candidate's list up to (not including) the merged partition: the
        partitions whose device differs from the current placement, and the free memory,
        partition counts and device order left; None when a partition finds no device."""
        s, tr = self.search, self.trace
        count_units, failed_at = len(s.units), tr.failed_at
        if i > failed_at:
            return None
        children, chosen, taken, walks = s.children, tr.chosen, tr.taken, self.walks
        width = len(s.devices)
        moved: dict[int, int] = {}
        marks: list[tuple[tuple, int]] = []
        pending = [c for c in children[i] if c > i] + [c for c in children[j] if c > j] + [j]
        heapq.heapify(pending)
        # Relative state (offsets against the trace) while the trace covers the step,
        # absolute state past the step where the current list failed.
        relative = i < failed_at
        if relative:
            delta, count_delta = [0] * width, [0] * width
            delta[chosen[i]] += taken[i]
            count_delta[chosen[i]] -= 1
            before: tuple[int, ...] = tr.before[i]
        else:
            left, count, order = list(tr.left[i]), list(tr.count[i]), list(tr.before[i])
        k = i + 1
        while k < count_units:
            while pending and pending[0] < k:
                heapq.heappop(pending)
            if relative and k == failed_at:
                lk, ck = tr.left[k], tr.count[k]
                left = [lk[d] + delta[d] for d in range(width)]
                count = [ck[d] + count_delta[d] for d in range(width)]
                order, relative = list(before), False
            if k == j:
                if relative:
                    delta[chosen[j]] += taken[j]
                    count_delta[chosen[j]] -= 1
                k += 1
                continue
            if relative:
                if not pending:
                    # Past every partition that reads a changed one, the rest of the walk
                    # follows from the offsets alone: other candidates reach such states.
                    state = (k, tuple(delta), tuple(count_delta), before)
                    rest = walks.get(state, marks)
                    if rest is not marks:
                        if rest is None:
                            return self._remember(marks, moved, None)
                        moved.update(rest[0])
                        left, count, order = list(rest[1]), list(rest[2]), list(rest[3])
                        return self._remember(marks, moved, (left, count, order))
                    marks.append((state, len(moved)))
                if before == tr.before[k] and (not pending or pending[0] != k):
                    end = min(pending[0] if pending else count_units, failed_at)
                    stop = tr.repeats_until(k, end, delta, count_delta)
                    if stop > k:
                        before, k = tr.sorted[stop - 1], stop
                        continue
                lk, ck = tr.left[k], tr.count[k]
                left = [lk[d] + delta[d] for d in range(width)]
                count = [ck[d] + count_delta[d] for d in range(width)]
                order = list(before)
                d = self._step(k, i, j, left, count, order, moved)
                if d is None:
                    return self._remember(marks, moved, None)
                if d != chosen[k]:
                    moved[k] = d
                    for c in children[k]:
                        if c > k:
                            heapq.heappush(pending, c)
                lk, ck = tr.left[k + 1], tr.count[k + 1]
                delta = [left[x] - lk[x] for x in range(width)]
                count_delta = [count[x] - ck[x] for x in range(width)]
                before = tuple(order)
            else:
                d = self._step(k, i, j, left, count, order, moved)
                if d is None:
                    return self._remember(marks, moved, None)
                moved[k] = d
                for c in children[k]:
                    if c > k:
                        heapq.heappush(pending, c)
            k += 1
        if relative:
            lk, ck = tr.left[count_units], tr.count[count_units]
            left = [lk[d] + delta[d] for d in range(width)]
            count = [ck[d] + count_delta[d] for d in range(width)]
            order = list(before)
        return self._remember(marks, moved, (left, count, order))

    def _remember(self, marks: list[tuple[tuple, int]], moved: dict[int, int],
                  end: tuple[list[int], list[int], list[int]] | None
                  ) -> tuple[dict[int, int], list[int], list[int], list[int]] | None:
        """Record how the walk went on from each marked state; pass the outcome through."""
        if marks:
            changes = list(moved.items())
            for state, since in marks:
                self.walks[state] = None if end is None else (
                    tuple(changes[since:]), tuple(end[0]), tuple(end[1]), tuple(end[2])
                )
        return None if end is None else (moved, *end)

    def _step(self, k: int, i: int, j: int, left: list[int], count: list[int], order: list[int],
              moved: dict[int, int]) -> int | None:
        """Replay the placement of partition ``k`` in the candidate's walk (state updated
        in place); the device, or None when none has room."""
        s, tr = self.search, self.trace
        placed, failed_at = tr.placed, tr.failed_at
        items, base = s.ext_at[k], s.base_of[k]
        order.sort(key=left.__getitem__)
        for d in order:
            if count[d]:
                need = base
                for w, amount in items:
                    if w == i or w == j:
                        need += amount
                        continue
                    # A partition later in the list has no device yet in either walk.
                    where = moved[w] if w in moved else placed[w] if w < k and w < failed_at else None
                    if where != d:
                        need += amount
            else:
                need = s.used_of[k]
            if need < left[d]:
                left[d] -= need
                count[d] += 1
                return d
        return None
