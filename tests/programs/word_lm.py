"""A word-level language model trained the way the classic PyTorch examples train one (an RNN
or a Transformer encoder over a corpus cut into columns), written against PyTorch.

The test suite runs it as written and with only its import lines switched to numformer, from
the same initial weights (``--save_init`` / ``--load_init``), and compares the losses step by
step. The corpus is generated here from a seed: sentences of a small vocabulary.

What it exercises: a tokenised corpus built with ``tensor(...).type(int64)`` and ``cat``;
``batchify`` with ``narrow``, ``view``, ``t()`` and ``contiguous()``; ``nn.Embedding``,
``nn.LSTM``/``nn.GRU`` (time-major, several layers) and ``nn.TransformerEncoder`` with a
sinusoidal table written by slice assignment and a causal mask; ``log_softmax`` + ``NLLLoss`` and
``CrossEntropyLoss``; truncated backpropagation through time with hidden states detached
between chunks; ``zero_grad``, ``clip_grad_norm_`` and a hand-written SGD step on ``p.data``;
evaluation under ``no_grad``; the whole model saved with ``torch.save`` and loaded back with
``torch.load`` once its classes are allowed (``serialization.safe_globals``), then
``flatten_parameters``.
"""

import argparse
import json
import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class Dictionary:
    def __init__(self):
        self.word2idx, self.idx2word = {}, []

    def add_word(self, word):
        if word not in self.word2idx:
            self.idx2word.append(word)
            self.word2idx[word] = len(self.idx2word) - 1
        return self.word2idx[word]

    def __len__(self):
        return len(self.idx2word)


def make_corpus(seed, dictionary, lines):
    rng = np.random.default_rng(seed)
    words = "a the cat dog sat ran on to big red mat house saw bird and".split()
    ids = []
    for _ in range(lines):
        sentence = list(rng.choice(words, size=int(rng.integers(3, 9)))) + ["<eos>"]
        ids.append(torch.tensor([dictionary.add_word(w) for w in sentence]).type(torch.int64))
    return torch.cat(ids)


def batchify(data, bsz):
    nbatch = data.size(0) // bsz
    data = data.narrow(0, 0, nbatch * bsz)
    return data.view(bsz, -1).t().contiguous()


class RNNModel(nn.Module):
    def __init__(self, rnn_type, ntoken, ninp, nhid, nlayers, dropout=0.0, tie_weights=False):
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(ntoken, ninp)
        self.rnn = getattr(nn, rnn_type)(ninp, nhid, nlayers, dropout=dropout)
        self.decoder = nn.Linear(nhid, ntoken)
        if tie_weights:
            self.decoder.weight = self.encoder.weight
        nn.init.uniform_(self.encoder.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)
        nn.init.uniform_(self.decoder.weight, -0.1, 0.1)
        self.rnn_type, self.nhid, self.nlayers, self.ntoken = rnn_type, nhid, nlayers, ntoken

    def forward(self, input, hidden):
        output, hidden = self.rnn(self.drop(self.encoder(input)), hidden)
        decoded = self.decoder(self.drop(output)).view(-1, self.ntoken)
        return F.log_softmax(decoded, dim=1), hidden

    def init_hidden(self, bsz):
        weight = next(self.parameters())
        if self.rnn_type == "LSTM":
            return (weight.new_zeros(self.nlayers, bsz, self.nhid), weight.new_zeros(self.nlayers, bsz, self.nhid))
        return weight.new_zeros(self.nlayers, bsz, self.nhid)


class PositionalEncoding(nn.Module):
    def __init__(self, d_model, max_len=512):
        super().__init__()
        pe = torch.zeros(max_len, d_model)
        position = torch.arange(0, max_len, dtype=torch.float).unsqueeze(1)
        div_term = torch.exp(torch.arange(0, d_model, 2).float() * (-math.log(10000.0) / d_model))
        pe[:, 0::2] = torch.sin(position * div_term)
        pe[:, 1::2] = torch.cos(position * div_term)
        self.register_buffer("pe", pe.unsqueeze(1))

    def forward(self, x):
        return x + self.pe[: x.size(0)]


class TransformerModel(nn.Module):
    def __init__(self, ntoken, ninp, nhead, nhid, nlayers, dropout=0.0):
        super().__init__()
        self.embed = nn.Embedding(ntoken, ninp)
        self.pos = PositionalEncoding(ninp)
        layer = nn.TransformerEncoderLayer(ninp, nhead, nhid, dropout)
        self.encoder = nn.TransformerEncoder(layer, nlayers, enable_nested_tensor=False)
        self.decoder = nn.Linear(ninp, ntoken)
        self.ninp = ninp

    def forward(self, src):
        mask = torch.triu(torch.full((len(src), len(src)), float("-inf")), diagonal=1)
        x = self.pos(self.embed(src) * math.sqrt(self.ninp))
        return self.decoder(self.encoder(x, mask=mask))


