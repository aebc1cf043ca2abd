"""The cost-aware partition search: greedy pairwise merging that never raises the latency.

The search starts from one partition per operation and, round after round, merges the pair
of partitions whose merge gives the lowest critical-path latency, as long as that latency
does not exceed the current one. Among pairs with the same latency the last one in
``(i, j)`` order wins; a pair qualifies when the partitions are at most one BFS level
apart or connected, when merging creates no cycle, and when the resulting partition list
still fits the devices.

What makes it fast, for the same answers:

* eligible pairs are enumerated from BFS-level buckets and adjacency instead of testing
  all ``O(P^2)`` pairs;
* a merge closes a cycle exactly when another partition lies on a path between the two,
  which one reachability bitset per partition answers;
* device placement is greedy in list order, so a candidate's placement agrees with the
  current list's placement up to the first merged partition: it resumes from a snapshot
  taken there instead of starting over;
* the latency of each partition is computed once (merged partitions once per pair), and
  the critical path is one pass over a topological order;
* with integer memory sizes (always, for sizes that ``get_size_of_all_nodes`` records), the
  placement and critical path of a candidate are derived from the current list's instead
  of replayed (``reference._partition_candidates``), which makes a candidate cost about
  the number of partitions it actually moves rather than the length of the list.
"""

from __future__ import annotations

from collections import deque

from torch.fx.node import Node

from reference._partition_candidates import CandidateEvaluator, RoundTrace
from reference._partition_index import GraphIndex, Placement, collector_paused
from reference.partitioner_utils import Device, NodeLatency, PartitionLatency

_INF = float("inf")


class Unit:
    """A partition during the search (node indices, sizes, what it reads)."""

    __slots__ = ("nodes", "ops", "base", "ext", "used_mem", "reads", "latency")

    def __init__(self, nodes: frozenset[int], ops: list[int], base: int, ext: dict[int, int], ix: GraphIndex) -> None:
        self.nodes = nodes
        self.ops = ops  # operations, in graph order
        self.base = base  # total size of every node held
        self.ext = ext  # node read from outside -> number of held nodes reading it
        self.used_mem = base + sum(count * ix.out(x) for x, count in ext.items())
        self.reads = frozenset(x for v in nodes for x in ix.inputs[v])
        self.latency: PartitionLatency | None = None


def singleton(ix: GraphIndex, op: int) -> Unit:
    held = {op, *(x for x in ix.inputs[op] if ix.holder[x])}
    ext = {x: 1 for x in ix.inputs[op] if x not in held}
    return Unit(frozenset(held), [op], sum(ix.total(v) for v in held), ext, ix)


def merge(ix: GraphIndex, a: Unit, b: Unit) -> Unit:
    nodes = a.nodes | b.nodes
    base = a.base + b.base - sum(ix.total(v) for v in a.nodes & b.nodes)
    ext: dict[int, int] = {}
    for side in (a.ext, b.ext):
        for x, count in side.items():
            if x not in nodes:
                ext[x] = ext.get(x, 0) + count
    return Unit(nodes, sorted(a.ops + b.ops), base, ext, ix)


