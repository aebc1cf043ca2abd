"""dtype and device parameter strategies."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from generators.params.common import (
    FLOAT_DTYPES,
    available_devices,
    device_params,
    devices,
    dtype_device_params,
    dtype_params,
    dtypes,
    graph_dtypes,
)

SETTINGS = settings(max_examples=20, deadline=None, database=None, suppress_health_check=list(HealthCheck))


def _gm(dtype: torch.dtype = torch.float32) -> torch.fx.GraphModule:
    return torch.fx.symbolic_trace(torch.nn.Linear(2, 2).to(dtype))


@SETTINGS
@given(dtypes())
def test_dtypes_are_float_dtype_names(name: str) -> None:
    assert name in FLOAT_DTYPES
    assert getattr(torch, name).is_floating_point


def test_dtypes_shrink_to_float32() -> None:
    from hypothesis import find

    assert find(dtypes(), lambda _: True) == "float32"


def test_dtypes_reject_unknown_names() -> None:
    with pytest.raises(ValueError, match="float16x"):
        dtypes(choices=["float16x"])


@SETTINGS
@given(devices())
def test_devices_are_available(name: str) -> None:
    assert name in available_devices()


def test_devices_cuda_knob() -> None:
    assert devices(cuda=False).example() == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA"):
            devices(cuda=True)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_dtype_params_prefer_the_module_dtype(dtype: torch.dtype) -> None:
    from hypothesis import find

    gm = _gm(dtype)
    assert graph_dtypes(gm) == [str(dtype).removeprefix("torch.")]
    assert find(dtype_params(gm), lambda _: True) == {"dtype": str(dtype).removeprefix("torch.")}


@SETTINGS
@given(st.data())
def test_param_dicts_are_json_able(data: st.DataObject) -> None:
    import json

    gm = _gm()
    for strategy in (dtype_params(gm), device_params(gm), dtype_device_params(gm)):
        drawn = data.draw(strategy)
        assert json.loads(json.dumps(drawn)) == drawn
    assert set(data.draw(dtype_device_params(gm))) == {"dtype", "device"}