def repackage_hidden(h):
    if isinstance(h, torch.Tensor):
        return h.detach()
    return tuple(repackage_hidden(v) for v in h)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="LSTM", choices=["LSTM", "GRU", "RNN", "Transformer"])
    parser.add_argument("--lr", type=float, default=2.0)
    parser.add_argument("--clip", type=float, default=0.25)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--bptt", type=int, default=6)
    parser.add_argument("--tied", action="store_true")
    parser.add_argument("--save", default="model.pt")
    parser.add_argument("--save_init", default="")
    parser.add_argument("--load_init", default="")
    parser.add_argument("--log", default="log.json")
    args = parser.parse_args()
    torch.manual_seed(1111)

    dictionary = Dictionary()
    train_data = batchify(make_corpus(0, dictionary, 40), 4)
    val_data = batchify(make_corpus(1, dictionary, 10), 2)
    ntokens = len(dictionary)
    if args.model == "Transformer":
        model = TransformerModel(ntokens, 16, 2, 32, 2)
        criterion = nn.CrossEntropyLoss()
    else:
        model = RNNModel(args.model, ntokens, 16, 16, 2, tie_weights=args.tied)
        criterion = nn.NLLLoss()
    if args.save_init:
        torch.save(model.state_dict(), args.save_init)
    if args.load_init:
        model.load_state_dict(torch.load(args.load_init))

    def get_batch(source, i):
        seq_len = min(args.bptt, len(source) - 1 - i)
        return source[i : i + seq_len], source[i + 1 : i + 1 + seq_len].view(-1)

    def step_loss(data, targets, hidden):
        if args.model == "Transformer":
            return criterion(model(data).view(-1, ntokens), targets), None
        output, hidden = model(data, hidden)
        return criterion(output, targets), hidden

    def evaluate(source, bsz):
        model.eval()
        total = 0.0
        hidden = None if args.model == "Transformer" else model.init_hidden(bsz)
        with torch.no_grad():
            for i in range(0, source.size(0) - 1, args.bptt):
                data, targets = get_batch(source, i)
                loss, hidden = step_loss(data, targets, hidden)
                total += len(data) * loss.item()
        return total / (len(source) - 1)

    log, lr, best = [], args.lr, None
    for epoch in range(args.epochs):
        model.train()
        hidden = None if args.model == "Transformer" else model.init_hidden(4)
        for i in range(0, train_data.size(0) - 1, args.bptt):
            data, targets = get_batch(train_data, i)
            model.zero_grad()
            if hidden is not None:
                hidden = repackage_hidden(hidden)
            loss, hidden = step_loss(data, targets, hidden)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
            for p in model.parameters():
                p.data.add_(p.grad, alpha=-lr)
            log.append({"epoch": epoch, "loss": loss.item()})
        val_loss = evaluate(val_data, 2)
        log.append({"epoch": epoch, "loss": val_loss, "split": "val"})
        if best is None or val_loss < best:
            with open(args.save, "wb") as f:
                torch.save(model, f)
            best = val_loss
        else:
            lr /= 4.0

    allowed = [RNNModel, TransformerModel, PositionalEncoding, torch.nn.functional.relu]
    allowed += [torch.nn.modules.dropout.Dropout, torch.nn.modules.sparse.Embedding, torch.nn.modules.linear.Linear]
    allowed += [torch.nn.modules.rnn.LSTM, torch.nn.modules.rnn.GRU, torch.nn.modules.rnn.RNN]
    allowed += [torch.nn.modules.container.ModuleList, torch.nn.modules.normalization.LayerNorm]
    allowed += [torch.nn.modules.activation.MultiheadAttention, torch.nn.modules.linear.NonDynamicallyQuantizableLinear]
    allowed += [torch.nn.modules.transformer.TransformerEncoder, torch.nn.modules.transformer.TransformerEncoderLayer]
    with open(args.save, "rb") as f:
        with torch.serialization.safe_globals(allowed):
            model = torch.load(f)
    if args.model != "Transformer":
        model.rnn.flatten_parameters()
    log.append({"epoch": args.epochs, "loss": evaluate(val_data, 2), "split": "best"})
    with open(args.log, "w") as f:
        json.dump(log, f)


if __name__ == "__main__":
    main()
