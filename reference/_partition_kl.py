"""The Kernighan-Lin style partition refinement, with incremental bookkeeping.

Starting from the size-based partitions, each operation in graph order is tried against
every node of every other partition (and against a plain move): the swap is applied, the
latency of the whole partitioned graph is estimated on a fresh device placement, and the
swap is undone. The refinement reproduces the published algorithm's observable behaviour
exactly, including three properties of it that matter for the result:

* the partition an operation is taken from is looked up in the node-to-partition map of
  the size-based pass, which is never refreshed, so after a swap an operation can be
  "taken" from a partition that no longer holds it (and the undo then moves it instead);
* the cost compared against the best so far is the plain move's, while the pair that is
  applied is the best one seen for that partition;
* once a pair has been applied it is applied again after every later operation.

What makes it fast: membership, sizes, what each partition reads from outside and the
partition-to-partition edge counts are updated per node moved instead of being recomputed
from node sets, and a swap that is bound to close a cycle is recognised from the two
nodes' neighbourhoods without being applied (valid only where swapping and undoing
restores the exact state, which is checked first).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch.fx.node import Node

from reference._partition_index import GraphIndex, assign_devices
from reference.partitioner_utils import Device, NodeLatency

_INF = float("inf")


class KLRefinement:
    """The refinement state over ``count`` partitions of an indexed graph.

    Args:
        ix (GraphIndex): the sized graph.
        members (List[Set[Node]]): node set of each partition, in list order.
        device_ids (List[List[int]]): each partition's logical device ids.
        devices (List[Device]): the devices, as configured.
        transfer_rate_bytes_per_sec (float): link bandwidth.
        latency_of (Dict[Node, NodeLatency]): latency of every operation.
    """

    def __init__(
        self, ix: GraphIndex, members: Sequence[set[Node]], device_ids: list[list[int]],
        devices: list[Device], transfer_rate_bytes_per_sec: float, latency_of: dict[Node, NodeLatency],
    ) -> None:
        self.ix = ix
        self.devices = devices
        self.rate = transfer_rate_bytes_per_sec
        self.latency_of = latency_of
        self.count = count = len(members)
        self.ids = device_ids
        # True while the device ids are "a fresh placement of the current state", not yet
        # computed.
        self.fresh_pending = False
        self.where: list[set[int]] = [set() for _ in ix.nodes]
        self.members: list[set[int]] = [set() for _ in range(count)]
        self.edges = [[0] * count for _ in range(count)]
        self.base = [0] * count
        self.ext: list[dict[int, int]] = [{} for _ in range(count)]
        self.reads: list[dict[int, int]] = [{} for _ in range(count)]
        self.version = [0] * count
        self.duplicated = 0  # operations held by more than one partition
        # Whether a swap was chosen among partners of equal cost (see ``run``).
        self.order_sensitive = False
        self._latency: dict[tuple[int, int], float] = {}
        pos = ix.position
        for a, nodes in enumerate(members):
            for w in sorted(pos[n] for n in nodes):
                self._insert(a, w)

    # Membership with incremental bookkeeping.

    def _insert(self, a: int, w: int) -> None:
        ix, where, edges = self.ix, self.where, self.edges
        w_in = where[w]
        for u in ix.users[w]:
            # w now feeds every other partition holding a user of w (unless it holds w)...
            for b in where[u]:
                if b != a and b not in w_in:
                    edges[a][b] += 1
            # ...and other partitions holding w no longer feed a through w.
            if a in where[u]:
                for c in w_in:
                    if c != a:
                        edges[c][a] -= 1
        reads, ext = self.reads[a], self.ext[a]
        for x in ix.inputs[w]:
            x_in = where[x]
            reads[x] = reads.get(x, 0) + 1
            if a not in x_in:
                ext[x] = ext.get(x, 0) + 1
                for c in x_in:
                    if c != a:
                        edges[c][a] += 1
        ext.pop(w, None)
        self.base[a] += ix.total(w)
        if not ix.holder[w] and len(w_in) == 1:
            self.duplicated += 1
        w_in.add(a)
        self.members[a].add(w)
        self.version[a] += 1

    def _discard(self, a: int, w: int) -> None:
        ix, where, edges = self.ix, self.where, self.edges
        w_in = where[w]
        w_in.discard(a)
        self.members[a].discard(w)
        if not ix.holder[w] and len(w_in) == 1:
            self.duplicated -= 1
        for u in ix.users[w]:
            for b in where[u]:
                if b != a and b not in w_in:
                    edges[a][b] -= 1
            if a in where[u]:
                for c in w_in:
                    if c != a:
                        edges[c][a] += 1
        reads, ext = self.reads[a], self.ext[a]
        for x in ix.inputs[w]:
            x_in = where[x]
            left = reads[x] - 1
            if left:
                reads[x] = left
            else:
                del reads[x]
            if a not in x_in:
                left = ext[x] - 1
                if left:
                    ext[x] = left
                else:
                    del ext[x]
                for c in x_in:
                    if c != a:
                        edges[c][a] -= 1
        if w in reads:
            ext[w] = reads[w]
        self.base[a] -= ix.total(w)
        self.version[a] += 1

    def add_node(self, a: int, v: int) -> None:
        """``Partition.add_node``: the node and the holders it reads."""
        ix = self.ix
        for x in ix.inputs[v]:
            if ix.holder[x] and a not in self.where[x]:
                self._insert(a, x)
        if a not in self.where[v]:
            self._insert(a, v)

    def remove_node(self, a: int, v: int) -> None:
        """``Partition.remove_node``: the node and the holders nothing left reads."""
        ix, where = self.ix, self.where
        if a not in where[v]:
            return
        self._discard(a, v)
        for x in ix.inputs[v]:
            if ix.holder[x] and not any(a in where[u] for u in ix.users[x]):
                if a not in where[x]:
                    raise KeyError(ix.nodes[x])
                self._discard(a, x)

    def swap(self, n0: int | None, n1: int | None, a: int, b: int) -> None:
        if n0 is not None:
            self.remove_node(a, n0)
            self.add_node(b, n0)
        if n1 is not None:
            self.add_node(a, n1)
            self.remove_node(b, n1)

    # Cost model.

    def used_mem(self, a: int) -> int:
        out = self.ix.out
        return self.base[a] + sum(c * out(x) for x, c in self.ext[a].items())

    def _children(self, a: int) -> list[int]:
        row = self.edges[a]
        return [b for b in range(self.count) if row[b] > 0]

    def on_cycle(self, a: int) -> bool:
        """``check_dependency``: can ``a`` reach itself?"""
        seen = {a}
        stack = [a]
        while stack:
            for c in self._children(stack.pop()):
                if c == a:
                    return True
                if c not in seen:
                    seen.add(c)
                    stack.append(c)
        return False

    def _extra(self, a: int, on_device: list[int]) -> int:
        out, members = self.ix.out, self.members
        extra = self.base[a]
        for x, c in self.ext[a].items():
            if not any(x in members[q] for q in on_device):
                extra += c * out(x)
        return extra

    def place(self, ids: list[list[int]]) -> bool:
        """``get_device_to_partitions_mapping`` on ``ids`` (partitions with ids keep them)."""
        count = range(self.count)
        return assign_devices(
            self.devices, ids, [self.used_mem(a) for a in count],
            [bool(self.members[a]) for a in count], self._extra,
        )

    def _overall(self, a: int) -> float:
        key = (a, self.version[a])
        value = self._latency.get(key)
        if value is None:
            members = self.members[a]
            path = self.ix.longest_path(sorted(members), members.__contains__, self.latency_of)
            value = self._latency[key] = path.overall_latency_sec
        return value

    def _comm(self, a: int, b: int, ids: list[list[int]]) -> float:
        if ids[a] and ids[b] and ids[a] == ids[b]:
            return 0.0
        held, reads, sent = self.members[a], self.reads[b], self.ix.sent
        if len(reads) < len(held):
            size = sum(sent[x] for x in reads if x in held)
        else:
            size = sum(sent[x] for x in held if x in reads)
        return size / self.rate

    def critical(self, ids: list[list[int]]) -> float:
        """``get_latency_of_partitioned_graph`` of the current state under ``ids``."""
        latency = [self._overall(a) for a in range(self.count)]
        children = [self._children(a) for a in range(self.count)]
        has_parent = {c for kids in children for c in kids}
        roots = [a for a in range(self.count) if a not in has_parent]
        pending: dict[int, int] = {}
        seen = set(roots)
        stack = list(roots)
        while stack:
            for c in children[stack.pop()]:
                pending[c] = pending.get(c, 0) + 1
                if c not in seen:
                    seen.add(c)
                    stack.append(c)
        arrival = {a: 0.0 for a in roots}
        ready = [a for a in roots if not pending.get(a)]
        done = 0
        critical = 0.0
        while ready:
            a = ready.pop()
            done += 1
            finish = arrival[a] + latency[a]
            if not children[a]:
                critical = max(critical, finish)
            for c in children[a]:
                reach = finish + self._comm(a, c, ids)
                if c not in arrival or reach > arrival[c]:
                    arrival[c] = reach
                pending[c] -= 1
                if not pending[c]:
                    ready.append(c)
        if done != len(seen):
            raise RecursionError("the partition graph has a cycle reachable from a root partition")
        return critical

    def materialize(self) -> None:
        """Turn a pending fresh placement into device ids."""
        if self.fresh_pending:
            self.ids = [[] for _ in range(self.count)]
            self.place(self.ids)
            self.fresh_pending = False

    # The refinement.

    def _try(self, n0: int, n1: int | None, a: int, b: int) -> float:
        self.swap(n0, n1, a, b)
        cost = _INF
        if not self.on_cycle(a) and not self.on_cycle(b):
            ids: list[list[int]] = [[] for _ in range(self.count)]
            if self.place(ids):
                cost = self.critical(ids)
        self.swap(n1, n0, a, b)
        self.fresh_pending = True
        return cost

    def _stuck(self, v: int, home: int, away: int, partner: int | None) -> bool:
        """Whether ``v`` has an operation input in ``home`` (and not in ``away``) and a
        user in ``home`` (or is read by ``partner``, which moves into ``home``): moving it
        to ``away`` then gives edges both ways between the two partitions."""
        ix, where = self.ix, self.where
        if not any(
            not ix.holder[x] and home in where[x] and away not in where[x] and x != partner
            for x in ix.inputs[v]
        ):
            return False
        return any(home in where[u] or u == partner for u in ix.users[v])

    def _bound_to_cycle(self, n0: int, n1: int | None, a: int, b: int) -> bool:
        """A try that provably closes a cycle and that swapping back undoes exactly."""
        where = self.where
        if a not in where[n0] or b in where[n0]:
            return False
        if n1 is not None and (b not in where[n1] or a in where[n1]):
            return False
        if self._stuck(n0, a, b, n1):
            return True
        return n1 is not None and self._stuck(n1, b, a, n0)

    def _best_swap(self, n0: int, a: int, b: int) -> tuple[float, tuple[int, int | None] | None, bool]:
        """``swap_node_to_partition``: the plain move's cost, the cheapest pair, and
        whether several partners share the cheapest cost."""
        holder, where = self.ix.holder, self.where
        n0_alone = a in where[n0] and b not in where[n0]
        if n0_alone and not self.duplicated and self._stuck(n0, a, b, None):
            # Every partner (and the plain move) is bound to close a cycle: with no node
            # held twice, each try is a clean swap of two nodes that are each in one place.
            self.fresh_pending = True
            return _INF, None, False
        candidates: list[int | None] = [v for v in sorted(self.members[b]) if not holder[v]]
        candidates.append(None)
        best_cost, pair, last, ties = _INF, None, _INF, 0
        for n1 in candidates:
            if self._bound_to_cycle(n0, n1, a, b):
                cost = _INF
                self.fresh_pending = True
            else:
                cost = self._try(n0, n1, a, b)
            if cost < best_cost:
                best_cost, pair, ties = cost, (n0, n1), 1
            elif cost == best_cost and n1 is not None:
                ties += 1
            last = cost
        return last, pair, ties > 1

    def run(self, op_order: list[int], home_of: list[int], cost: float) -> None:
        """Refine in place.

        Args:
            op_order: operations in graph order.
            home_of: for each of them, the partition index the size-based pass gave it.
            cost: the latency of the size-based partitions.
        """
        node_pair: tuple[int, int | None] | None = None
        partition_pair: tuple[int, int] | None = None
        for n0, a in zip(op_order, home_of):
            for b in range(self.count):
                if b == a:
                    continue
                new_cost, pair, tied = self._best_swap(n0, a, b)
                if new_cost < cost:
                    cost, node_pair, partition_pair = new_cost, pair, (a, b)
                    # Upstream takes the first of the tied partners in set iteration
                    # order, which follows memory addresses; the pair applied here (the
                    # first in graph order) is one of its possible choices.
                    self.order_sensitive |= tied
            if node_pair is not None and partition_pair is not None:
                self.materialize()
                self.swap(node_pair[0], node_pair[1], *partition_pair)
                self.place(self.ids)
        self.materialize()
        self.place(self.ids)
