"""GPT: a decoder-only Transformer language model (seed section 8: generation).

Reads top to bottom like nanoGPT: config, KV cache, causal self-attention, MLP, block, model,
generation. Each module's ``forward`` works on tensors (training, full-context inference); its
``step`` is the same computation on arrays against the KV cache, for decoding, where the
graph's bookkeeping took a third of the time at batch 1 (``GPT.forward_cached``). Pre-LN
blocks, GELU feed-forward, a final LayerNorm, optional weight tying. Parameter names follow
nanoGPT (``transformer.h.0.attn.c_attn``), so a PyTorch model built the same way takes these
weights through its state dict.
"""

from __future__ import annotations

import contextlib
import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

import numformer as nf
from numformer import nn
from numformer.nn import functional as F
from numformer.ops.fused import ScaledDotProductAttention
from numformer.parallel import num_threads
from numformer.tensor import Tensor

POSITIONS = ("learned", "sinusoidal", "rotary")


@dataclass
class GPTConfig:
    vocab_size: int = 128
    block_size: int = 128  # context length
    n_layer: int = 4
    n_head: int = 4
    d_model: int = 128
    d_ff: int | None = None  # default 4 * d_model
    dropout: float = 0.0
    positions: str = "learned"  # "learned", "sinusoidal" or "rotary"
    tie_weights: bool = True
    bias: bool = True

    def __post_init__(self):
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "d_model"):
            if getattr(self, name) < 1:
                raise ValueError(f"GPTConfig: {name} must be >= 1, got {getattr(self, name)}")
        if self.d_model % self.n_head:
            raise ValueError(f"GPTConfig: d_model ({self.d_model}) must be divisible by n_head "
                             f"({self.n_head})")  # fmt: skip
        if self.positions not in POSITIONS:
            raise ValueError(f"GPTConfig: positions must be one of {POSITIONS}, got "
                             f"{self.positions!r}")  # fmt: skip
        if self.positions == "rotary" and (self.d_model // self.n_head) % 2:
            raise ValueError("GPTConfig: rotary positions need an even head dimension")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"GPTConfig: dropout must be in [0, 1), got {self.dropout}")
        if self.d_ff is None:
            self.d_ff = 4 * self.d_model

    @classmethod
    def from_dict(cls, data: dict) -> GPTConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"GPTConfig: unknown field(s) {unknown}; known: {sorted(known)}")
        return cls(**data)


