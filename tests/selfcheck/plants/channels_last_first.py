"""shape_prop: the memory format of a tensor is looked up channels-last first, so a tensor
that is contiguous both ways (one channel, or 1x1 spatial) is reported as channels-last."""

from __future__ import annotations

import torch

from plants import replace

replace("shape_prop", "_MEMORY_FORMATS",
        (torch.channels_last, torch.channels_last_3d, torch.contiguous_format))
