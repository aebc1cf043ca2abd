"""Witnesses of the known accelerator-partitioner divergences: each builder returns the
case, each ``*_witness`` function the case with the parameters that show the divergence."""

from __future__ import annotations

from typing import Any

import torch

from conform.case import Case
from conform.known import Witness
from generators.sources import Built


def _factory(builder: str, **kwargs: Any) -> Case:
    spec: dict[str, Any] = {"factory": f"conform.witnesses.partition:{builder}"}
    if kwargs:
        spec["kwargs"] = kwargs
    return Case(source="factory", spec=spec)


def _devices(*memories: Any) -> list[dict[str, Any]]:
    return [
        {"name": f"dev_{i}", "memory": m if isinstance(m, int) else {"fraction": m}, "logical_id": i}
        for i, m in enumerate(memories)
    ]


def _params(mode: str, devices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    params = {
        "mode": mode,
        "devices": devices,
        "transfer_rate_bytes_per_sec": 1e3,
        "latency": {"mem_sec_per_byte": 1e-3, "compute_sec_per_byte": 1e-4, "scale": {}, "missing": []},
        "saturate_host": False,
    }
    params.update(extra)
    return params


class Steps(torch.nn.Module):
    """Width-4 values from steps ``[kind, operand, (operand)]``: ``lin``, ``relu``,
    ``add``, ``mul``; operand 0 is the input."""

    def __init__(self, steps: list[list[Any]]) -> None:
        super().__init__()
        self.steps = [tuple(s) for s in steps]
        self.lins = torch.nn.ModuleList(torch.nn.Linear(4, 4) for s in self.steps if s[0] == "lin")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values = [x]
        lins = iter(self.lins)
        for kind, *operands in self.steps:
            if kind == "lin":
                values.append(next(lins)(values[operands[0]]))
            elif kind == "relu":
                values.append(torch.relu(values[operands[0]]))
            elif kind == "add":
                values.append(values[operands[0]] + values[operands[1]])
            else:
                values.append(values[operands[0]] * values[operands[1]])
        return values[-1]


def steps(steps: list[list[Any]]) -> Built:
    return Built(Steps(steps), (torch.randn(2, 4),))


class Embeddings(torch.nn.Module):
    """Two embedding bags and nothing dense but their sum."""

    def __init__(self) -> None:
        super().__init__()
        self.first = torch.nn.EmbeddingBag(50, 4, mode="sum")
        self.second = torch.nn.EmbeddingBag(50, 4, mode="sum")

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.first(ids), self.second(ids)


def embeddings() -> Built:
    return Built(Embeddings(), (torch.randint(0, 50, (2, 3)),))


# --- sparse_nn with one group empty ------------------------------------------------------------


def sparse_nn_dense_only_witness() -> Witness:
    """A module without embeddings: upstream IndexError, the reference RuntimeError."""
    chain = [["lin", 0], ["relu", 1], ["add", 2, 0], ["lin", 3], ["relu", 4], ["add", 5, 3]]
    return Witness(_factory("steps", steps=chain), _params("sparse_nn", _devices(0.7, 0.7)))


def sparse_nn_embeddings_only_witness() -> Witness:
    """Only embedding operations: upstream IndexError, the reference partitions them."""
    return Witness(_factory("embeddings"), _params("sparse_nn", _devices(0.6, 0.6)))


# --- sparse_nn, a call_function too large for a device ------------------------------------------


def sparse_nn_too_large_function_witness() -> Witness:
    """``relu`` needs 64 bytes, each device has 60: upstream builds the error message by
    ``node.target + str`` and raises TypeError."""
    return Witness(_factory("steps", steps=[["relu", 0], ["lin", 1]]), _params("sparse_nn", _devices(60, 60, 60)))


# --- cost_aware returns partitions without a device ---------------------------------------------


def cost_aware_unplaced_witness() -> Witness:
    """The two single-operation partitions never fit together after merging, the final
    placement fails, and upstream returns a partition with no logical device."""
    return Witness(
        _factory("steps", steps=[["mul", 0, 0], ["relu", 1]]),
        _params("cost_aware", _devices(0.52, 0.53, 0.74, 0.5)),
    )


# --- kl_based keeps stale placements --------------------------------------------------------------


def kl_overfull_device_witness() -> Witness:
    """After the chosen swap a partition needs 208 bytes on a 207-byte device."""
    chain = [["lin", 0], ["mul", 1, 0], ["relu", 2], ["lin", 3], ["add", 2, 2], ["mul", 4, 4]]
    return Witness(_factory("steps", steps=chain), _params("kl_based", _devices(0.54, 0.57, 0.38, 0.47)))


def kl_unplaced_witness() -> Witness:
    """The last placement of the search failed and is never retried: a partition is left
    without a device."""
    chain = [["mul", 0, 0], ["relu", 0], ["mul", 0, 1]]
    return Witness(_factory("steps", steps=chain), _params("kl_based", _devices(0.6, 0.65, 0.75)))


# --- the order of partitions around an in-place write ---------------------------------------------


def inplace_order_witness() -> Witness:
    """split_module's witness (``sigmoid`` reads ``y`` before ``relu_`` overwrites it) as an
    aot_based partition: the two partitions are both ready once the ``mul`` one has run."""
    case = Case(source="factory", spec={"factory": "conform.witnesses.split:read_then_write"})
    return Witness(case, _params(
        "aot_based", _devices(1.0, 1.0),
        node_to_partition={"mul": 0, "sigmoid": 2, "relu_": 1, "add": 3},
        partition_to_logical_device={"0": [0], "1": [1], "2": [0], "3": [1]},
    ))
