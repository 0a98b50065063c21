"""PyTorch's ``torch.nn.modules.linear``."""

from numformer.nn.layers import Identity, Linear, NonDynamicallyQuantizableLinear

__all__ = ["Identity", "Linear", "NonDynamicallyQuantizableLinear"]
