"""Parameters for the normalization family: NormalizeArgs' keyword-only switch and the
three AnnotateTypesWithSchema switches."""

from __future__ import annotations

from typing import Any

import torch
from hypothesis import strategies as st


def normalize_args_params(graph_module: torch.fx.GraphModule) -> st.SearchStrategy[dict[str, Any]]:
    """``{"normalize_to_only_use_kwargs": bool}``."""
    return st.fixed_dictionaries({"normalize_to_only_use_kwargs": st.booleans()})


def annotate_types_params(graph_module: torch.fx.GraphModule) -> st.SearchStrategy[dict[str, Any]]:
    """Which node kinds AnnotateTypesWithSchema annotates."""
    return st.fixed_dictionaries(
        {
            "annotate_functionals": st.booleans(),
            "annotate_modules": st.booleans(),
            "annotate_get_attrs": st.booleans(),
        }
    )
