"""Utilities with PyTorch's names: ``numformer.utils.data`` (datasets, samplers, ``DataLoader``)."""

from numformer.utils import data

__all__ = ["data"]
