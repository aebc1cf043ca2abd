"""Shared pieces of the optimization tests: tolerances, batch-norm statistics, module
inspection."""

from __future__ import annotations

import pytest
import torch
import torch.fx
import torch.nn as nn

needs_mkldnn = pytest.mark.skipif(
    not (torch.backends.mkldnn.enabled and torch.backends.mkldnn.is_available()),
    reason="MKLDNN is not available",
)


def close(actual, expected, *, tol: float = 1e-4) -> None:
    torch.testing.assert_close(actual, expected, rtol=tol, atol=tol)


def randomize_stats(module: nn.Module, seed: int = 0) -> nn.Module:
    """Give every batch norm non-trivial statistics and affine parameters."""
    generator = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
            m.running_mean.copy_(torch.randn(m.num_features, generator=generator))
            m.running_var.copy_(torch.rand(m.num_features, generator=generator) + 0.5)
            if m.affine:
                with torch.no_grad():
                    m.weight.copy_(torch.randn(m.num_features, generator=generator))
                    m.bias.copy_(torch.randn(m.num_features, generator=generator))
    return module


def module_types(module: nn.Module) -> list[type]:
    return [type(m) for m in module.modules()]


def called_types(gm: torch.fx.GraphModule) -> list[str]:
    modules = dict(gm.named_modules())
    return [type(modules[n.target]).__name__ for n in gm.graph.nodes if n.op == "call_module"]
