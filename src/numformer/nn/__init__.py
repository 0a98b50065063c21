"""Neural-network building blocks; ``numformer.nn.functional`` holds the functional API."""

from numformer.nn import functional

__all__ = ["functional"]
