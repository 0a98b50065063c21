"""Optimisers (``SGD``, ``Adam``, ``AdamW``) and ``lr_scheduler``, with PyTorch's update rules."""

from numformer.optim import lr_scheduler
from numformer.optim.optimizer import SGD, Adam, AdamW, Optimizer

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "lr_scheduler"]
