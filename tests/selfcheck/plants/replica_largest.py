"""accelerator_partitioner: saturate_host places each replica on the *largest* idle device
that fits it, not the smallest, so a later, bigger partition may find no room."""

from __future__ import annotations

from plants import replace
from reference import accelerator_partitioner
from reference.accelerator_partitioner import Partitioner


def saturate_host(self: Partitioner) -> None:
    on_device, left, homeless = accelerator_partitioner.get_device_partition_stats(self.partitions, self.devices)
    if homeless:
        raise AssertionError(f"Expect no_device_partitions has 0 device, but get {len(homeless)}")
    used = [d for d in self.devices if on_device[d]]
    replica_of: dict = {}
    while used and 2 * len(used) + len(replica_of) <= len(self.devices):
        idle = [d for d in self.devices if d not in used and d not in replica_of]
        this_round: dict = {}
        for device in used:
            taken = device.available_mem_bytes - left[device]
            fitting = [d for d in idle if d.available_mem_bytes >= taken]
            if not fitting:
                break
            chosen = max(fitting, key=lambda d: d.available_mem_bytes)
            idle.remove(chosen)
            this_round[chosen] = device
        else:
            replica_of.update(this_round)
            continue
        break
    for replica, original in replica_of.items():
        for partition in on_device[original]:
            partition.logical_device_ids.append(replica.logical_id)


replace("accelerator_partitioner", "Partitioner.saturate_host", saturate_host)
