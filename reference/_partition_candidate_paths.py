"""Critical path of a cost-aware merge candidate, derived from the current list's.

A candidate differs from the current list in a few partitions: the merged pair and the
partitions whose device its placement changed. Finish times can differ only downstream of
those, so only the merged partition, the changed ones, their children and the
descendants of any partition whose finish time actually changed are recomputed, in a
topological order of the candidate's DAG, with the same operations as a full pass.

A candidate that cannot beat the best latency found so far is dropped early. Under the
current placement, the longest path after each partition is known, and these paths form
a forest (each partition points to the child its longest path continues to). That path
still exists in the candidate; its length there is its current length plus what the
candidate changes on it: transfers into and out of the changed partitions, and the
merged pair's latency. When a recomputed finish time plus that length exceeds the best
latency, the candidate's latency does too.
"""

from __future__ import annotations

import heapq
from bisect import bisect_right
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from reference._partition_cost_aware import CostAwareSearch

_INF = float("inf")
#: Relative slack on a pruning bound: the bound adds up to a million floats in a different
#: order than the exact evaluation, which moves it by far less than this.
_ROUNDING = 1e-8
#: Steps of a candidate's recomputation at which its state is remembered for reuse.
_MARKS = frozenset((4, 8, 16))
_MARK_EVERY = 32


