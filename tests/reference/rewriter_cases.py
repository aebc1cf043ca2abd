"""Module-level functions and classes for the rewriter tests: their source lives in a file
without postponed annotations, and some of them must be globals of their module."""

import torch


def free_function_with_assert(a, b):
    assert a == b, "operands differ"
    return a + b


def free_function_without_assert(a, b):
    return a * b


def shared_checked_forward(self, x):
    assert x.dim() == 2, "expected a matrix"
    return x * 2


class SharedForward(torch.nn.Module):
    forward = shared_checked_forward


class AnnotatedLocals(torch.nn.Module):
    def forward(self, x):
        y: torch.Tensor = x * 2
        declared: int  # noqa: F842
        return y + 1
