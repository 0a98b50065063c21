"""PyTorch's ``torch.nn.modules.activation``: the activation modules (and, as there,
``MultiheadAttention``)."""

from numformer.nn.activation import (
    CELU,
    ELU,
    GLU,
    SELU,
    Hardsigmoid,
    Hardswish,
    Hardtanh,
    LeakyReLU,
    LogSigmoid,
    LogSoftmax,
    Mish,
    ReLU6,
    Sigmoid,
    Softmax,
    Softmin,
    Softplus,
    Softsign,
)
from numformer.nn.attention import MultiheadAttention
from numformer.nn.layers import GELU, ReLU, Tanh

__all__ = [
    "CELU",
    "ELU",
    "GELU",
    "GLU",
    "SELU",
    "Hardsigmoid",
    "Hardswish",
    "Hardtanh",
    "LeakyReLU",
    "LogSigmoid",
    "LogSoftmax",
    "Mish",
    "MultiheadAttention",
    "ReLU",
    "ReLU6",
    "Sigmoid",
    "Softmax",
    "Softmin",
    "Softplus",
    "Softsign",
    "Tanh",
]
