"""The OpInfo sweep: every op in PyTorch's ``op_db``, each CPU float32 sample normalized on
both implementations with ``normalize_function`` and as a one-call FX graph through
ShapeProp and NormalizeArgs; every normalized call must compute the op's own output.

The ``pr`` profile (the default) runs every 8th op on its first 4 samples;
``--conform-profile nightly`` runs every op on every sample. An op is either conformant or
listed below with the reason it cannot be normalized (an expected failure, strict in nightly:
an op that starts normalizing must leave the list); ops without CPU float32 support, and
samples the op itself rejects, are skipped with that reason. Ops the reference normalizes and
upstream does not are registered known divergences (expected failures on upstream).
"""

from __future__ import annotations

import pytest
import torch
from normalize_support import upstream_diverges
from normalize_sweeps import (
    NormalizationFailure,
    check_op,
    op_db_by_name,
    op_key,
    recorded_op_names,
    sample_profile,
)

from conform.implementations import Implementation

PR_SAMPLES = 4

_WRAPPER = ("op_db calls it through a function taking *args/**kwargs, which has no signature "
            "to normalize against")
_VARIADIC = "a variadic function (*tensors or *shapes): there are no fixed parameters to normalize to"
_DEVICE_STRING = ("the sample passes device as a string; the schemas declare torch.device, so the "
                  "argument types fit no overload")
_REQUIRES_GRAD = ("the sample passes requires_grad, which the Python binding accepts but no schema "
                  "declares, so no overload binds")
_SLOT = ("a Tensor method slot: it has neither a schema nor a Python signature, and "
         "normalize_function raises ValueError")
_EMPTY_TUPLE = ("an empty tuple argument is typed tuple[Any, ...] in the graph (no element type), "
                "which no List[int] overload accepts, so NormalizeArgs keeps the call as it is")

#: Ops neither implementation can normalize, with the reason.
NOT_NORMALIZABLE: dict[str, str] = {
    **dict.fromkeys(
        ["item", "cauchy", "exponential", "geometric", "log_normal", "normal.in_place", "uniform",
         "contiguous", "sum_to_size", "nn.functional.fractional_max_pool2d",
         "nn.functional.fractional_max_pool3d", "max_pool2d_with_indices_backward", "nn.functional.rrelu",
         "nn.functional.scaled_dot_product_attention", "to", "svd_lowrank", "pca_lowrank",
         "polygamma.polygamma_n_0", "polygamma.polygamma_n_1", "polygamma.polygamma_n_2",
         "polygamma.polygamma_n_3", "polygamma.polygamma_n_4", "special.polygamma.special_polygamma_n_0",
         "unique", "unique_consecutive", "bfloat16", "bool", "byte", "char", "double", "float", "half",
         "int", "long", "short", "chalf", "randn", "randn_like", "rand_like", "randint", "randint_like",
         "new_zeros", "new_ones", "new_empty", "new_empty_strided", "empty_strided", "new_full",
         "multinomial", "normal", "normal.number_mean", "bernoulli", "unfold", "to_sparse", "where",
         "nn.functional.dropout", "nn.functional.dropout2d", "nn.functional.dropout3d",
         "nn.functional.alpha_dropout", "nn.functional.feature_alpha_dropout.with_train",
         "nn.functional.feature_alpha_dropout.without_train", "nn.functional.embedding",
         "nn.functional.embedding_bag", "nn.functional.multi_head_attention_forward"],
        _WRAPPER,
    ),
    **dict.fromkeys(
        ["broadcast_shapes", "broadcast_tensors", "block_diag", "cartesian_prod", "meshgrid.variadic_tensors",
         "meshgrid.list_of_tensors", "atleast_1d", "atleast_2d", "atleast_3d"],
        _VARIADIC,
    ),
    **dict.fromkeys(["linspace", "linspace.tensor_overload", "logspace", "logspace.tensor_overload", "arange"],
                    _DEVICE_STRING),
    **dict.fromkeys(["empty", "eye", "empty_permuted", "scalar_tensor"], _REQUIRES_GRAD),
    **dict.fromkeys(["__radd__", "__rmul__", "cdouble", "cfloat"], _SLOT),
    **dict.fromkeys(["squeeze.multiple", "all", "any", "count_nonzero", "view_copy"], _EMPTY_TUPLE),
    "__getitem__": "a slot wrapper whose parameters are positional-only, which are not normalized",
    "nn.functional.triplet_margin_with_distance_loss": (
        "the sample passes an nn.Module (distance_function) as an argument, which an FX graph "
        "cannot hold as a constant"
    ),
}

#: Ops the reference normalizes and upstream does not, by registered known divergence.
UPSTREAM_DIVERGENCES: dict[str, str] = {
    **dict.fromkeys(
        ["frexp", "gradient", "max.reduction_with_dim", "min.reduction_with_dim", "var_mean",
         "var_mean.unbiased", "std_mean", "std_mean.unbiased", "nn.functional.conv1d",
         "nn.functional.conv2d", "nn.functional.conv3d", "tensor_split", "hsplit", "vsplit", "dsplit",
         "sort", "histogram", "histogramdd", "searchsorted", "repeat_interleave", "linalg.pinv",
         "linalg.norm", "linalg.matrix_rank"],
        "normalize-args-argument-types",
    ),
    **dict.fromkeys(["torch.ops.aten._safe_softmax.default", "slice", "_upsample_bilinear2d_aa"],
                    "normalize-args-self-parameter-name"),
    "nonzero": "normalize-args-hand-written-signatures",
}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "op_name" in metafunc.fixturenames:
        profile = metafunc.config.getoption("conform_profile", default="pr") or "pr"
        metafunc.parametrize("op_name", sample_profile(recorded_op_names(), profile))


@pytest.fixture
def max_samples(request: pytest.FixtureRequest) -> int | None:
    profile = request.config.getoption("conform_profile", default="pr") or "pr"
    return None if profile == "nightly" else PR_SAMPLES


def test_opinfo_normalizes(request: pytest.FixtureRequest, impl: Implementation, op_name: str,
                           max_samples: int | None) -> None:
    op = op_db_by_name()[op_name]
    if torch.float32 not in op.supported_dtypes("cpu"):
        pytest.skip("op_db lists no CPU float32 support for it")
    # Only the full run sees every sample; a failing sample may lie beyond the pr subset.
    strict = max_samples is None
    if op_name in NOT_NORMALIZABLE:
        request.applymarker(pytest.mark.xfail(reason=NOT_NORMALIZABLE[op_name], strict=strict,
                                              raises=NormalizationFailure))
    if op_name in UPSTREAM_DIVERGENCES:
        upstream_diverges(request, impl, UPSTREAM_DIVERGENCES[op_name], strict=strict)
    result = check_op(impl, op, max_samples)
    if result.checked == 0:
        reason = result.eager_errors[0] if result.eager_errors else "op_db gives it no samples"
        pytest.skip(f"no CPU float32 sample runs eagerly: {reason}")


def test_tables_name_real_ops() -> None:
    names = set(recorded_op_names())
    assert set(NOT_NORMALIZABLE) <= names and set(UPSTREAM_DIVERGENCES) <= names
    assert not set(NOT_NORMALIZABLE) & set(UPSTREAM_DIVERGENCES)


@pytest.mark.slow
def test_recorded_names_are_op_db() -> None:
    """The sweep's name list is exactly op_db (nothing is silently left out)."""
    from torch.testing._internal.common_methods_invocations import op_db

    assert recorded_op_names() == [op_key(op) for op in op_db]


