"""Witnesses of the known divergences of the optimization family (fuse, remove_dropout,
optimize_for_inference, merge_matmul, validator)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from conform.case import Case
from conform.known import Witness
from generators.sources import Built


def _factory(builder: str) -> Case:
    return Case(source="factory", spec={"factory": f"conform.witnesses.optimization:{builder}"})


def _with_stats(module: nn.Module) -> nn.Module:
    """Non-trivial running statistics, so a wrong fold shows in the outputs."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
            m.running_mean.uniform_(-1.0, 1.0)
            m.running_var.uniform_(0.5, 2.0)
    return module.eval()


# --- fuse --------------------------------------------------------------------------------------


class SharedConv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x, y):
        return self.bn(self.conv(x)), self.conv(y)


def shared_conv() -> Built:
    return Built(_with_stats(SharedConv()), (torch.randn(1, 3, 6, 6), torch.randn(1, 3, 6, 6)))


def shared_conv_witness() -> Witness:
    return Witness(_factory("shared_conv"), {"inplace": False})


class LinearBatchNorm(nn.Module):
    def __init__(self, features: int, affine: bool) -> None:
        super().__init__()
        self.linear = nn.Linear(5, 4)
        self.bn = nn.BatchNorm1d(features, affine=affine)

    def forward(self, x):
        return self.bn(self.linear(x))


def linear_bn_without_affine() -> Built:
    return Built(_with_stats(LinearBatchNorm(4, affine=False)), (torch.randn(6, 5),))


def linear_bn_without_affine_witness() -> Witness:
    return Witness(_factory("linear_bn_without_affine"), {"inplace": False})


def linear_bn_over_sequence() -> Built:
    return Built(_with_stats(LinearBatchNorm(3, affine=True)), (torch.randn(6, 3, 5),))


def linear_bn_over_sequence_witness() -> Witness:
    return Witness(_factory("linear_bn_over_sequence"), {"inplace": False})


def linear_bn_sequence_channels() -> Built:
    """Linear(5, 4) on a (6, 4, 5) sequence: BatchNorm1d(4) normalizes dim 1 of the (6, 4, 4)
    output, the sequence positions, whose count happens to equal the output features."""
    return Built(_with_stats(LinearBatchNorm(4, affine=True)), (torch.randn(6, 4, 5),))


def linear_bn_sequence_channels_witness() -> Witness:
    return Witness(_factory("linear_bn_sequence_channels"), {"inplace": False})


# optimize_for_inference runs fuse and remove_dropout first, and with them their bugs; the
# layout pass is off so that the witnesses show those alone.
_FUSE_AND_DROP = {"conv_bn_fuse": True, "remove_dropout": True, "mkldnn": "off"}


def shared_conv_inference_witness() -> Witness:
    return Witness(_factory("shared_conv"), dict(_FUSE_AND_DROP))


def linear_bn_without_affine_inference_witness() -> Witness:
    return Witness(_factory("linear_bn_without_affine"), dict(_FUSE_AND_DROP))


def linear_bn_over_sequence_inference_witness() -> Witness:
    return Witness(_factory("linear_bn_over_sequence"), dict(_FUSE_AND_DROP))


def linear_bn_sequence_channels_inference_witness() -> Witness:
    return Witness(_factory("linear_bn_sequence_channels"), dict(_FUSE_AND_DROP))


class ConvBatchNorm(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x):
        return self.bn(self.conv(x))


def conv_bn_bfloat16() -> Built:
    """Conv2d + BatchNorm2d in bfloat16, with fixed weights and statistics."""
    generator = torch.Generator().manual_seed(0)
    module = ConvBatchNorm()
    with torch.no_grad():
        for tensor in (*module.parameters(), module.bn.running_mean):
            tensor.copy_(torch.rand(tensor.shape, generator=generator) * 2 - 1)
        module.bn.running_var.copy_(torch.rand(4, generator=generator) + 0.5)
    x = torch.rand(2, 3, 6, 6, generator=generator) * 2 - 1
    return Built(module.eval().to(torch.bfloat16), (x.to(torch.bfloat16),))


# --- remove_dropout ----------------------------------------------------------------------------