class CostAwareSearch:
    """Runs the search over the operations of an indexed graph.

    Args:
        ix (GraphIndex): the sized graph.
        devices (List[Device]): distinct devices, in first-seen order.
        transfer_rate_bytes_per_sec (float): link bandwidth.
        latency_of (Dict[Node, NodeLatency]): latency of every operation.
        incremental (bool): derive candidates from the current list where the numbers
            allow it (the default); False replays every candidate in full, the plain
            statement of the search that the incremental one must agree with.
    """

    def __init__(
        self, ix: GraphIndex, devices: list[Device], transfer_rate_bytes_per_sec: float,
        latency_of: dict[Node, NodeLatency], incremental: bool = True,
    ) -> None:
        self.incremental = incremental
        self.ix = ix
        self.devices = devices
        self.rate = transfer_rate_bytes_per_sec
        self.latency_of = latency_of
        self._merged: dict[tuple[Unit, Unit], Unit] = {}
        self._sizes: dict[tuple[Unit, Unit], int] = {}
        self._feeds: dict[tuple[Unit, Unit], frozenset[int]] = {}
        self._shared: dict[tuple[Unit, Unit], bool] = {}

    # Per-round structure of the current list.

    def _prepare(self, units: list[Unit]) -> None:
        count = len(units)
        owner: dict[int, int] = {}
        for k, unit in enumerate(units):
            for v in unit.ops:
                owner[v] = k
        children: list[set[int]] = [set() for _ in range(count)]
        parents: list[set[int]] = [set() for _ in range(count)]
        users = self.ix.users
        for k, unit in enumerate(units):
            for v in unit.ops:
                for w in users[v]:
                    o = owner.get(w)
                    if o is not None and o != k:
                        children[k].add(o)
                        parents[o].add(k)
        indegree = [len(p) for p in parents]
        ready = deque(k for k in range(count) if not indegree[k])
        topo: list[int] = []
        level = [0] * count
        while ready:
            k = ready.popleft()
            topo.append(k)
            for c in sorted(children[k]):
                level[c] = max(level[c], level[k] + 1)
                indegree[c] -= 1
                if not indegree[c]:
                    ready.append(c)
        below = [0] * count  # bitset of every partition reachable from k
        for k in reversed(topo):
            bits = 0
            for c in children[k]:
                bits |= below[c] | (1 << c)
            below[k] = bits
        self.units, self.owner = units, owner
        self.children, self.parents = children, parents
        self.topo, self.level, self.below = topo, level, below
        self.topo_at = [0] * count
        for t, k in enumerate(topo):
            self.topo_at[k] = t
        self.ext_at = [[(owner[x], c * self.ix.out(x)) for x, c in u.ext.items()] for u in units]
        self.base_of = [u.base for u in units]
        self.used_of = [u.used_mem for u in units]
        self.parents_of_set = parents
        self.parents_of = [sorted(p) for p in parents]
        # Every partition's latency first: a missing node latency is a KeyError before any
        # transfer is costed.
        self.overall = [self._latency(u) for u in units]

    def _latency(self, unit: Unit) -> float:
        if unit.latency is None:
            unit.latency = self.ix.longest_path(unit.ops, unit.nodes.__contains__, self.latency_of)
        return unit.latency.overall_latency_sec

    def _size(self, a: Unit, b: Unit) -> int:
        key = (a, b)
        size = self._sizes.get(key)
        if size is None:
            sent = self.ix.sent
            size = self._sizes[key] = sum(sent[x] for x in self._feed(a, b))
        return size

    def _feed(self, a: Unit, b: Unit) -> frozenset[int]:
        """Nodes of ``a`` that ``b`` reads."""
        key = (a, b)
        feed = self._feeds.get(key)
        if feed is None:
            feed = self._feeds[key] = a.nodes & b.reads
        return feed

    def _placement(self, units: list[Unit], snapshots: list[Placement] | None = None) -> tuple[list[int | None], int]:
        """Place ``units`` from scratch: each one's device (None past a failure) and the
        index where placement failed (``len(units)`` when all fit)."""
        placed: list[int | None] = [None] * len(units)
        placement = Placement(self.devices)
        ext_at = self.ext_at
        for k, unit in enumerate(units):
            if snapshots is not None:
                snapshots.append(placement.copy())
            items = ext_at[k]

            def extra(d: int, unit: Unit = unit, items: list[tuple[int, int]] = items) -> int:
                return unit.base + sum(amount for w, amount in items if placed[w] != d)

            d = placement.place(extra, unit.used_mem)
            if d is None:
                return placed, k
            placed[k] = d
        return placed, len(units)

    def _critical(self, placed: list[int | None]) -> float:
        """Critical path of the current list under a placement."""
        units, rate, ids = self.units, self.rate, self.devices
        arrival: list[float | None] = [None] * len(units)
        critical = 0.0
        for k in self.topo:
            start = arrival[k]
            finish = (0.0 if start is None else start) + self._latency(units[k])
            if not self.children[k]:
                if finish > critical:
                    critical = finish
                continue
            dk = placed[k]
            for c in self.children[k]:
                dc = placed[c]
                if dk is not None and dc is not None and ids[dk].logical_id == ids[dc].logical_id:
                    reach = finish + 0.0
                else:
                    reach = finish + self._size(units[k], units[c]) / rate
                if arrival[c] is None or reach > arrival[c]:
                    arrival[c] = reach
        return critical

    # Candidate evaluation.

    def _eligible_pairs(self) -> list[tuple[int, int]]:
        count = len(self.units)
        buckets: dict[int, list[int]] = {}
        for k in range(count):
            buckets.setdefault(self.level[k], []).append(k)
        pairs = []
        for i in range(count):
            lv = self.level[i]
            partners = {j for b in (lv - 1, lv, lv + 1) for j in buckets.get(b, ()) if j > i}
            partners.update(j for j in self.children[i] | self.parents[i] if j > i)
            pairs.extend((i, j) for j in sorted(partners))
        return pairs

    def _closes_cycle(self, i: int, j: int) -> bool:
        below = self.below
        for a, b in ((i, j), (j, i)):
            for c in self.children[a]:
                if c != b and below[c] >> b & 1:
                    return True
        return False

    def _merged_unit(self, a: Unit, b: Unit) -> Unit:
        unit = self._merged.get((a, b))
        if unit is None:
            unit = self._merged[(a, b)] = merge(self.ix, a, b)
        return unit

    def _base_values(self, placed: list[int | None]) -> None:
        """Finish time of every partition under the round's own placement, and the largest
        finish of a leaf among the first ``t`` partitions of the topological order: what
        a candidate shares with the current list up to its first changed partition."""
        finish = [0.0] * len(self.units)
        leaf_prefix = [0.0]
        ids, rate = self.devices, self.rate
        for k in self.topo:
            start = None
            dk = placed[k]
            for p in self.parents_of[k]:
                dp = placed[p]
                if dp is not None and dk is not None and ids[dp].logical_id == ids[dk].logical_id:
                    reach = finish[p] + 0.0
                else:
                    reach = finish[p] + self._size(self.units[p], self.units[k]) / rate
                if start is None or reach > start:
                    start = reach
            finish[k] = (0.0 if start is None else start) + self.overall[k]
            best = leaf_prefix[-1]
            if not self.children[k] and finish[k] > best:
                best = finish[k]
            leaf_prefix.append(best)
        self.base_finish, self.leaf_prefix = finish, leaf_prefix

    def _try(self, i: int, j: int, placed: list[int | None], snapshots: list[Placement], failed_at: int) -> float:
        """The critical path latency with ``i`` and ``j`` merged, or inf when they cannot
        be placed; the placement resumes from the snapshot taken before ``i``."""
        if i > failed_at:
            # The list agrees with the current one up to the failing partition.
            return _INF
        units = self.units
        count_units = len(units)
        merged = self._merged_unit(units[i], units[j])
        snapshot = snapshots[i]
        order, left, count = list(snapshot.order), list(snapshot.left), list(snapshot.count)
        by_left = left.__getitem__
        device: list[int | None] = placed[:i] + [None] * (count_units - i)
        base_of, used_of, ext_at, topo_at = self.base_of, self.used_of, self.ext_at, self.topo_at
        # First partition, in topological order, whose device or content differs from the
        # current list's: everything before it keeps its finish time.
        first = min(topo_at[i], topo_at[j])
        for k in range(i + 1, count_units):
            if k == j:
                continue
            items, base = ext_at[k], base_of[k]
            order.sort(key=by_left)
            for d in order:
                if count[d]:
                    need = base
                    for w, amount in items:
                        if w == i or w == j or device[w] != d:
                            need += amount
                else:
                    need = used_of[k]
                if need < left[d]:
                    left[d] -= need
                    count[d] += 1
                    device[k] = d
                    break
            else:
                return _INF
            if device[k] != placed[k] and topo_at[k] < first:
                first = topo_at[k]
        owner, out = self.owner, self.ix.out
        items = [(owner[x], c * out(x)) for x, c in merged.ext.items()]
        order.sort(key=by_left)
        for d in order:
            need = merged.base + sum(a for w, a in items if device[w] != d) if count[d] else merged.used_mem
            if need < left[d]:
                device[i] = d
                break
        else:
            return _INF
        device[j] = None
        return self._merged_critical(i, j, merged, device, first)

    def _merged_order(self, i: int, j: int, first: int) -> list[int]:
        """The partitions from topological position ``first`` on, in a topological order
        of the list with ``i`` and ``j`` merged (into slot ``i``)."""
        topo, at = self.topo, self.topo_at
        a, b = sorted((at[i], at[j]))
        below = self.below[topo[a]]
        between = topo[a + 1 : b]
        before = [k for k in between if not below >> k & 1]
        after = [k for k in between if below >> k & 1]
        return topo[first:a] + before + [i] + after + topo[b + 1 :]

    def _merged_critical(self, i: int, j: int, merged: Unit, device: list[int | None], first: int) -> float:
        rate, ids = self.rate, self.devices
        finish = list(self.base_finish)
        critical = self.leaf_prefix[first]
        merged_latency = self._latency(merged)
        merged_parents = (self.parents_of_set[i] | self.parents_of_set[j]) - {i, j}
        has_children = bool((self.children[i] | self.children[j]) - {i, j})
        for k in self._merged_order(i, j, first):
            if k == i:
                sources, latency, leaf = merged_parents, merged_latency, not has_children
            else:
                sources, latency, leaf = self.parents_of[k], self.overall[k], not self.children[k]
            dk = device[k]
            start = None
            for p in sources:
                if p == j:
                    p = i
                dp = device[p]
                if dp is not None and dk is not None and ids[dp].logical_id == ids[dk].logical_id:
                    reach = finish[p] + 0.0
                else:
                    reach = finish[p] + self._merged_size(p, k, i, j) / rate
                if start is None or reach > start:
                    start = reach
            finish[k] = (0.0 if start is None else start) + latency
            if leaf and finish[k] > critical:
                critical = finish[k]
        return critical

    def _merged_size(self, k: int, c: int, i: int, j: int) -> int:
        """Bytes sent along ``k -> c`` once ``i`` and ``j`` are merged into slot ``i``."""
        units = self.units
        if k != i and c != i:
            return self._size(units[k], units[c])
        a, b = units[i], units[j]
        if k == i:
            key = (a, b)
            shared = self._shared.get(key)
            if shared is None:
                shared = self._shared[key] = not a.nodes.isdisjoint(b.nodes)
            if not shared:
                # What the two send is disjoint when they hold no node in common.
                return self._size(a, units[c]) + self._size(b, units[c])
            feed = self._feed(a, units[c]) | self._feed(b, units[c])
        else:
            feed = self._feed(units[k], a) | self._feed(units[k], b)
        sent = self.ix.sent
        return sum(sent[x] for x in feed)

    # The search.

    def run(self) -> tuple[list[Unit], list[int | None], list[int]]:
        """Merge until no pair keeps the latency from rising.

        Returns:
            the final partitions in list order, each one's device index (None where the
            final placement failed or never ran) and each one's BFS level.
        """
        with collector_paused():
            return self._run()

    def _run(self) -> tuple[list[Unit], list[int | None], list[int]]:
        ix = self.ix
        units = [singleton(ix, v) for v in range(len(ix.nodes)) if not ix.holder[v] and ix.nodes[v].op != "output"]
        placed: list[int | None] = [None] * len(units)
        self._prepare(units)
        # Offsets between two placement walks are exact only in integer arithmetic.
        exact = self.incremental and all(
            isinstance(size, int) for sizes in (ix._out, ix._total) for size in sizes if size is not None
        ) and all(isinstance(d.available_mem_bytes, int) for d in self.devices)
        # Bounds assume that no latency or transfer shortens a path.
        bounded = isinstance(self.rate, (int, float)) and self.rate > 0 and all(
            isinstance(x, (int, float)) and x >= 0 for cost in ix._latency.values() for x in cost
        )
        while True:
            current = self._critical(placed)
            if len(units) == 1:
                break
            pairs = [(i, j) for i, j in self._eligible_pairs() if not self._closes_cycle(i, j)]
            best: tuple[int, int] | None = None
            if exact:
                trace = RoundTrace(self.devices, self.ext_at, self.base_of, self.used_of)
                self._base_values(trace.placed)
            if exact and not any(f != f for f in self.base_finish):
                evaluator = CandidateEvaluator(self, trace, bounded)
                for i, j in pairs:
                    cost = evaluator.cost(i, j, current)
                    if cost <= current:
                        best, current = (i, j), cost
            else:
                snapshots: list[Placement] = []
                base, failed_at = self._placement(units, snapshots)
                self._base_values(base)
                for i, j in pairs:
                    cost = self._try(i, j, base, snapshots, failed_at)
                    if cost <= current:
                        best, current = (i, j), cost
            if best is not None:
                i, j = best
                merged = self._merged_unit(units[i], units[j])
                units = [u for k, u in enumerate(units) if k != i and k != j] + [merged]
                alive = set(units)
                self._merged = {k: v for k, v in self._merged.items() if k[0] in alive and k[1] in alive}
                self._sizes = {k: v for k, v in self._sizes.items() if k[0] in alive and k[1] in alive}
                self._feeds = {k: v for k, v in self._feeds.items() if k[0] in alive and k[1] in alive}
                self._shared = {k: v for k, v in self._shared.items() if k[0] in alive and k[1] in alive}
                self._prepare(units)
            placed, _ = self._placement(units)
            if best is None:
                break
        return units, placed, self.level