class KVCache:
    """Keys and values of every layer for the tokens seen so far, one row per sequence.

    ``k[layer]``, ``v[layer]``: ``(N, H, block_size, D)`` arrays filled in place. ``lengths``
    ``(N,)``: how many positions of each row are valid (rows may differ in length). A step
    starts with ``begin(positions)`` (``GPT.forward_cached`` calls it); then each layer
    ``store``s its new keys and values and gets back what its queries attend to.
    """

    def __init__(self, config: GPTConfig, batch: int, dtype):
        H, D = config.n_head, config.d_model // config.n_head
        shape = (batch, H, config.block_size, D)
        self.k = [np.zeros(shape, dtype=dtype) for _ in range(config.n_layer)]
        self.v = [np.zeros(shape, dtype=dtype) for _ in range(config.n_layer)]
        self.lengths = np.zeros(batch, dtype=np.int64)
        self._step = None

    def begin(self, positions: np.ndarray) -> None:
        """Start a step whose tokens go to ``positions`` ``(N, T)``: works out once, for every
        layer, how many positions they see (S = max + 1) and which (the mask)."""
        S = int(positions.max()) + 1
        if S > self.k[0].shape[2] or positions.min() < 0:
            raise ValueError(f"KVCache: positions must be in [0, block_size={self.k[0].shape[2]}), "
                             f"got [{positions.min()}, {S - 1}]")  # fmt: skip
        if positions.shape[1] == 1 and (positions == S - 1).all():  # rows in step: no mask
            self._step = positions, S, None
        else:
            mask = (np.arange(S)[None, None, :] <= positions[:, :, None])[:, None]  # (N,1,T,S)
            self._step = positions, S, mask

    def store(self, layer: int, k: np.ndarray, v: np.ndarray):
        """Write the step's keys and values ``(N, H, T, D)`` into ``layer``; return the keys and
        values ``(N, H, S, D)`` its queries attend to, and the mask ``(N, 1, T, S)`` of the
        pairs that take part (None: all of them)."""
        if self._step is None:
            raise RuntimeError("KVCache.store: call begin(positions) first")
        positions, S, mask = self._step
        keys, values = self.k[layer], self.v[layer]
        if mask is None:
            keys[:, :, S - 1], values[:, :, S - 1] = k[:, :, 0], v[:, :, 0]
        else:
            rows = np.arange(len(positions))[:, None]
            keys[rows, :, positions] = k.transpose(0, 2, 1, 3)
            values[rows, :, positions] = v.transpose(0, 2, 1, 3)
        return keys[:, :, :S], values[:, :, :S], mask


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig, rotary: nn.RotaryEmbedding | None):
        super().__init__()
        self.n_head, self.d_model = config.n_head, config.d_model
        self.c_attn = nn.Linear(config.d_model, 3 * config.d_model, bias=config.bias)
        self.c_proj = nn.Linear(config.d_model, config.d_model, bias=config.bias)
        self.dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)
        self.rotary = rotary  # one module shared by every layer; it holds no saved state

    def forward(self, x, positions, need_weights: bool = False):
        """Causal attention over the T tokens of ``x`` ``(N, T, E)`` at ``positions`` ``(N, T)``."""
        N, T, E = x.shape
        H, D = self.n_head, E // self.n_head
        qkv = self.c_attn(x).reshape(N, T, 3, H, D).permute(2, 0, 3, 1, 4)  # (3, N, H, T, D)
        q, k, v = qkv[0], qkv[1], qkv[2]
        if self.rotary is not None:
            q, k = self.rotary(q, positions=positions), self.rotary(k, positions=positions)
        out = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0,
            need_weights=need_weights)
        out, weights = out if need_weights else (out, None)
        y = self.resid_dropout(self.c_proj(out.transpose(1, 2).reshape(N, T, E)))
        return y, weights

    def step(self, x: np.ndarray, positions: np.ndarray, cache: KVCache, layer: int) -> np.ndarray:
        """``forward`` for decoding, on arrays: the new tokens' keys and values go into the
        cache, and their queries attend to everything cached for their row."""
        N, T, E = x.shape
        q, k, v = self.c_attn.infer(x).reshape(N, T, 3, self.n_head, -1).transpose(2, 0, 3, 1, 4)
        if self.rotary is not None:
            q = self.rotary(Tensor(q), positions=positions).data
            k = self.rotary(Tensor(k), positions=positions).data
        keys, values, mask = cache.store(layer, k, v)
        if T == 1:  # one query per row: (N, H, 1, S) scores, always small: the plain kernel
            out = ScaledDotProductAttention.infer(q, keys, values, bool_mask=mask,
                                                  scale=1.0 / math.sqrt(q.shape[-1]))  # fmt: skip
        else:  # a prompt: the functional picks the blocked kernel for long ones
            out = F.scaled_dot_product_attention(Tensor(q), Tensor(keys), Tensor(values), attn_mask=mask).data
        return self.c_proj.infer(out.transpose(0, 2, 1, 3).reshape(N, T, E))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.d_model, config.d_ff, bias=config.bias)
        self.gelu = nn.GELU(approximate="tanh")  # GPT-2's GELU
        self.c_proj = nn.Linear(config.d_ff, config.d_model, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))

    def step(self, x: np.ndarray) -> np.ndarray:
        return self.c_proj.infer(self.gelu.infer(self.c_fc.infer(x)))


