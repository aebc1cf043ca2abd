"""meta_tracer: the metadata of an ``nn.Embedding`` call takes its last dimension from the
number of embeddings instead of the embedding width (``weight.shape[0]``, not ``[-1]``)."""

from __future__ import annotations

import torch

from plants import replace
from reference import meta_tracer


def embedding_override(self: torch.nn.Embedding, input: torch.Tensor) -> torch.Tensor:
    return torch.empty(*input.shape, self.weight.shape[0], dtype=self.weight.dtype, device="meta")


replace("meta_tracer", "embedding_override", embedding_override)
meta_tracer.manual_meta_overrides[torch.nn.Embedding] = embedding_override
