"""optimization: folding a batch norm into the conv or Linear before it subtracts the running
mean before scaling instead of after (``shift = bias - mean`` rather than
``bias - mean * scale``)."""

from __future__ import annotations

import copy

import torch
import torch.nn as nn

from plants import replace


def _fold(first: nn.Module, norm: nn.Module) -> nn.Module:
    weight = first.weight
    wide = torch.promote_types(torch.promote_types(weight.dtype, torch.float32), norm.running_var.dtype)
    out_channels = weight.shape[0]
    with torch.no_grad():
        mean = norm.running_mean.to(wide)
        scale = torch.rsqrt(norm.running_var.to(wide) + norm.eps)
        if norm.weight is not None:
            scale = scale * norm.weight.to(wide)
        scale = scale.expand(out_channels) if scale.numel() == 1 else scale
        shift = -mean.expand(out_channels) if mean.numel() == 1 else -mean
        if norm.bias is not None:
            shift = shift + norm.bias.to(wide)
        if first.bias is not None:
            bias = first.bias.to(wide) * scale + shift
            bias_dtype, bias_grad = first.bias.dtype, first.bias.requires_grad
        else:
            bias = shift.expand(out_channels).contiguous()
            bias_dtype, bias_grad = weight.dtype, False
        new_weight = weight.to(wide) * scale.reshape((-1,) + (1,) * (weight.dim() - 1))
    replaced = {id(p): p for p in (first.weight, first.bias) if p is not None}
    folded = copy.deepcopy(first, memo=replaced)
    folded.weight = nn.Parameter(new_weight.to(weight.dtype), weight.requires_grad)
    folded.bias = nn.Parameter(bias.to(bias_dtype), bias_grad)
    return folded


replace("optimization", "_fold", _fold)
