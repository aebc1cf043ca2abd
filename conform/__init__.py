"""fx-conform: differential conformance testing for the torch.fx experimental transforms."""

from __future__ import annotations

__version__ = "0.1.0"
