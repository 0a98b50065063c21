"""A PyTorch GPT with numformer's architecture and parameter names, for parity tests and the
side-by-side benchmark. Weights move between the two through ``state_dict``."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from numformer.models.gpt import GPTConfig


class _Attention(nn.Module):
    def __init__(self, c: GPTConfig):
        super().__init__()
        self.n_head = c.n_head
        self.c_attn = nn.Linear(c.d_model, 3 * c.d_model, bias=c.bias)
        self.c_proj = nn.Linear(c.d_model, c.d_model, bias=c.bias)
        self.dropout = c.dropout
        self.resid_dropout = nn.Dropout(c.dropout)
        self.rotary = c.positions == "rotary"
        if self.rotary:
            D = c.d_model // c.n_head
            inv = 10000.0 ** (-torch.arange(0, D, 2, dtype=torch.float64) / D)
            ang = torch.arange(c.block_size, dtype=torch.float64)[:, None] * inv[None]
            ang = torch.cat([ang, ang], -1)
            self.register_buffer("cos", ang.cos(), persistent=False)
            self.register_buffer("sin", ang.sin(), persistent=False)

    def _rope(self, x, offset=0):
        T, half = x.shape[-2], x.shape[-1] // 2
        rotated = torch.cat([-x[..., half:], x[..., :half]], -1)
        cos, sin = self.cos[offset : offset + T], self.sin[offset : offset + T]
        return x * cos.to(x.dtype) + rotated * sin.to(x.dtype)

    def forward(self, x, cache=None, layer: int = 0):
        """With ``cache`` (a ``KVCache``), the T new tokens are written into this layer's
        preallocated keys and values at ``cache.length`` and attend to everything cached."""
        N, T, E = x.shape
        H = self.n_head
        q, k, v = (t.view(N, T, H, E // H).transpose(1, 2) for t in self.c_attn(x).split(E, 2))
        offset = 0 if cache is None else cache.length
        if self.rotary:
            q, k = self._rope(q, offset), self._rope(k, offset)
        if cache is not None:
            cache.k[layer][:, :, offset : offset + T] = k
            cache.v[layer][:, :, offset : offset + T] = v
            k, v = cache.k[layer][:, :, : offset + T], cache.v[layer][:, :, : offset + T]
        y = F.scaled_dot_product_attention(
            q, k, v, is_causal=offset == 0 and T > 1, dropout_p=self.dropout if self.training else 0.0
        )
        return self.resid_dropout(self.c_proj(y.transpose(1, 2).reshape(N, T, E)))


class KVCache:
    """Preallocated keys and values ``(N, H, block_size, D)`` per layer, filled in place (the
    same scheme as numformer's ``nn.StaticCache``, so the benchmark compares like with like)."""

    def __init__(self, c: GPTConfig, batch: int, dtype):
        shape = (batch, c.n_head, c.block_size, c.d_model // c.n_head)
        self.k = [torch.zeros(shape, dtype=dtype) for _ in range(c.n_layer)]
        self.v = [torch.zeros(shape, dtype=dtype) for _ in range(c.n_layer)]
        self.length = 0


class _MLP(nn.Module):
    def __init__(self, c: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(c.d_model, c.d_ff, bias=c.bias)
        self.c_proj = nn.Linear(c.d_ff, c.d_model, bias=c.bias)
        self.dropout = nn.Dropout(c.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")))


class _Block(nn.Module):
    def __init__(self, c: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(c.d_model, bias=c.bias)
        self.attn = _Attention(c)
        self.ln_2 = nn.LayerNorm(c.d_model, bias=c.bias)
        self.mlp = _MLP(c)

    def forward(self, x, cache=None, layer: int = 0):
        x = x + self.attn(self.ln_1(x), cache, layer)
        return x + self.mlp(self.ln_2(x))


class TorchGPT(nn.Module):
    def __init__(self, c: GPTConfig):
        super().__init__()
        self.config = c
        self.transformer = nn.ModuleDict(
            {
                "wte": nn.Embedding(c.vocab_size, c.d_model),
                "drop": nn.Dropout(c.dropout),
                "h": nn.ModuleList(_Block(c) for _ in range(c.n_layer)),
                "ln_f": nn.LayerNorm(c.d_model, bias=c.bias),
            }
        )
        if c.positions == "learned":
            self.transformer["wpe"] = nn.Embedding(c.block_size, c.d_model)
        elif c.positions == "sinusoidal":
            pos = torch.arange(c.block_size, dtype=torch.float64)[:, None]
            div = torch.exp(torch.arange(0, c.d_model, 2, dtype=torch.float64) * -(math.log(10000.0) / c.d_model))
            pe = torch.zeros(c.block_size, c.d_model, dtype=torch.float64)
            pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * div), torch.cos(pos * div)
            self.register_buffer("pe", pe.float(), persistent=False)
        self.lm_head = nn.Linear(c.d_model, c.vocab_size, bias=False)
        if c.tie_weights:
            self.lm_head.weight = self.transformer["wte"].weight

    def forward(self, idx, targets=None, cache=None):
        N, T = idx.shape
        offset = 0 if cache is None else cache.length
        x = self.transformer["wte"](idx)
        if self.config.positions == "learned":
            x = x + self.transformer["wpe"](torch.arange(offset, offset + T))
        elif self.config.positions == "sinusoidal":
            x = x + self.pe[offset : offset + T].to(x.dtype)
        x = self.transformer["drop"](x)
        for i, block in enumerate(self.transformer["h"]):
            x = block(x, cache, i)
        if cache is not None:
            cache.length += T
        logits = self.lm_head(self.transformer["ln_f"](x))
        loss = None if targets is None else F.cross_entropy(logits.reshape(N * T, -1), targets.reshape(-1))
        return logits, loss

    @torch.no_grad()
    def configure_optimizers(self, weight_decay: float, learning_rate: float, betas=(0.9, 0.95)):
        """``GPT.configure_optimizers``'s rule in PyTorch: decay the weight matrices only."""
        decay = [p for n, p in self.named_parameters() if p.ndim >= 2 and "wpe" not in n]
        rest = [p for n, p in self.named_parameters() if not (p.ndim >= 2 and "wpe" not in n)]
        groups = [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=learning_rate, betas=betas)

    def generate_greedy(self, idx, max_new_tokens: int):
        """Greedy decoding with a preallocated KV cache (prompt + new tokens must fit in
        block_size); returns the new tokens ``(N, max_new_tokens)``."""
        cache = KVCache(self.config, idx.shape[0], self.lm_head.weight.dtype)
        logits, _ = self(idx, cache=cache)
        out = []
        for _ in range(max_new_tokens):
            nxt = logits[:, -1].argmax(-1, keepdim=True)
            out.append(nxt)
            logits, _ = self(nxt, cache=cache)
        return torch.cat(out, 1)


def from_numformer(model) -> TorchGPT:
    """A ``TorchGPT`` holding a copy of a numformer ``GPT``'s weights (same dtype)."""
    ref = TorchGPT(model.config)
    state = {k: torch.from_numpy(v.numpy().copy()) for k, v in model.state_dict().items()}
    ref.to(next(iter(state.values())).dtype)
    ref.load_state_dict(state)
    return ref
