"""GPT: a decoder-only Transformer language model (seed section 8: generation).

Reads top to bottom like nanoGPT: config, a cached step's mask, causal self-attention, MLP,
block, model, generation. Each module has one ``forward``; decoding passes an ``nn.StaticCache``
to it (the one cache protocol, ``nn.Cache``), as Hugging Face's decoders take
``past_key_values``, and inference is fast because the engine records no graph when none is
needed. Pre-LN blocks, GELU feed-forward, a final LayerNorm, optional weight tying. Parameter
names follow nanoGPT (``transformer.h.0.attn.c_attn``), so a PyTorch model built the same way
takes these weights through its state dict.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from numformer import nn
from numformer.autograd import is_grad_enabled, no_grad
from numformer.backend import to_numpy, xp
from numformer.nn import functional as F
from numformer.nn.layers import linear_then
from numformer.ops.masks import PositionIds
from numformer.serialization import folders
from numformer.serialization.configs import Config
from numformer.serialization.files import read_json
from numformer.tensor import Tensor, array_of

POSITIONS = ("learned", "sinusoidal", "rotary")


@dataclass
class GPTConfig(Config):
    """A GPT's sizes and choices (``GPT(config)``); ``from_dict`` reads one from a file's
    mapping with numformer's typed-config rules.

    Args:
        vocab_size: tokens V (128).
        block_size: the context length, the most positions a forward takes (128).
        n_layer: decoder blocks (4).
        n_head: attention heads (4; d_model must divide by it).
        d_model: the embedding width E (128).
        d_ff: the MLP's hidden width (default 4 * d_model).
        dropout: dropout probability in training (0.0).
        positions: ``"learned"`` (GPT-2's), ``"sinusoidal"`` (seed §4) or ``"rotary"`` (RoPE).
        tie_weights: the output layer shares the token embedding's weight (True).
        bias: biases in the linear layers and LayerNorms (True).

    Raises:
        ValueError: a size below 1, d_model not divisible by n_head, an unknown ``positions``,
            an odd head width with rotary positions, or dropout outside [0, 1).
    """

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
        super().__post_init__()
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "d_model"):
            if getattr(self, name) < 1:
                raise ValueError(f"GPTConfig: {name} must be >= 1, got {getattr(self, name)}")
        if self.d_model % self.n_head:
            raise ValueError(f"GPTConfig: d_model ({self.d_model}) must be divisible by n_head ({self.n_head})")
        if self.positions not in POSITIONS:
            raise ValueError(f"GPTConfig: positions must be one of {POSITIONS}, got {self.positions!r}")
        if self.positions == "rotary" and (self.d_model // self.n_head) % 2:
            raise ValueError("GPTConfig: rotary positions need an even head dimension")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"GPTConfig: dropout must be in [0, 1), got {self.dropout}")
        if self.d_ff is None:
            self.d_ff = 4 * self.d_model
        if self.d_ff < 1:
            raise ValueError(f"GPTConfig: d_ff must be >= 1, got {self.d_ff}")

    def num_parameters(self) -> int:
        """The parameters ``GPT(self)`` holds, counted from the sizes alone (nothing is
        allocated): what a size check needs before building the model.

        Returns:
            ``GPT(self).num_parameters()``: a tied output layer counted once."""
        d, ff, bias = self.d_model, self.d_ff, int(self.bias)
        layer = 2 * d * (1 + bias)  # two LayerNorms
        layer += d * 3 * d + 3 * d * bias + d * d + d * bias  # attention: c_attn, c_proj
        layer += d * ff + ff * bias + ff * d + d * bias  # MLP: c_fc, c_proj
        total = self.vocab_size * d + self.n_layer * layer + d * (1 + bias)  # wte, blocks, ln_f
        if self.positions == "learned":
            total += self.block_size * d
        if not self.tie_weights:
            total += d * self.vocab_size
        return total


def cached_step(positions):
    """What a step through a cache needs, worked out once for every layer: the mask of the
    (query, key) pairs that take part and the ``cache_position`` its keys are written at.

    Each query at position p sees the cached keys 0..p of its row (earlier steps included).
    Returns ``(mask, cache_position)``: ``(None, (T,))`` for one new token per row, every row at
    the same position (it sees everything cached); ``("causal", (T,))`` for a prompt from
    position 0 (the causal kernel); else a boolean mask ``(N, 1, T, S)`` (S = max + 1) and the
    positions ``(N, T)`` themselves, one list per row (rows of different lengths).

    Shape:
        positions ``(N, T)`` integers."""
    S = int(positions.max()) + 1
    if positions.shape[1] == 1 and (positions == S - 1).all():
        return None, positions[0]
    if positions.shape[1] == S and (positions == xp.arange(S)).all():
        return "causal", positions[0]
    return (xp.arange(S)[None, None, :] <= positions[:, :, None])[:, None], positions


class KVCache(nn.StaticCache):
    """Deprecated: GPT's cache is an ``nn.StaticCache(config.block_size)`` (the one cache
    protocol, ``nn.Cache``); ``begin``, ``store`` and the per-row ``lengths`` are gone (pass
    ``positions`` to ``GPT.forward`` for rows of different lengths).

    Args:
        config: the model's ``GPTConfig`` (its ``block_size`` is reserved).
        batch, dtype: ignored (taken from the first update).
    """

    def __init__(self, config: GPTConfig, batch: int | None = None, dtype=None):
        warnings.warn(
            "models.KVCache is deprecated: use nn.StaticCache(config.block_size) (one cache protocol, nn.Cache)",
            DeprecationWarning,
            stacklevel=2,
        )
        super().__init__(config.block_size)


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with one fused QKV projection (``c_attn``).

    ``layer_idx`` names this layer's slot in a cache (Hugging Face's ``layer_idx``).
    """

    def __init__(self, config: GPTConfig, rotary: nn.RotaryEmbedding | None, layer_idx: int = 0):
        super().__init__()
        self.n_head, self.d_model, self.layer_idx = config.n_head, config.d_model, layer_idx
        self.c_attn = nn.Linear(config.d_model, 3 * config.d_model, bias=config.bias)
        self.c_proj = nn.Linear(config.d_model, config.d_model, bias=config.bias)
        self.dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)
        self.rotary = rotary  # one module shared by every layer; it holds no saved state

    def forward(
        self,
        x,
        positions,
        cache: nn.Cache | None = None,
        need_weights: bool = False,
        mask="causal",
        cache_position=None,
    ):
        """Each token attends to itself and the tokens before it.

        Without a cache, the T tokens of ``x`` attend among themselves, causally. With one, their
        keys and values are stored first (at ``cache_position``) and each query attends to what
        ``mask`` lets it see of everything cached (``cached_step`` works both out for a step).

        Shape:
            x ``(N, T, E)``, positions ``(N, T)`` (ints); mask ``"causal"``, None (all) or
            boolean ``(N, 1, T, S)`` -> ``(N, T, E)``, and the weights ``(N, H, T, S)`` or None
            (S = T without a cache, else the cached length).
        """
        N, T, E = x.shape
        H, D = self.n_head, E // self.n_head
        qkv = self.c_attn(x).reshape(N, T, 3, H, D).permute(2, 0, 3, 1, 4)  # (3, N, H, T, D)
        q, k, v = qkv[0], qkv[1], qkv[2]
        if self.rotary is not None:
            q, k = self.rotary(q, positions=positions), self.rotary(k, positions=positions)
        if cache is not None:
            k, v = cache.update(k, v, self.layer_idx, {"cache_position": cache_position})
        causal = isinstance(mask, str)  # no cache, or a prompt from position 0: the causal kernel
        mask = None if causal else mask
        attend = F.scaled_dot_product_attention_with_weights if need_weights else F.scaled_dot_product_attention
        out = attend(q, k, v, attn_mask=mask, is_causal=causal, dropout_p=self.dropout if self.training else 0.0)
        out, weights = out if need_weights else (out, None)
        y = self.resid_dropout(self.c_proj(out.transpose(1, 2).reshape(N, T, E)))
        return y, weights


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.d_model, config.d_ff, bias=config.bias)
        self.gelu = nn.GELU(approximate="tanh")  # GPT-2's GELU
        self.c_proj = nn.Linear(config.d_ff, config.d_model, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        """Shape: ``(N, T, E)`` -> ``(N, T, E)`` (through ``(N, T, d_ff)``)."""
        return self.dropout(self.c_proj(linear_then(self.c_fc, self.gelu, x)))


class Block(nn.Module):
    """Pre-LN: x + attn(ln_1(x)), then x + mlp(ln_2(x)) (seed section 5's block, causal)."""

    def __init__(self, config: GPTConfig, rotary, layer_idx: int = 0):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.d_model, bias=config.bias)
        self.attn = CausalSelfAttention(config, rotary, layer_idx)
        self.ln_2 = nn.LayerNorm(config.d_model, bias=config.bias)
        self.mlp = MLP(config)

    def forward(
        self,
        x,
        positions,
        cache: nn.Cache | None = None,
        need_weights: bool = False,
        mask="causal",
        cache_position=None,
    ):
        """Shape: x ``(N, T, E)``, positions ``(N, T)`` -> ``(N, T, E)`` and the attention weights
        (see ``CausalSelfAttention.forward``)."""
        a, weights = self.attn(self.ln_1(x), positions, cache, need_weights, mask, cache_position)
        x = x + a
        return x + self.mlp(self.ln_2(x)), weights


