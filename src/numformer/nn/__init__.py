"""Neural-network modules with PyTorch's names, arguments and state-dict layouts.

``numformer.nn.functional`` holds the functional API; ``numformer.nn.init`` the initialisers.
"""

from numformer.nn import functional, init, utils
from numformer.nn.attention import AttentionCache, MultiheadAttention
from numformer.nn.cache import Cache, DynamicCache
from numformer.nn.layers import (
    GELU,
    BatchNorm1d,
    Dropout,
    Embedding,
    FeedForward,
    Identity,
    LayerNorm,
    Linear,
    ReLU,
    RMSNorm,
    SiLU,
    Tanh,
)
from numformer.nn.module import Module, ModuleDict, ModuleList, Parameter, Sequential
from numformer.nn.positional import (
    LearnedPositionalEmbedding,
    RotaryEmbedding,
    SinusoidalPositionalEncoding,
)
from numformer.nn.recurrent import LSTM, RNN
from numformer.nn.transformer import (
    DecoderCache,
    Transformer,
    TransformerDecoder,
    TransformerDecoderLayer,
    TransformerEncoder,
    TransformerEncoderLayer,
    generate_square_subsequent_mask,
)

__all__ = [
    "AttentionCache",
    "Cache",
    "DynamicCache",
    "DecoderCache",
    "functional",
    "init",
    "utils",
    "Module",
    "Parameter",
    "Sequential",
    "ModuleList",
    "ModuleDict",
    "Linear",
    "Embedding",
    "LayerNorm",
    "BatchNorm1d",
    "Dropout",
    "ReLU",
    "GELU",
    "Tanh",
    "Identity",
    "RMSNorm",
    "SiLU",
    "FeedForward",
    "MultiheadAttention",
    "SinusoidalPositionalEncoding",
    "LearnedPositionalEmbedding",
    "RotaryEmbedding",
    "TransformerEncoderLayer",
    "TransformerEncoder",
    "TransformerDecoderLayer",
    "TransformerDecoder",
    "Transformer",
    "generate_square_subsequent_mask",
    "RNN",
    "LSTM",
]
