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


# --- aot_based's DAG looks partitions up by position ----------------------------------------------


def aot_ids_past_count_witness() -> Witness:
    """Two partitions numbered 1 and 2, the second writing in place what the first reads:
    upstream's dump_dag asks for the partition at position 2 of a list of two, while the
    reference has refused the partitions' order already."""
    case = Case(source="factory", spec={"factory": "conform.witnesses.split:read_then_write"})
    return Witness(case, _params(
        "aot_based", _devices(1.0, 1.0),
        node_to_partition={"mul": 1, "sigmoid": 1, "add": 1, "relu_": 2},
        partition_to_logical_device={"1": [0], "2": [1]},
    ))


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


# --- kl_based returns partitions that depend on each other in a cycle -----------------------------

# A random case (seed 480) a default campaign found.
_KL_CYCLE_SPEC = (
    '{"dtype":"float32","format":"fx-conform.random/1","inputs":[{"dtype":"float32","name":"x1","shap'
    'e":[4,4,3]},{"dtype":"float32","name":"x2","shape":[5,4,6]},{"dtype":"float32","name":"x3","shap'
    'e":[1,1,5]},{"dtype":"int64","high":8,"name":"x4","shape":[1]},{"dtype":"int64","high":8,"name":'
    '"x7","shape":[3,4]}],"nodes":[{"attrs":{"attr":"emb5","dim":6,"rows":8,"style":0},"dtype":"float'
    '32","id":"v6","in":["x4"],"op":"embedding","shape":[1,6]},{"attrs":{"attr":"emb8","dim":5,"mode"'
    ':"mean","rows":9,"style":0},"dtype":"float32","id":"v9","in":["x7"],"op":"embedding_bag","shape"'
    ':[3,5]},{"attrs":{"style":0},"dtype":"float32","id":"v10","in":["v9"],"op":"sigmoid","shape":[3,'
    '5]},{"attrs":{"style":8},"dtype":"float32","id":"v11","in":["v9"],"op":"inplace","shape":[3,5]},'
    '{"attrs":{"style":0},"dtype":"float32","id":"v12","in":["v9"],"op":"neg","shape":[3,5]},{"attrs"'
    ':{"style":0},"dtype":"float32","id":"v13","in":["v10","v12"],"op":"add","shape":[3,5]},{"attrs":'
    '{"scale":1.0},"dtype":"float32","id":"w15","in":[],"op":"param","shape":[8,2]},{"attrs":{"attr":'
    '"emb14","dim":2,"rows":8,"style":1},"dtype":"float32","id":"v16","in":["x7","w15"],"op":"embeddi'
    'ng","shape":[3,4,2]},{"attrs":{"attr":"emb17","dim":4,"rows":8,"style":0},"dtype":"float32","id"'
    ':"v18","in":["x4"],"op":"embedding","shape":[1,4]},{"attrs":{"attr":"emb19","dim":4,"mode":"mean'
    '","rows":9,"style":1},"dtype":"float32","id":"v20","in":["x7"],"op":"embedding_bag","shape":[3,4'
    ']},{"attrs":{"style":0},"dtype":"float32","id":"v21","in":["v20"],"op":"sigmoid","shape":[3,4]},'
    '{"attrs":{"style":8},"dtype":"float32","id":"v22","in":["v20"],"op":"inplace","shape":[3,4]},{"a'
    'ttrs":{"style":0},"dtype":"float32","id":"v23","in":["v21","v20"],"op":"add","shape":[3,4]}],"ou'
    'tputs":{"list":["v6","v11","v13","v16","v18","v22","v23"]},"signature":{"default":null,"flag":nu'
    'll,"varkw":false},"stochastic":false,"training":true}'
)


def kl_cycle_witness() -> Witness:
    """kl_based returns partitions whose values flow from one to another and back."""
    import json

    case = Case(source="random", spec=json.loads(_KL_CYCLE_SPEC), seed=480)
    return Witness(case, {'devices': [{'logical_id': 3, 'memory': {'fits_largest': True, 'fraction': 0.36409585843143244}, 'name': 'dev_0'}, {'logical_id': 0, 'memory': {'fits_largest': True, 'fraction': 0.8303876734356603}, 'name': 'dev_1'}, {'logical_id': 2, 'memory': {'fits_largest': True, 'fraction': 0.3562885610410318}, 'name': 'dev_2'}, {'logical_id': 1, 'memory': {'fits_largest': True, 'fraction': 0.7774111297272771}, 'name': 'dev_3'}], 'latency': {'compute_sec_per_byte': 0.0001, 'mem_sec_per_byte': 1e-06, 'missing': [], 'scale': {'add': [1.0, 1.0], 'add_1': [1.9, 1.0], 'emb17': [1.0, 7.622681042675138], 'emb19': [1.0, 1.2889534879944573], 'emb5': [1.0, 2.2997912940064373], 'emb8': [1.141368126025615, 2.00001], 'embedding': [1.0, 7.900967734502612], 'neg': [3.393616494750288, 1.0], 'relu': [4.012681773104515, 0.3333333333333333], 'relu_1': [1.0, 0.5], 'sigmoid': [4.851424897851851, 1.0], 'sigmoid_1': [1.0, 7.899352649278619]}}, 'mode': 'kl_based', 'saturate_host': False, 'transfer_rate_bytes_per_sec': 1000000.0})