class RoundPaths:
    """Finish times and longest paths of the current list, for one round.

    Args:
        search (CostAwareSearch): the search, prepared for the round, with ``base_finish``
            computed under ``placed``.
        placed (List[Optional[int]]): the current list's device per partition.
        prune (bool): whether candidates may be dropped by bounds (needs non-negative
            latencies and transfer costs).
    """

    def __init__(self, search: CostAwareSearch, placed: list[int | None], prune: bool) -> None:
        s = self.search = search
        self.placed, self.prune = placed, prune
        ids, rate, units = s.devices, s.rate, s.units
        count_units = len(units)
        self.same = [[a.logical_id == b.logical_id for b in ids] for a in ids]
        # Transfer time of every edge when it crosses devices (rate is non-zero here: a
        # zero rate fails on the first latency computed, before any candidate).
        self.hops_in: list[list[tuple[int, float]]] = [
            [(p, s._size(units[p], units[v]) / rate) for p in s.parents_of[v]] for v in range(count_units)
        ]
        # Recomputation states seen this round -> (latest leaf finish, leaves recomputed)
        # of the rest of the recomputation from there.
        self.memo: dict[tuple[int, float], list[tuple[tuple, tuple[float, frozenset[int]]]]] = {}
        leaves = [k for k in range(count_units) if not s.children[k]]
        self.leaves_by_finish = sorted(leaves, key=s.base_finish.__getitem__, reverse=True)
        if prune:
            self._longest_paths()

    def _cost(self, a: int, b: int, hop: float) -> float:
        """Transfer time of edge ``a -> b`` under the current placement."""
        da, db = self.placed[a], self.placed[b]
        return 0.0 if da is not None and db is not None and self.same[da][db] else hop

    def _longest_paths(self) -> None:
        s, count_units = self.search, len(self.search.units)
        tail = [0.0] * count_units
        follow: list[int | None] = [None] * count_units
        hops_in = self.hops_in
        for v in reversed(s.topo):
            for p, hop in hops_in[v]:
                path = self._cost(p, v, hop) + s.overall[v] + tail[v]
                if follow[p] is None or path > tail[p]:
                    tail[p], follow[p] = path, v
        # Euler tour of the forest of longest paths: u lies on the path after v exactly
        # when v is in u's subtree.
        kids: list[list[int]] = [[] for _ in range(count_units)]
        for k, nxt in enumerate(follow):
            if nxt is not None:
                kids[nxt].append(k)
        enter, leave = [0] * count_units, [0] * count_units
        clock = 0
        for root in range(count_units):
            if follow[root] is not None:
                continue
            stack = [(root, False)]
            while stack:
                node, done = stack.pop()
                if done:
                    leave[node] = clock
                    continue
                enter[node] = clock
                clock += 1
                stack.append((node, True))
                stack.extend((c, False) for c in kids[node])
        for k in range(count_units):
            kids[k].sort(key=enter.__getitem__)
        self.tail, self.follow, self.enter, self.leave = tail, follow, enter, leave
        self.kids, self.kid_enter = kids, [[enter[c] for c in ks] for ks in kids]

    def latency(self, i: int, j: int, moved: dict[int, int], merged_device: int, best: float) -> float:
        """Critical path of the list with ``i`` and ``j`` merged (into slot ``i``), the
        partitions in ``moved`` on the given devices and the merged one on
        ``merged_device``; inf once it provably exceeds ``best``."""
        s = self.search
        units, children, finish, placed = s.units, s.children, s.base_finish, self.placed
        same, rate, hops_in, overall = self.same, s.rate, self.hops_in, s.overall
        at, below, memo = s.topo_at, s.below, self.memo
        count_units = len(units)
        merged = s._merged_unit(units[i], units[j])
        merged_latency = s._latency(merged)
        merged_parents = sorted((s.parents_of_set[i] | s.parents_of_set[j]) - {i, j})
        merged_children = (children[i] | children[j]) - {i, j}
        seeds = {i} | merged_children
        for k in moved:
            seeds.add(k)
            seeds.update(children[k])
        seeds.discard(j)
        # A topological order of the merged DAG: the merged partition takes the later
        # position of the two, and what lies between them and descends from the earlier
        # one follows it.
        a, b = sorted((at[i], at[j]))
        below_first = below[s.topo[a]]
        stride = count_units + 1
        pending = sorted(
            (b * stride if v == i else b * stride + at[v] if a < at[v] < b and below_first >> v & 1
             else at[v] * stride, v)
            for v in seeds
        )
        queued = set(seeds)
        bound = self._bound(i, j, moved, merged_device, merged_latency) if self.prune else None
        new: dict[int, float] = {}
        # Recomputed partitions are taken in key order from the seeds (``pending``) and
        # from the children of those whose finish time changed (``heap``).
        heap: list[tuple[int, int]] = []
        next_seed, seed_count = 0, len(pending)
        steps = 0
        leaves: list[tuple[int, int, float]] = []
        marks: list[tuple[int, tuple[int, float], tuple]] = []
        reuse = None
        while True:
            if heap and (next_seed == seed_count or heap[0][0] < pending[next_seed][0]):
                v = heapq.heappop(heap)[1]
                lone = not heap
            elif next_seed < seed_count:
                v = pending[next_seed][1]
                next_seed += 1
                lone = False
            else:
                break
            start = None
            if v == i:
                dv, after, latency = merged_device, merged_children, merged_latency
                for p in merged_parents:
                    fp = new[p] if p in new else finish[p]
                    dp = moved[p] if p in moved else placed[p]
                    if dp is not None and same[dp][dv]:
                        reach = fp + 0.0
                    else:
                        reach = fp + s._merged_size(p, i, i, j) / rate
                    if start is None or reach > start:
                        start = reach
            else:
                dv = moved[v] if v in moved else placed[v]
                after, latency = children[v], overall[v]
                for p, hop in hops_in[v]:
                    if p == i or p == j:
                        fp, dp = new[i], merged_device
                        hop = s._merged_size(i, v, i, j) / rate
                    else:
                        fp = new[p] if p in new else finish[p]
                        dp = moved[p] if p in moved else placed[p]
                    if dp is not None and dv is not None and same[dp][dv]:
                        reach = fp + 0.0
                    else:
                        reach = fp + hop
                    if start is None or reach > start:
                        start = reach
            value = (0.0 if start is None else start) + latency
            new[v] = value
            steps += 1
            if lone:
                # Everything still to recompute follows from v's finish time and the seeds
                # not yet taken: a state another candidate may have been in already.
                state = None
                found = memo.get((v, value))
                if found is not None:
                    state = self._state(pending, next_seed, new, i, j, moved, merged_device, merged_parents)
                    for known, rest in found:
                        if known == state:
                            reuse = rest
                            break
                    if reuse is not None:
                        break
                if steps in _MARKS or not steps % _MARK_EVERY:
                    if state is None:
                        state = self._state(pending, next_seed, new, i, j, moved, merged_device, merged_parents)
                    marks.append((steps, (v, value), state))
            if not (merged_children if v == i else children[v]):
                leaves.append((steps, v, value))
            if v == i or value != finish[v]:
                for c in after:
                    if c == j:
                        c = i
                    if c not in queued:
                        queued.add(c)
                        t = at[c]
                        heapq.heappush(heap, (b * stride + t if a < t < b and below_first >> c & 1
                                              else t * stride, c))
            if bound is not None and v != i and (steps <= 16 or not steps & (steps - 1)) and bound(v, value) > best:
                return _INF
        rest_max, rest_leaves = reuse if reuse is not None else (-_INF, frozenset())
        for since, key, state in marks:
            tail_leaves = [(u, value) for at_step, u, value in leaves if at_step >= since]
            longest = rest_max
            for _, value in tail_leaves:
                if value > longest:
                    longest = value
            memo.setdefault(key, []).append((state, (longest, rest_leaves | {u for u, _ in tail_leaves})))
        critical = 0.0
        for u in self.leaves_by_finish:
            if u != i and u != j and u not in new and u not in rest_leaves:
                if finish[u] > critical:
                    critical = finish[u]
                break
        for _, _, value in leaves:
            if value > critical:
                critical = value
        if rest_max > critical:
            critical = rest_max
        return critical

    def _state(self, pending: list[tuple[int, int]], next_seed: int, new: dict[int, float], i: int, j: int,
               moved: dict[int, int], merged_device: int, merged_parents: list[int]) -> tuple:
        """What the seeds not yet recomputed read: their devices and, for each input,
        its device and its recomputed finish time (None when not recomputed yet)."""
        parents_of = self.search.parents_of
        parts = []
        for _, c in pending[next_seed:]:
            if c == i:
                inputs = tuple((p, new.get(p), moved.get(p)) for p in merged_parents)
                parts.append((c, j, merged_device, inputs))
                continue
            inputs = tuple(
                (i, j, new.get(i), merged_device) if p == i or p == j else (p, new.get(p), moved.get(p))
                for p in parents_of[c]
            )
            parts.append((c, moved.get(c), inputs))
        return tuple(parts)

    def _bound(self, i: int, j: int, moved: dict[int, int], merged_device: int,
               merged_latency: float) -> _Bound:
        return _Bound(self, i, j, moved, merged_device, merged_latency)