class Block(nn.Module):
    """Pre-LN: x + attn(ln_1(x)), then x + mlp(ln_2(x)) (seed section 5's block, causal)."""

    def __init__(self, config: GPTConfig, rotary):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.d_model, bias=config.bias)
        self.attn = CausalSelfAttention(config, rotary)
        self.ln_2 = nn.LayerNorm(config.d_model, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x, positions, need_weights=False):
        a, weights = self.attn(self.ln_1(x), positions, need_weights)
        x = x + a
        return x + self.mlp(self.ln_2(x)), weights

    def step(self, x: np.ndarray, positions: np.ndarray, cache: KVCache, layer: int) -> np.ndarray:
        """``forward`` for decoding against a KV cache, on arrays (``x`` ``(N, T, E)``)."""
        x = x + self.attn.step(self.ln_1.infer(x), positions, cache, layer)
        return x + self.mlp.step(self.ln_2.infer(x))


class GPT(nn.Module):
    """``forward(idx (N, T) ints, targets (N, T) = None) -> (logits (N, T, V), loss or None)``."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        d = config.d_model
        rotary = nn.RotaryEmbedding(d // config.n_head, max_len=config.block_size) \
            if config.positions == "rotary" else None  # fmt: skip
        self.transformer = nn.ModuleDict({
            "wte": nn.Embedding(config.vocab_size, d),
            "drop": nn.Dropout(config.dropout),
            "h": nn.ModuleList(Block(config, rotary) for _ in range(config.n_layer)),
            "ln_f": nn.LayerNorm(d, bias=config.bias),
        })  # fmt: skip
        if config.positions == "learned":
            self.transformer["wpe"] = nn.Embedding(config.block_size, d)
        elif config.positions == "sinusoidal":
            table = F.sinusoidal_positional_encoding(config.block_size, d)
            self.register_buffer("pe", table, persistent=False)  # derived, never saved
        self.lm_head = nn.Linear(d, config.vocab_size, bias=False)
        self._init_weights()
        if config.tie_weights:
            self.lm_head.weight = self.transformer["wte"].weight

    @classmethod
    def from_config(cls, config) -> GPT:
        """A freshly initialised GPT from a ``GPTConfig``, a dict of its fields, or a JSON file."""
        if isinstance(config, (str, Path)):
            config = json.loads(Path(config).read_text())
            config = config.get("model", config)
        if isinstance(config, dict):
            config = GPTConfig.from_dict(config)
        return cls(config)

    def _init_weights(self) -> None:
        # GPT-2: N(0, 0.02) everywhere, zero biases, residual projections scaled by 1/sqrt(2L).
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif "ln_" in name:
                continue
            else:
                std = 0.02 / math.sqrt(2 * self.config.n_layer) if name.endswith("c_proj.weight") \
                    else 0.02  # fmt: skip
                nn.init.normal_(p, 0.0, std)

    # --- forward ----------------------------------------------------------------------------
    def _embed(self, idx: np.ndarray, positions: np.ndarray):
        x = self.transformer["wte"](idx)
        if self.config.positions == "learned":
            x = x + self.transformer["wpe"](positions)
        elif self.config.positions == "sinusoidal":
            x = x + Tensor(self.pe.data[positions].astype(x.dtype, copy=False))
        return self.transformer["drop"](x)

    def _embed_step(self, idx: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """``_embed`` on arrays, for decoding (no dropout)."""
        x = self.transformer["wte"].infer(idx)
        if self.config.positions == "learned":
            x = x + self.transformer["wpe"].infer(positions)
        elif self.config.positions == "sinusoidal":
            x = x + self.pe.data[positions].astype(x.dtype, copy=False)
        return x

    def _check_input(self, idx) -> np.ndarray:
        idx = idx.data if isinstance(idx, Tensor) else np.asarray(idx)
        if idx.ndim != 2 or not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"GPT: input must be integer token ids of shape (N, T), got "
                             f"{idx.dtype} {idx.shape}")  # fmt: skip
        if idx.shape[1] > self.config.block_size:
            raise ValueError(f"GPT: sequence length {idx.shape[1]} exceeds block_size "
                             f"{self.config.block_size}")  # fmt: skip
        if idx.size and (idx.min() < 0 or idx.max() >= self.config.vocab_size):
            raise ValueError(f"GPT: token ids must be in [0, {self.config.vocab_size}), got "
                             f"[{idx.min()}, {idx.max()}]")  # fmt: skip
        return idx

    def forward(self, idx, targets=None, need_weights: bool = False):
        """Logits for every position; with ``targets`` also the mean cross-entropy. With
        ``need_weights`` returns ``(logits, loss, weights)``, weights a list per layer of
        ``(N, H, T, T)`` attention arrays."""
        idx = self._check_input(idx)
        N, T = idx.shape
        positions = np.broadcast_to(np.arange(T), (N, T))
        x = self._embed(idx, positions)
        all_weights = []
        for block in self.transformer["h"]:
            x, w = block(x, positions, need_weights)
            all_weights.append(None if w is None else w.numpy())
        logits = self.lm_head(self.transformer["ln_f"](x))
        loss = None
        if targets is not None:
            t = targets.data if isinstance(targets, Tensor) else np.asarray(targets)
            loss = F.cross_entropy(logits.reshape(N * T, -1), t.reshape(-1))
        return (logits, loss, all_weights) if need_weights else (logits, loss)

    @nf.no_grad()
    def forward_cached(self, idx: np.ndarray, positions: np.ndarray, cache: KVCache) -> np.ndarray:
        """Run ``idx`` ``(N, T)`` at ``positions`` ``(N, T)`` against the cache, store their keys
        and values, and return logits ``(N, T, V)``. Positions must be < block_size.

        Inference only, as in eval mode (no dropout) and without forward hooks: the blocks'
        ``step`` methods run the same primitives as ``forward`` on arrays (``Function.infer``).
        A decoding step is ~50 primitives on a few rows each, where the graph's bookkeeping
        (tensors, modules, checks) rivals the arithmetic: through the modules the same step
        took 1.5x as long at batch 1 and 1.2x at batch 8 (4 layers, d_model 256)."""
        cache.begin(positions)
        x = self._embed_step(idx, positions)
        for layer, block in enumerate(self.transformer["h"]):
            x = block.step(x, positions, cache, layer)
        return self.lm_head.infer(self.transformer["ln_f"].infer(x))

    # --- generation -------------------------------------------------------------------------
    @nf.no_grad()
    def generate(self, prompts, max_new_tokens: int, temperature: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None, seed: int | None = None,
                 use_cache: bool = True, on_token=None, stop=None, record_logits=None):  # fmt: skip
        """Extend each prompt (a list of token-id sequences, lengths may differ) by up to
        ``max_new_tokens`` tokens; returns the new tokens per prompt.

        ``temperature=0`` is greedy. ``top_k`` keeps the k likeliest tokens, ``top_p`` the
        smallest set whose probability reaches p. ``seed`` makes sampling reproducible.
        ``on_token(row, token)`` is called as each token is chosen (for streaming); ``stop(row,
        tokens) -> bool`` ends a row early. With ``use_cache`` each step feeds one token per row
        through the KV cache; otherwise the whole context is recomputed (same logits).
        """
        from numformer.models.sampling import sample

        if max_new_tokens < 0:
            raise ValueError(f"generate: max_new_tokens must be >= 0, got {max_new_tokens}")
        was_training = self.training
        self.eval()
        rng = np.random.default_rng(seed)
        rows = [list(map(int, p)) for p in prompts]
        if any(len(r) == 0 for r in rows):
            raise ValueError("generate: every prompt needs at least one token")
        new = [[] for _ in rows]
        done = [False] * len(rows)
        cache = None
        # Decoding multiplies a few rows at a time: too little work to hand chunks to numformer's
        # threads (~35 us a hand-off), so it runs on one kernel thread with BLAS's own threads.
        with num_threads(1) if use_cache else contextlib.nullcontext():
            for _ in range(max_new_tokens):
                if use_cache:
                    logits, cache = self._next_logits_cached(rows, cache)
                else:
                    logits = self._next_logits_full(rows)
                if record_logits is not None:
                    record_logits.append(logits.copy())
                tokens = sample(logits, rng, temperature, top_k, top_p)
                for i, tok in enumerate(tokens):
                    if done[i]:
                        continue
                    rows[i].append(int(tok))
                    new[i].append(int(tok))
                    if on_token is not None:
                        on_token(i, int(tok))
                    if stop is not None and stop(i, new[i]):
                        done[i] = True
                if all(done):
                    break
        self.train(was_training)
        return new

    def _window(self, rows):
        """Right-padded ``(N, T)`` array of each row's last ``block_size`` tokens, and lengths."""
        B = self.config.block_size
        tails = [r[-B:] for r in rows]
        T = max(len(t) for t in tails)
        idx = np.zeros((len(rows), T), dtype=np.int64)
        for i, t in enumerate(tails):
            idx[i, : len(t)] = t
        return idx, np.array([len(t) for t in tails])

    def _next_logits_full(self, rows) -> np.ndarray:
        idx, lengths = self._window(rows)
        logits, _ = self.forward(idx)
        return logits.numpy()[np.arange(len(rows)), lengths - 1]

    def _next_logits_cached(self, rows, cache):
        N = len(rows)
        full = cache is not None and (cache.lengths >= self.config.block_size).any()
        if cache is None or full:
            # (Re)fill: prompts at first, or the last half-context when a row hits block_size.
            if full:
                rows_view = [r[-(self.config.block_size // 2):] for r in rows]
            else:
                rows_view = rows
            idx, lengths = self._window(rows_view)
            cache = KVCache(self.config, N, self.lm_head.weight.dtype)
            positions = np.broadcast_to(np.arange(idx.shape[1]), idx.shape)
            logits = self.forward_cached(idx, positions, cache)
            cache.lengths = lengths.copy()
            return logits[np.arange(N), lengths - 1], cache
        idx = np.array([[r[-1]] for r in rows], dtype=np.int64)
        positions = cache.lengths[:, None].copy()
        logits = self.forward_cached(idx, positions, cache)
        cache.lengths += 1
        return logits[:, 0], cache

    # --- saving -----------------------------------------------------------------------------
    def summary(self) -> str:
        c = self.config
        counts = {}
        for name, p in self.named_parameters():
            part = name.split(".")[1] if name.startswith("transformer.") else name.split(".")[0]
            counts[part] = counts.get(part, 0) + p.numel()
        lines = [f"GPT: {c.n_layer} layers, {c.n_head} heads, d_model {c.d_model}, d_ff {c.d_ff}, "
                 f"context {c.block_size}, vocab {c.vocab_size}, {c.positions} positions"
                 f"{', tied embeddings' if c.tie_weights else ''}"]  # fmt: skip
        lines += [f"  {k:<8} {v:>12,}" for k, v in counts.items()]
        lines.append(f"  {'total':<8} {self.num_parameters():>12,}")
        return "\n".join(lines)

    def save(self, folder, tokenizer=None, extra: dict | None = None) -> Path:
        """One folder: ``config.json``, ``model.safetensors`` and ``tokenizer.json``."""
        from safetensors.numpy import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: np.ascontiguousarray(v) for k, v in self.state_dict().items()
                 if not (self.config.tie_weights and k == "lm_head.weight")}  # fmt: skip
        tmp = folder / "model.safetensors.tmp"
        save_file(state, str(tmp))
        tmp.replace(folder / "model.safetensors")
        info = {"model": asdict(self.config), **(extra or {})}
        (folder / "config.json").write_text(json.dumps(info, indent=1))
        if tokenizer is not None:
            tokenizer.save(folder / "tokenizer.json")
        return folder

    @classmethod
    def load(cls, folder):
        """``(model, tokenizer or None, config.json contents)`` from a folder ``save`` wrote."""
        from safetensors.numpy import load_file

        from numformer.data.tokenizers import load_tokenizer

        folder = Path(folder)
        if not (folder / "config.json").exists() or not (folder / "model.safetensors").exists():
            raise FileNotFoundError(f"{folder} is not a numformer model folder (expected "
                                    f"config.json and model.safetensors)")  # fmt: skip
        info = json.loads((folder / "config.json").read_text())
        model = cls(GPTConfig.from_dict(info["model"]))
        state = load_file(str(folder / "model.safetensors"))
        if model.config.tie_weights:
            state["lm_head.weight"] = state["transformer.wte.weight"]
        model.load_state_dict(state)
        tok_path = folder / "tokenizer.json"
        tokenizer = load_tokenizer(tok_path) if tok_path.exists() else None
        return model, tokenizer, info
