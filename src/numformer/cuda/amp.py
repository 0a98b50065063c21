"""``numformer.cuda.amp``: PyTorch's older spelling of ``numformer.amp`` for the GPU."""

from __future__ import annotations

from numformer import amp as _amp


class GradScaler(_amp.GradScaler):
    """``torch.cuda.amp.GradScaler``: ``numformer.amp.GradScaler("cuda", ...)``."""

    def __init__(self, init_scale=2.0**16, growth_factor=2.0, backoff_factor=0.5, growth_interval=2000, enabled=True):
        super().__init__("cuda", init_scale, growth_factor, backoff_factor, growth_interval, enabled)


class autocast(_amp.autocast):  # noqa: N801 - PyTorch's name
    """``torch.cuda.amp.autocast``: ``numformer.amp.autocast("cuda", ...)``."""

    def __init__(self, enabled: bool = True, dtype=None, cache_enabled=None):
        super().__init__("cuda", dtype=dtype, enabled=enabled, cache_enabled=cache_enabled)
