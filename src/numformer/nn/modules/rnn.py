"""PyTorch's ``torch.nn.modules.rnn``."""

from numformer.nn.recurrent import GRU, LSTM, RNN, RNNBase

__all__ = ["GRU", "LSTM", "RNN", "RNNBase"]