class GPT(nn.Module):
    """A GPT language model (Radford et al., 2019, GPT-2; nanoGPT's layout): token and position
    embeddings, ``n_layer`` pre-LN blocks of causal self-attention and MLP, a final LayerNorm and
    the output layer; ``generate`` decodes with an ``nn.StaticCache``.

    Args:
        config: a ``GPTConfig``.

    Shape:
        ``forward(idx (N, T) ints, targets=None, cache=None, positions=None) -> (logits
        (N, T, V), loss or None)``; T at most ``config.block_size``.
    """

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        d = config.d_model
        rotary = (
            nn.RotaryEmbedding(d // config.n_head, max_len=config.block_size) if config.positions == "rotary" else None
        )
        self.transformer = nn.ModuleDict(
            {
                "wte": nn.Embedding(config.vocab_size, d),
                "drop": nn.Dropout(config.dropout),
                "h": nn.ModuleList(Block(config, rotary, i) for i in range(config.n_layer)),
                "ln_f": nn.LayerNorm(d, bias=config.bias),
            }
        )
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
            config = read_json(config)
            config = config.get("model", config) if isinstance(config, dict) else config
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
                std = 0.02 / math.sqrt(2 * self.config.n_layer) if name.endswith("c_proj.weight") else 0.02
                nn.init.normal_(p, 0.0, std)

    def configure_optimizers(self, weight_decay: float, learning_rate: float, betas=(0.9, 0.95)):
        """AdamW with weight decay on the weight matrices only: not biases, LayerNorm weights or
        the learned position table (GPT-2's training rule; nanoGPT's ``configure_optimizers``).
        A tied embedding is decayed once."""
        from numformer.optim import AdamW

        decay = [p for n, p in self.named_parameters() if p.ndim >= 2 and "wpe" not in n]
        rest = [p for n, p in self.named_parameters() if not (p.ndim >= 2 and "wpe" not in n)]
        groups = [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]
        return AdamW(groups, lr=learning_rate, betas=betas)

    # --- forward ----------------------------------------------------------------------------
    def _embed(self, idx: np.ndarray, positions: np.ndarray):
        x = self.transformer["wte"](idx)
        if self.config.positions == "learned":
            x = x + self.transformer["wpe"](positions)
        elif self.config.positions == "sinusoidal":
            x = x + self.pe[positions].to(x.dtype)
        return self.transformer["drop"](x)

    def _check_input(self, idx) -> np.ndarray:
        idx = array_of(idx)
        if idx.ndim != 2 or not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"GPT: input must be integer token ids of shape (N, T), got {idx.dtype} {idx.shape}")
        if idx.shape[1] > self.config.block_size:
            raise ValueError(f"GPT: sequence length {idx.shape[1]} exceeds block_size {self.config.block_size}")
        if idx.size and (idx.min() < 0 or idx.max() >= self.config.vocab_size):
            raise ValueError(f"GPT: token ids must be in [0, {self.config.vocab_size}), got [{idx.min()}, {idx.max()}]")
        return idx

    def _check_positions(self, positions) -> None:
        B = self.config.block_size
        if positions.size and (positions.min() < 0 or positions.max() >= B):
            raise ValueError(
                f"GPT: positions must be in [0, block_size={B}), got [{positions.min()}, {positions.max()}]"
            )

    def forward(self, idx, targets=None, cache: nn.Cache | None = None, positions=None, need_weights: bool = False):
        """Logits for every position, and with ``targets`` the mean cross-entropy.

        With a ``cache`` (an ``nn.StaticCache(block_size)``; inference only: run under
        ``numformer.no_grad()``), the tokens go to ``positions`` (default: after what the cache
        holds, ``cache.get_seq_length()``), their keys and values are stored there, and each
        attends to everything its row has cached up to its position. Decoding then feeds one
        token per row per step: logits equal to recomputing the whole context. Rows of
        different lengths pass their own ``positions`` (``generate`` right-pads its prompts);
        another ``nn.Cache`` (``nn.DynamicCache``) appends, so it takes only the next positions.

        Shape:
            idx ``(N, T)`` integer token ids, T <= block_size; targets ``(N, T)``; positions
            ``(N, T)`` ints < block_size. Returns ``(logits (N, T, V), loss () or None)``, and
            with ``need_weights`` a third item: per layer the ``(N, H, T, S)`` attention weights
            as arrays.

        Raises:
            ValueError: ids not of shape (N, T), out of the vocabulary, T > block_size, positions
            not integers of idx's shape in [0, block_size), positions other than the next ones
            with a cache other than ``nn.StaticCache``, or a cache used while gradients are
            recorded.
        """
        idx = self._check_input(idx)
        N, T = idx.shape
        if positions is not None:
            positions = xp.asarray(positions.array if isinstance(positions, Tensor) else positions)
            if positions.shape != (N, T) or positions.dtype.kind not in "iu":
                raise ValueError(
                    f"GPT: positions must be integers of idx's shape {(N, T)}, got {positions.dtype} {positions.shape}"
                )
            self._check_positions(positions)
        mask, cache_position = "causal", None
        if cache is not None:
            if is_grad_enabled() and any(p.requires_grad for p in self.parameters()):
                raise ValueError("GPT: cache= is for inference; call the model under numformer.no_grad()")
            if positions is None:
                positions = xp.broadcast_to(cache.get_seq_length() + xp.arange(T), (N, T))
                self._check_positions(positions)
            mask, cache_position = cached_step(positions)
            if not isinstance(cache, nn.StaticCache) and (
                cache_position.ndim != 1 or int(cache_position[0]) != cache.get_seq_length()
            ):
                raise ValueError(
                    f"GPT: positions other than the next ones ({cache.get_seq_length()}, ... in every row) need an "
                    f"nn.StaticCache, which writes at given positions; a {type(cache).__name__} appends"
                )
        elif positions is None:  # 0 .. T-1 in every row, as a primitive (numformer.onnx: from T's size)
            positions = PositionIds.apply(Tensor(idx)).array
        x = self._embed(idx, positions)
        all_weights = []
        for block in self.transformer["h"]:
            x, w = block(x, positions, cache, need_weights, mask, cache_position)
            all_weights.append(None if w is None else w.array)
        logits = self.lm_head(self.transformer["ln_f"](x))
        loss = None
        if targets is not None:
            t = array_of(targets)
            loss = F.cross_entropy(logits.reshape(N * T, -1), t.reshape(-1))
        return (logits, loss, all_weights) if need_weights else (logits, loss)

    # --- generation -------------------------------------------------------------------------
    @no_grad()
    def generate(
        self,
        prompts,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        use_cache: bool = True,
        on_token=None,
        stop=None,
        record_logits=None,
    ):
        """Extend each prompt (a list of token-id sequences, lengths may differ) by up to
        ``max_new_tokens`` tokens; returns the new tokens per prompt.

        ``temperature=0`` is greedy. ``top_k`` keeps the k likeliest tokens, ``top_p`` the
        smallest set whose probability reaches p. ``seed`` makes sampling reproducible.
        ``on_token(row, token)`` is called as each token is chosen (for streaming); ``stop(row,
        tokens) -> bool`` ends a row early. With ``use_cache`` each step feeds one token per row
        through the KV cache; otherwise the whole context is recomputed. Both give the same logits
        at every step: once a row outgrows block_size, each step recomputes every row's last
        block_size tokens (the window slides, so no cached key fits).
        """
        from numformer.models.sampling import check_sampling, sample

        check_sampling(max_new_tokens, temperature, top_k, top_p, seed)
        was_training = self.training
        self.eval()
        rng = np.random.default_rng(seed)
        rows = [list(map(int, p)) for p in prompts]
        if any(len(r) == 0 for r in rows):
            raise ValueError("generate: every prompt needs at least one token")
        new = [[] for _ in rows]
        done = [False] * len(rows)
        cache = None
        hooked = any(m.has_forward_hooks() for m in self.modules())  # hooks must see every module run
        for _ in range(max_new_tokens):
            # Past the context the window slides: each row's last block_size tokens at positions
            # 0..block_size-1, which no cached key has seen; so those steps recompute the window.
            if use_cache and max(len(r) for r in rows) <= self.config.block_size:
                logits, cache = self._next_logits_cached(rows, cache, hooked)
            else:
                logits = self._next_logits_full(rows)
            logits = to_numpy(logits)  # sampling runs on the host, with NumPy's generator
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
        idx = xp.zeros((len(rows), T), dtype=np.int64)
        for i, t in enumerate(tails):
            idx[i, : len(t)] = t
        return idx, xp.array([len(t) for t in tails])

    def _next_logits_full(self, rows) -> np.ndarray:
        idx, lengths = self._window(rows)
        logits, _ = self.forward(idx)
        return logits.array[xp.arange(len(rows)), lengths - 1]

    def _next_logits_cached(self, rows, cache, hooked: bool):
        """The next-token logits of every row (all of them at most block_size long) through the
        cache: the prompts at first (right-padded), then one new token per row at that row's
        own position (its length - 1: over the padding of a shorter prompt). ``hooked``: a
        module had a forward hook when ``generate`` began, so every step runs the modules."""
        N = len(rows)
        if cache is None:
            idx, lengths = self._window(rows)
            cache = nn.StaticCache(self.config.block_size)
            logits = self.forward(idx, cache=cache)[0].array
            return logits[xp.arange(N), lengths - 1], cache
        idx = xp.array([[r[-1]] for r in rows], dtype=np.int64)
        positions = xp.array([[len(r) - 1] for r in rows], dtype=np.int64)
        if hooked:  # forward hooks see every module run: the module path
            return self.forward(idx, cache=cache, positions=positions)[0].array[:, 0], cache
        return self._decode_step(idx, positions, cache)[:, 0], cache

    # --- the one fast path: a decoding step on arrays -------------------------------------
    def _decode_step(self, idx, positions, cache: nn.Cache):
        """``forward(idx, cache=cache, positions=positions)[0].array`` for one new token per row
        ``(N, 1)`` at ``positions`` ``(N, 1)``, in eval mode,
        computed on arrays: the same kernels (each primitive's ``infer``) without tensors,
        modules or argument checks (``generate`` built and checked every input).

        The only special path in numformer's models, kept because a decoding step at batch 1
        runs about 40 primitives on one row each, where that bookkeeping made the module path
        1.4-1.5x as slow as this one (4 layers, d_model 256: 740-910 us against 500-530 us a
        step in one session's runs). Tested to give ``forward``'s bits; forward hooks disable
        it (``_next_logits_cached``)."""
        from numformer.ops.attention import ScaledDotProductAttention
        from numformer.ops.elementwise import Gelu

        N, E, H = idx.shape[0], self.config.d_model, self.config.n_head
        mask, cache_position = cached_step(positions)
        step = {"cache_position": cache_position}
        t = self.transformer
        x = t["wte"].weight.array[idx]
        if self.config.positions == "learned":
            x = x + t["wpe"].weight.array[positions]
        elif self.config.positions == "sinusoidal":
            x = x + self.pe.array[positions].astype(x.dtype, copy=False)
        scale = 1.0 / math.sqrt(E // H)
        for block in t["h"]:
            attn, mlp = block.attn, block.mlp
            q, k, v = _linear(attn.c_attn, _layer_norm(block.ln_1, x)).reshape(N, 1, 3, H, -1).transpose(2, 0, 3, 1, 4)
            if attn.rotary is not None:
                q = attn.rotary(Tensor(q), positions=positions).array
                k = attn.rotary(Tensor(k), positions=positions).array
            keys, values = cache.update(Tensor(k), Tensor(v), attn.layer_idx, step)
            out = ScaledDotProductAttention.inference(q, keys.array, values.array, bool_mask=mask, scale=scale)
            x = x + _linear(attn.c_proj, out.transpose(0, 2, 1, 3).reshape(N, 1, E))
            hidden = Gelu.inference(_linear(mlp.c_fc, _layer_norm(block.ln_2, x)), approximate=mlp.gelu.approximate)
            x = x + _linear(mlp.c_proj, hidden)
        return _linear(self.lm_head, _layer_norm(t["ln_f"], x))

    # --- saving -----------------------------------------------------------------------------
    def summary(self) -> str:
        c = self.config
        counts = {}
        for name, p in self.named_parameters():
            part = name.split(".")[1] if name.startswith("transformer.") else name.split(".")[0]
            counts[part] = counts.get(part, 0) + p.numel()
        lines = [
            f"GPT: {c.n_layer} layers, {c.n_head} heads, d_model {c.d_model}, d_ff {c.d_ff}, "
            f"context {c.block_size}, vocab {c.vocab_size}, {c.positions} positions"
            f"{', tied embeddings' if c.tie_weights else ''}"
        ]
        lines += [f"  {k:<8} {v:>12,}" for k, v in counts.items()]
        lines.append(f"  {'total':<8} {self.num_parameters():>12,}")
        return "\n".join(lines)

    def save(self, folder, tokenizer=None, extra: dict | None = None) -> Path:
        """One model folder (``numformer.serialization.folders``): ``config.json`` (the
        ``GPTConfig`` under "model", and ``extra``), ``model.safetensors`` (a tied head saved
        once), ``tokenizer.json`` when given, and the ``checksums.json`` manifest, each file
        written atomically and the manifest last."""
        state = {
            k: to_numpy(v.array)
            for k, v in self.state_dict().items()
            if not (self.config.tie_weights and k == "lm_head.weight")
        }
        files = {"tokenizer.json": tokenizer.save} if tokenizer is not None else None
        return folders.write_model_folder(folder, {"model": self.config.to_dict(), **(extra or {})}, state, files)

    @classmethod
    def load(cls, folder):
        """``(model, tokenizer or None, config.json contents)`` from a folder ``save`` wrote.

        Raises:
            FileNotFoundError: not a model folder. ValueError: a file that is damaged (its
            checksum differs), truncated, not JSON, of the wrong types, a tensor missing or of
            the wrong shape, non-finite weights, or a tokenizer whose vocabulary differs from the
            model's: each naming the file and the field.
        """
        from numformer.data.tokenizers import load_tokenizer

        folder = Path(folder)
        if not (folder / folders.CONFIG).exists() or not (folder / folders.WEIGHTS).exists():
            raise FileNotFoundError(
                f"{folder} is not a numformer model folder (expected config.json and model.safetensors)"
            )
        folders.verify(folder)
        info = folders.read_config(folder)
        config_path, weights_path = folder / folders.CONFIG, folder / folders.WEIGHTS
        tok_path = folder / "tokenizer.json"
        if "model" not in info:
            if "trained_with" in info:  # an application's model folder (numformer app NAME train)
                raise ValueError(f"{folder} holds an application's model, not a GPT: use 'numformer app NAME ...'")
            if "model_type" in info:
                kind = info["model_type"]
                raise ValueError(f"{folder} is a Hugging Face {kind!r} folder, not a numformer GPT's")
            raise ValueError(f"{config_path}: expected an object with a 'model' field (the GPTConfig)")
        config = GPTConfig.from_dict(info["model"], source=f"{config_path}: model")
        folders.check_vouched(folder)  # before allocating: an edited block_size could be huge
        model = cls(config)
        state = folders.read_weights(folder)
        if model.config.tie_weights and "transformer.wte.weight" in state:
            state["lm_head.weight"] = state["transformer.wte.weight"]
        folders.load_state(model, state, weights_path)
        bad = [name for name, p in model.named_parameters() if not xp.isfinite(p.array).all()]
        if bad:
            raise ValueError(f"{weights_path} holds non-finite weights ({', '.join(bad[:3])}): not a usable model")
        tokenizer = None
        if tok_path.exists():
            try:
                tokenizer = load_tokenizer(tok_path)
            except Exception as err:  # noqa: BLE001 - a file the tokenizers library cannot read either
                raise ValueError(f"{tok_path} is not a numformer tokenizer ({type(err).__name__}: {err})") from None
            if tokenizer.vocab_size != model.config.vocab_size:
                raise ValueError(
                    f"{tok_path} has a vocabulary of {tokenizer.vocab_size} tokens, but {config_path.name} says "
                    f"vocab_size {model.config.vocab_size}: they come from different runs"
                )
        return model, tokenizer, info


def _linear(layer: nn.Linear, x):
    """``layer``'s kernel on an array (``GPT._decode_step``)."""
    from numformer.ops.linalg import Linear

    params = (layer.weight.array,) if layer.bias is None else (layer.weight.array, layer.bias.array)
    return Linear.inference(x, *params)


def _layer_norm(layer: nn.LayerNorm, x):
    """``layer``'s kernel on an array (``GPT._decode_step``)."""
    from numformer.ops.normalization import LayerNorm

    params = [p.array for p in (layer.weight, layer.bias) if p is not None]
    return LayerNorm.inference(
        x, *params, eps=layer.eps, has_weight=layer.weight is not None, has_bias=layer.bias is not None
    )
