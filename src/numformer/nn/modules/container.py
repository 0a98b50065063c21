"""PyTorch's ``torch.nn.modules.container``."""

from numformer.nn.module import ModuleDict, ModuleList, ParameterDict, ParameterList, Sequential

__all__ = ["ModuleDict", "ModuleList", "ParameterDict", "ParameterList", "Sequential"]
