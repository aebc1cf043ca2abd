"""param_fetch: the Conv2d entry of module_fetch_book lists every constructor argument but
``padding_mode``, so lowering a convolution loses how it pads."""

from __future__ import annotations

import torch.nn as nn

from reference import param_fetch

version, attrs, matching = param_fetch.module_fetch_book[nn.Conv2d]
param_fetch.module_fetch_book[nn.Conv2d] = (version, [a for a in attrs if a != "padding_mode"], matching)