class _Bound:
    """Lower bounds on one candidate's latency, from a recomputed partition's finish time
    and the longest path after it (see the module docstring).

    Each changed partition on that path changes its length by: the merged pair's latency
    (at worst the pair collapses into one partition no slower than either), the transfer
    out of it to the next partition on the path, and the transfer into it from the
    previous one, unless that one changed too (its transfer out already counts).
    """

    __slots__ = ("paths", "i", "j", "moved", "merged_device", "merged_latency", "changed", "extras", "arrivals")

    def __init__(self, paths: RoundPaths, i: int, j: int, moved: dict[int, int], merged_device: int,
                 merged_latency: float) -> None:
        self.paths, self.i, self.j, self.moved = paths, i, j, moved
        self.merged_device, self.merged_latency = merged_device, merged_latency
        self.changed = [*moved, i, j]
        self.extras: dict[int, float] = {}
        self.arrivals: dict[tuple[int, int], float] = {}

    def _device(self, k: int) -> int | None:
        if k == self.i or k == self.j:
            return self.merged_device
        return self.moved[k] if k in self.moved else self.paths.placed[k]

    def _crossing(self, p: int, c: int) -> float:
        """Transfer time of edge ``p -> c`` in the candidate."""
        paths, i, j = self.paths, self.i, self.j
        s = paths.search
        dp, dc = self._device(p), self._device(c)
        if dp is not None and dc is not None and paths.same[dp][dc]:
            return 0.0
        if p == i or p == j:
            return s._merged_size(i, c, i, j) / s.rate
        if c == i or c == j:
            return s._merged_size(p, i, i, j) / s.rate
        return s._size(s.units[p], s.units[c]) / s.rate

    def _base_crossing(self, p: int, c: int) -> float:
        s = self.paths.search
        return self.paths._cost(p, c, s._size(s.units[p], s.units[c]) / s.rate)

    def _extra(self, u: int) -> float:
        """Change of a path through ``u``: the pair's latency and the transfer out."""
        extra = self.extras.get(u)
        if extra is not None:
            return extra
        paths, i, j = self.paths, self.i, self.j
        overall = paths.search.overall
        extra = min(0.0, self.merged_latency - overall[i] - overall[j]) if u == i else 0.0
        nxt = paths.follow[u]
        if nxt is not None:
            if (u == i or u == j) and (nxt == i or nxt == j):
                extra -= self._base_crossing(u, nxt)
            else:
                extra += self._crossing(u, nxt) - self._base_crossing(u, nxt)
        self.extras[u] = extra
        return extra

    def _arrival(self, u: int, p: int) -> float:
        """Change of the transfer into ``u`` from ``p`` (nothing when ``p`` changed)."""
        if p in self.moved or p == self.i or p == self.j:
            return 0.0
        key = (u, p)
        change = self.arrivals.get(key)
        if change is None:
            change = self.arrivals[key] = self._crossing(p, u) - self._base_crossing(p, u)
        return change

    def __call__(self, v: int, value: float) -> float:
        """A lower bound on the candidate's latency, given partition ``v`` (recomputed,
        not the merged one) finishes at ``value``; less a rounding allowance."""
        paths = self.paths
        enter, leave = paths.enter, paths.leave
        ev = enter[v]
        total = value + paths.tail[v]
        scale = abs(value) + paths.tail[v]
        if v in self.moved:
            change = self._extra(v)
            total += change
            scale += abs(change)
        for u in self.changed:
            if u != v and enter[u] < ev < leave[u]:
                p = paths.kids[u][bisect_right(paths.kid_enter[u], ev) - 1]
                change = self._extra(u) + self._arrival(u, p)
                total += change
                scale += abs(change)
        return total - _ROUNDING * scale