class KeywordDropout(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        return self.drop(input=x) * 2


def keyword_dropout() -> Built:
    return Built(KeywordDropout().eval(), (torch.randn(4, 4),))


def keyword_dropout_witness() -> Witness:
    return Witness(_factory("keyword_dropout"))


def keyword_dropout_inference_witness() -> Witness:
    return Witness(_factory("keyword_dropout"), dict(_FUSE_AND_DROP))


# --- optimize_for_inference --------------------------------------------------------------------


class ScaledConv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)

    def forward(self, x):
        return torch.relu(torch.relu(self.conv(x * 2))) + 1


def scaled_conv() -> Built:
    return Built(ScaledConv().eval(), (torch.randn(1, 3, 4, 4),))


def scalar_operand_witness() -> Witness:
    return Witness(_factory("scaled_conv"), {"conv_bn_fuse": True, "remove_dropout": True, "mkldnn": "length"})


class ConvStack(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        return torch.relu(self.conv2(torch.relu(self.conv1(x))))


def conv_stack() -> Built:
    return Built(ConvStack().eval(), (torch.randn(1, 3, 8, 8),))


def mutated_model_witness() -> Witness:
    return Witness(_factory("conv_stack"), {"conv_bn_fuse": False, "remove_dropout": False, "mkldnn": "length"})


def autotuner_witness() -> Witness:
    return Witness(_factory("conv_stack"), {"conv_bn_fuse": True, "remove_dropout": True, "mkldnn": "autotune"})


# --- merge_matmul ------------------------------------------------------------------------------


class MergedProductAsOperand(nn.Module):
    """The shared right operand of the second group is a product of the first group."""

    def forward(self, a, b, c, d, w):
        first = torch.matmul(a, w)
        second = torch.matmul(b, w)
        return torch.matmul(c, first), torch.matmul(d, first), second


def merged_product_as_operand() -> Built:
    return Built(MergedProductAsOperand(), tuple(torch.randn(3, 3) for _ in range(5)))


def merged_product_as_operand_witness() -> Witness:
    return Witness(_factory("merged_product_as_operand"))


class SharedBatchedOperand(nn.Module):
    def forward(self, a, b, w):
        return torch.matmul(a, w), torch.matmul(b, w)


def shared_batched_operand() -> Built:
    return Built(SharedBatchedOperand(), (torch.randn(2, 4), torch.randn(2, 4), torch.randn(3, 4, 5)))


def shared_batched_operand_witness() -> Witness:
    return Witness(_factory("shared_batched_operand"))


class SharedRightOperand(nn.Module):
    """The plainest merge: two independent products of 2-D operands with the same right one."""

    def forward(self, a, b, w):
        return torch.matmul(a, w), torch.matmul(b, w)


def shared_right_operand() -> Built:
    return Built(SharedRightOperand(), (torch.randn(2, 4), torch.randn(3, 4), torch.randn(4, 5)))


def shared_right_operand_witness() -> Witness:
    return Witness(_factory("shared_right_operand"))


class MutationBetween(nn.Module):
    def forward(self, a, b, w):
        first = torch.matmul(a, w)
        a.add_(1.0)
        return first, torch.matmul(b, w)


def mutation_between() -> Built:
    return Built(MutationBetween(), (torch.randn(2, 4), torch.randn(2, 4), torch.randn(4, 5)))


def mutation_between_witness() -> Witness:
    return Witness(_factory("mutation_between"))


class KeywordOperand(nn.Module):
    def forward(self, a, w):
        return torch.matmul(a, other=w), torch.matmul(a * 2, w)


def keyword_operand() -> Built:
    return Built(KeywordOperand(), (torch.randn(2, 3), torch.randn(3, 3)))


def keyword_operand_witness() -> Witness:
    return Witness(_factory("keyword_operand"))


# --- validator ---------------------------------------------------------------------------------


class Sized(nn.Module):
    def forward(self, x):
        return x + 1


def sized() -> Built:
    return Built(Sized(), (torch.randn(3, 7),))


def trunc_to_int_witness() -> Witness:
    """TruncToInt((s0 - 8) / 3) at s0 = 3: -5/3 truncates to -1, floors to -2."""
    expr = ["trunc_div", ["sub", ["sym", 0], ["int", 8]], ["int", 3]]
    return Witness(_factory("sized"), {"expr": expr})


def negative_bitwise_witness() -> Witness:
    """s1 | -3 at s1 = 7 is -1 in Python; read as an unsigned 64-bit integer it is 2**64 - 1."""
    return Witness(_factory("sized"), {"expr": ["bor", ["sym", 1], ["int", -3]]})


def vector_left_operands() -> Built:
    return Built(SharedBatchedOperand(), (torch.randn(4), torch.randn(4), torch.randn(4, 5)))


def vector_left_operands_witness() -> Witness:
    return Witness(_factory("vector_left_operands"))


class TwoGroups(nn.Module):
    def forward(self, a, b, c, d, v, w):
        return torch.matmul(a, v) + torch.matmul(c, w), torch.matmul(b, v) - torch.matmul(d, w)


def two_groups() -> Built:
    return Built(TwoGroups(), tuple(torch.randn(3, 3) for _ in range(6)))


def two_groups_witness() -> Witness:
    return Witness(_factory("two_groups"))


def trunc_to_int_term_witness() -> Witness:
    """TruncToInt(s1 / 2) at s1 = 7: both translations give 3, with different terms."""
    return Witness(_factory("sized"), {"expr": ["trunc_div", ["sym", 1], ["int", 2]]})


def bitwise_term_witness() -> Witness:
    """s0 & s1 at (3, 7): both translations give 3, with different terms."""
    return Witness(_factory("sized"), {"expr": ["band", ["sym", 0], ["sym", 1]]})


class SqueezeExcite(nn.Module):
    """A channel gate: the pooled (N, C, 1, 1) gate broadcasts over the feature map."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.gate = nn.Conv2d(8, 8, 1)

    def forward(self, x):
        y = torch.relu(self.conv(x))
        return torch.relu(y * torch.sigmoid(self.gate(self.pool(y))))


def squeeze_excite() -> Built:
    return Built(SqueezeExcite().eval(), (torch.randn(2, 3, 8, 8),))


def broadcasting_witness() -> Witness:
    return Witness(_factory("squeeze_excite"), {"conv_bn_fuse": True, "remove_dropout": True, "mkldnn": "length"})


class UnevenPool(nn.Module):
    """A 2x2 adaptive pool of a 5x5 map inside a region of MKLDNN-capable ops."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        return torch.relu(F.adaptive_avg_pool2d(torch.relu(self.conv(x)), (2, 2)))


def uneven_pool() -> Built:
    return Built(UnevenPool().eval(), (torch.randn(1, 3, 5, 5),))


def uneven_pool_witness() -> Witness:
    return Witness(_factory("uneven_pool"), {"conv_bn_fuse": True, "remove_dropout": True, "mkldnn": "length"})


class GatedMinimum(nn.Module):
    """relu and sigmoid of a full reduction: a 0-dim value in an MKLDNN region."""

    def forward(self, x):
        return torch.sigmoid(F.relu(torch.min(x)))


def gated_minimum() -> Built:
    return Built(GatedMinimum().eval(), (torch.randn(4),))


def unconvertible_input_witness() -> Witness:
    return Witness(_factory("gated_minimum"), {"conv_bn_fuse": True, "remove_dropout": True, "mkldnn": "always"})


# --- optimize_for_inference: trace-time constants -------------------------------------------------


class TraceTimeConstant(nn.Module):
    """``torch.ones(3)`` takes no traced value: tracing stores it as ``_tensor_constant0``."""

    def forward(self, x):
        return x + torch.ones(3)


def trace_time_constant() -> Built:
    return Built(TraceTimeConstant().eval(), (torch.randn(2, 3),))


def trace_time_constant_witness() -> Witness:
    return Witness(_factory("trace_time_constant"), {"conv_bn_fuse": False, "remove_dropout": False, "mkldnn": "always"})


def batched_operand_mixed_ranks() -> Built:
    """A vector and a batch of matrices, each times one batched right operand."""
    return Built(SharedBatchedOperand(), (torch.randn(3), torch.randn(2, 5, 3), torch.randn(2, 3, 4)))


def batched_operand_mixed_ranks_witness() -> Witness:
    return Witness(_factory("batched_operand_mixed_ranks"))


class ReadsConvWeight(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        return torch.relu(self.conv(x)) + self.conv.weight.mean()


def reads_conv_weight() -> Built:
    return Built(ReadsConvWeight().eval(), (torch.randn(1, 3, 6, 6),))


def converted_parameter_read_witness() -> Witness:
    return Witness(_factory("reads_conv_weight"), {"conv_bn_fuse": False, "remove_dropout": True, "mkldnn": "always"})
