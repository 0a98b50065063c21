"""Llama: a decoder-only Transformer language model (Touvron et al., 2023), and its close
relatives Qwen2 and Mistral, read from Hugging Face folders (seed section 8: generation).

Reads top to bottom like nanoGPT's ``model.py``: config, rotary embedding, attention (grouped
queries), MLP (SwiGLU), decoder layer, model, causal-LM head. What sets Llama apart from GPT-2:

- RMSNorm before each sublayer and at the end (no mean subtracted, no bias);
- rotary position embedding on queries and keys (``rope_theta``; ``rope_scaling`` "linear",
  "dynamic" and "llama3"), no position table;
- grouped-query attention: ``num_key_value_heads`` key/value heads, each shared by a group of
  query heads (Ainslie et al., 2023), so the cache is that many times smaller;
- a gated feed-forward layer, ``down_proj(silu(gate_proj(x)) * up_proj(x))`` (Shazeer, 2020);
- optionally the output layer tied to the token embedding (``tie_word_embeddings``).

Qwen2 adds biases to the query, key and value projections; Mistral (and Qwen2 with
``use_sliding_window``) lets each token see only the last ``sliding_window`` positions.
Module and parameter names are Hugging Face's (``model.layers.0.self_attn.q_proj.weight``), so a
folder loads by name and ``state_dict()`` goes back to ``transformers`` unchanged. Each module has
one ``forward``; decoding passes an ``nn.Cache`` to it (``past_key_values``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from numformer import nn
from numformer.autograd import is_grad_enabled
from numformer.backend import xp
from numformer.models.causal_lm import (
    CausalLMOutputWithPast,
    PreTrainedCausalLM,
    attention_mask_for,
    causal_lm_loss,
    check_input_ids,
)
from numformer.nn import functional as F
from numformer.serialization.configs import Config
from numformer.tensor import array_of

ROPE_TYPES = ("default", "linear", "dynamic", "llama3")
ACTIVATIONS = ("silu", "swish")


@dataclass
class RopeParameters(Config):
    """``rope_parameters`` (transformers 5) or ``rope_scaling`` (earlier) of a ``config.json``."""

    unknown_keys = "ignore"
    rope_type: str | None = None
    type: str | None = None  # the older name of rope_type
    rope_theta: float | None = None
    factor: float | None = None
    low_freq_factor: float | None = None
    high_freq_factor: float | None = None
    original_max_position_embeddings: int | None = None
    partial_rotary_factor: float | None = None


@dataclass
class LlamaConfig(Config):
    """The fields of a Llama-family ``config.json`` that shape the model (Hugging Face's
    ``LlamaConfig``; the file's other keys are ignored, as ``transformers`` does).

    Touvron et al., 2023, "LLaMA"; rotary positions (Su et al., 2021), RMSNorm, SwiGLU MLP.

    Args:
        model_type: ``"llama"``.
        vocab_size: the number of token ids.
        hidden_size: E, the width.
        intermediate_size: the gated MLP's width.
        num_hidden_layers: the number of decoder layers.
        num_attention_heads: the query heads per layer.
        num_key_value_heads: the key/value heads (grouped-query attention; None: one per query head).
        head_dim: the head width (None: hidden_size / num_attention_heads).
        hidden_act: ``"silu"`` (``"swish"``).
        max_position_embeddings: the context the model was trained for.
        rms_norm_eps: RMSNorm's epsilon.
        rope_theta: the rotary embedding's base.
        rope_scaling: the older name of ``rope_parameters``.
        rope_parameters: rotary scaling (``rope_type`` default, linear, dynamic or llama3), or None.
        attention_bias: biases on the q, k, v and o projections.
        mlp_bias: biases on the MLP's projections.
        tie_word_embeddings: the output layer shares the token embedding.
        sliding_window: the attention window of sliding layers, or None.
        use_sliding_window: Qwen2's switch for ``sliding_window``.
        max_window_layers: Qwen2: layers from this index on slide.
        layer_types: per layer ``"full_attention"`` or ``"sliding_attention"``, or None.
        attention_dropout: dropout on the attention weights (training only).
        initializer_range: the standard deviation of the weights' normal initialisation.
        use_cache: read for compatibility (numformer's ``generate`` always caches).
        bos_token_id: the beginning-of-sequence token, or None.
        eos_token_id: the end-of-sequence token(s) ``generate`` stops at, or None.
        pad_token_id: the padding token, or None.
        dtype: the stored weights' dtype as the file names it (numformer computes in float32).
        torch_dtype: the older name of ``dtype``.
    """

    unknown_keys = "ignore"
    model_type: str = "llama"
    vocab_size: int = 32000
    hidden_size: int = 4096
    intermediate_size: int = 11008
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: int | None = None  # None: one per query head (no grouping)
    head_dim: int | None = None  # None: hidden_size // num_attention_heads
    hidden_act: str = "silu"
    max_position_embeddings: int = 2048
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    rope_scaling: RopeParameters | None = None
    rope_parameters: RopeParameters | None = None
    attention_bias: bool = False  # biases on q, k, v and o (Qwen2: on q, k, v only)
    mlp_bias: bool = False
    tie_word_embeddings: bool = False
    sliding_window: int | None = None
    use_sliding_window: bool = False  # Qwen2's switch for its sliding_window
    max_window_layers: int | None = None  # Qwen2: layers from this one on slide
    layer_types: list | None = None  # per layer "full_attention" or "sliding_attention"
    initializer_range: float = 0.02
    attention_dropout: float = 0.0
    use_cache: bool = True
    bos_token_id: int | None = None
    eos_token_id: int | list | None = None
    pad_token_id: int | None = None
    dtype: str | None = None
    torch_dtype: str | None = None  # the older name of dtype

    def __post_init__(self):
        super().__post_init__()  # every field's type (Config)
        for name in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        self.num_key_value_heads = self.num_key_value_heads or self.num_attention_heads
        self.head_dim = self.head_dim or self.hidden_size // self.num_attention_heads
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_attention_heads ({self.num_attention_heads}) must be a multiple of "
                f"num_key_value_heads ({self.num_key_value_heads})"
            )
        if self.head_dim < 2 or self.head_dim % 2:
            raise ValueError(f"head_dim must be even for rotary embedding, got {self.head_dim}")
        if self.hidden_act not in ACTIVATIONS:
            raise ValueError(f"hidden_act must be one of {ACTIVATIONS} (the SwiGLU MLP), got {self.hidden_act!r}")
        if not 0 < self.rms_norm_eps < 1:
            raise ValueError(f"rms_norm_eps must be in (0, 1), got {self.rms_norm_eps}")
        if self.sliding_window is not None and self.sliding_window < 1:
            raise ValueError(f"sliding_window must be >= 1 or null, got {self.sliding_window}")
        self.rope = self._resolve_rope()
        self.sliding_windows = self._resolve_windows()

    def _resolve_rope(self) -> RopeParameters:
        """One ``RopeParameters`` with ``rope_type`` and ``rope_theta`` set, from either spelling."""
        given = self.rope_parameters or self.rope_scaling or RopeParameters()
        rope_type = given.rope_type or given.type or "default"
        if rope_type not in ROPE_TYPES:
            raise ValueError(f"rope type {rope_type!r} is not supported; numformer reads {', '.join(ROPE_TYPES)}")
        if given.partial_rotary_factor not in (None, 1.0):
            raise ValueError(f"partial_rotary_factor {given.partial_rotary_factor} is not supported (only 1.0)")
        needed = {"linear": ("factor",), "dynamic": ("factor",)}.get(rope_type, ())
        if rope_type == "llama3":
            needed = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")
        absent = [name for name in needed if getattr(given, name) is None]
        if absent:
            raise ValueError(f"rope type {rope_type!r} needs {', '.join(absent)}")
        theta = (
            given.rope_theta if self.rope_parameters is not None and given.rope_theta is not None else self.rope_theta
        )
        for name, value in (("rope_theta", theta), ("factor", given.factor)):
            if value is not None and not (math.isfinite(value) and value > 0):  # else NaN angles
                raise ValueError(f"{name} must be a finite number > 0, got {float(value)}")
        return RopeParameters(**{**given.to_dict(), "rope_type": rope_type, "rope_theta": float(theta)})

    def _resolve_windows(self) -> list:
        """The sliding window of each layer (None: full attention), as Hugging Face decides it."""
        n = self.num_hidden_layers
        if self.layer_types is not None:
            if len(self.layer_types) != n or not set(self.layer_types) <= {"full_attention", "sliding_attention"}:
                raise ValueError(
                    f"layer_types must list 'full_attention' or 'sliding_attention' for each of {n} layers"
                )
            return [self.sliding_window if kind == "sliding_attention" else None for kind in self.layer_types]
        if self.model_type == "qwen2":
            if not self.use_sliding_window or self.sliding_window is None:
                return [None] * n
            first = n if self.max_window_layers is None else self.max_window_layers
            return [self.sliding_window if i >= first else None for i in range(n)]
        return [self.sliding_window] * n  # Mistral: every layer (None for Llama)

    @property
    def qkv_bias(self) -> bool:
        return self.attention_bias or self.model_type == "qwen2"

    @property
    def o_bias(self) -> bool:
        return self.attention_bias and self.model_type != "qwen2"


@dataclass
class Qwen2Config(LlamaConfig):
    """Qwen2's ``config.json`` (Hugging Face's ``Qwen2Config`` defaults): biases on q, k, v.

    Args:
        model_type: ``"qwen2"``.
        vocab_size: the number of token ids.
        hidden_size: E, the width.
        intermediate_size: the gated MLP's width.
        num_hidden_layers: the number of decoder layers.
        num_attention_heads: the query heads per layer.
        num_key_value_heads: the key/value heads (grouped-query attention; None: one per query head).
        head_dim: the head width (None: hidden_size / num_attention_heads).
        hidden_act: ``"silu"`` (``"swish"``).
        max_position_embeddings: the context the model was trained for.
        rms_norm_eps: RMSNorm's epsilon.
        rope_theta: the rotary embedding's base.
        rope_scaling: the older name of ``rope_parameters``.
        rope_parameters: rotary scaling (``rope_type`` default, linear, dynamic or llama3), or None.
        attention_bias: biases on the q, k, v and o projections.
        mlp_bias: biases on the MLP's projections.
        tie_word_embeddings: the output layer shares the token embedding.
        sliding_window: the attention window of sliding layers, or None.
        use_sliding_window: Qwen2's switch for ``sliding_window``.
        max_window_layers: Qwen2: layers from this index on slide.
        layer_types: per layer ``"full_attention"`` or ``"sliding_attention"``, or None.
        attention_dropout: dropout on the attention weights (training only).
        initializer_range: the standard deviation of the weights' normal initialisation.
        use_cache: read for compatibility (numformer's ``generate`` always caches).
        bos_token_id: the beginning-of-sequence token, or None.
        eos_token_id: the end-of-sequence token(s) ``generate`` stops at, or None.
        pad_token_id: the padding token, or None.
        dtype: the stored weights' dtype as the file names it (numformer computes in float32).
        torch_dtype: the older name of ``dtype``.
    """

    model_type: str = "qwen2"
    vocab_size: int = 151936
    intermediate_size: int = 22016
    max_position_embeddings: int = 32768
    sliding_window: int | None = 4096  # used only with use_sliding_window
    max_window_layers: int | None = 28


@dataclass
class MistralConfig(LlamaConfig):
    """Mistral's ``config.json`` (Hugging Face's ``MistralConfig`` defaults): a sliding window.

    Args:
        model_type: ``"mistral"``.
        vocab_size: the number of token ids.
        hidden_size: E, the width.
        intermediate_size: the gated MLP's width.
        num_hidden_layers: the number of decoder layers.
        num_attention_heads: the query heads per layer.
        num_key_value_heads: the key/value heads (grouped-query attention; None: one per query head).
        head_dim: the head width (None: hidden_size / num_attention_heads).
        hidden_act: ``"silu"`` (``"swish"``).
        max_position_embeddings: the context the model was trained for.
        rms_norm_eps: RMSNorm's epsilon.
        rope_theta: the rotary embedding's base.
        rope_scaling: the older name of ``rope_parameters``.
        rope_parameters: rotary scaling (``rope_type`` default, linear, dynamic or llama3), or None.
        attention_bias: biases on the q, k, v and o projections.
        mlp_bias: biases on the MLP's projections.
        tie_word_embeddings: the output layer shares the token embedding.
        sliding_window: the attention window of sliding layers, or None.
        use_sliding_window: Qwen2's switch for ``sliding_window``.
        max_window_layers: Qwen2: layers from this index on slide.
        layer_types: per layer ``"full_attention"`` or ``"sliding_attention"``, or None.
        attention_dropout: dropout on the attention weights (training only).
        initializer_range: the standard deviation of the weights' normal initialisation.
        use_cache: read for compatibility (numformer's ``generate`` always caches).
        bos_token_id: the beginning-of-sequence token, or None.
        eos_token_id: the end-of-sequence token(s) ``generate`` stops at, or None.
        pad_token_id: the padding token, or None.
        dtype: the stored weights' dtype as the file names it (numformer computes in float32).
        torch_dtype: the older name of ``dtype``.
    """

    model_type: str = "mistral"
    intermediate_size: int = 14336
    num_key_value_heads: int | None = 8
    max_position_embeddings: int = 4096 * 32
    sliding_window: int | None = 4096


# --- rotary position embedding ---------------------------------------------------------------


def rotary_inv_freq(config: LlamaConfig, seq_len: int | None = None) -> np.ndarray:
    """The rotation frequencies theta^(-2i/D) of the head's feature pairs, float32 ``(D/2,)``,
    as Hugging Face computes them (in float32, so pretrained models see the angles they were
    trained with), rescaled by ``rope_scaling``:

    - "linear" (Chen et al., 2023, position interpolation): frequencies / factor;
    - "dynamic" (NTK-aware): for ``seq_len`` beyond max_position_embeddings L, the base becomes
      theta (factor seq_len / L - (factor - 1))^(D / (D - 2)), seq_len the largest position of
      the forward + 1 (Hugging Face keeps the base it last grew to across calls, numformer
      derives it per call: the same for a forward without a cache and for growing lengths);
    - "llama3" (Llama 3.1): wavelengths 2 pi / f longer than old_context / low_freq_factor are
      divided by factor, shorter than old_context / high_freq_factor kept, and those between
      interpolated with s = (old_context / wavelength - low) / (high - low):
      f' = (1 - s) f / factor + s f.
    """
    rope, D = config.rope, config.head_dim
    exponents = np.arange(0, D, 2, dtype=np.int64).astype(np.float32) / np.float32(D)
    base = rope.rope_theta
    if rope.rope_type == "dynamic" and seq_len is not None and seq_len > config.max_position_embeddings:
        L, factor = config.max_position_embeddings, rope.factor
        base = base * ((factor * seq_len / L) - (factor - 1)) ** (D / (D - 2))
    inv_freq = (1.0 / (np.float32(base) ** exponents)).astype(np.float32)
    if rope.rope_type == "linear":
        inv_freq = (inv_freq / np.float32(rope.factor)).astype(np.float32)
    elif rope.rope_type == "llama3":
        factor, low, high = rope.factor, rope.low_freq_factor, rope.high_freq_factor
        old_context = rope.original_max_position_embeddings
        wavelength = np.float32(2 * math.pi) / inv_freq
        scaled = np.where(wavelength > old_context / low, inv_freq / np.float32(factor), inv_freq)
        smooth = (np.float32(old_context) / wavelength - np.float32(low)) / np.float32(high - low)
        smoothed = (1 - smooth) * scaled / np.float32(factor) + smooth * scaled
        medium = ~(wavelength < old_context / high) & ~(wavelength > old_context / low)
        inv_freq = np.where(medium, smoothed, scaled).astype(np.float32)
    return inv_freq


class LlamaRotaryEmbedding(nn.Module):
    """The cos and sin of every (position, feature pair) angle, computed once per forward for
    all layers (Hugging Face's ``LlamaRotaryEmbedding``); the layers rotate their queries and
    keys with ``F.apply_rotary_emb``. No parameters: the frequencies derive from the config."""

    def __init__(self, config: LlamaConfig):
        super().__init__()
        self.config = config
        self.inv_freq = rotary_inv_freq(config)

    def forward(self, position_ids):
        """Angles p * f in float32 (Hugging Face's rounding), then their cos and sin.

        Shape: position_ids ``(N, T)`` integers -> cos, sin ``(N, 1, T, D)`` arrays (one
        table per row, broadcast over heads), D = head_dim; the angles of the half repeated."""
        positions = array_of(position_ids)
        inv_freq = self.inv_freq
        if self.config.rope.rope_type == "dynamic":
            inv_freq = rotary_inv_freq(self.config, int(positions.max()) + 1)
        angles = positions[..., None].astype(np.float32) * xp.asarray(inv_freq)
        angles = xp.concatenate([angles, angles], axis=-1)[:, None]
        return xp.cos(angles), xp.sin(angles)


# --- attention, MLP, decoder layer -----------------------------------------------------------


class LlamaAttention(nn.Module):
    """Multi-head attention with grouped key/value heads and rotary positions.

    ``num_attention_heads`` H query heads, ``num_key_value_heads`` K key/value heads: query
    head h reads key/value head h // (H / K) (Hugging Face's ``repeat_kv`` order). The queries
    are viewed as ``(N, K, H/K, T, D)`` against keys and values ``(N, K, 1, S, D)``, so one
    attention call broadcasts each key/value head over its group with no copy.
    ``layer_idx`` names this layer's slot in the cache; ``sliding_window`` limits what a token
    sees to the last that many positions (None: everything before it).
    """

    def __init__(self, config: LlamaConfig, layer_idx: int):
        super().__init__()
        E, D = config.hidden_size, config.head_dim
        self.num_heads, self.num_key_value_heads, self.head_dim = (
            config.num_attention_heads,
            config.num_key_value_heads,
            D,
        )
        self.layer_idx = layer_idx
        self.sliding_window = config.sliding_windows[layer_idx]
        self.attention_dropout = config.attention_dropout
        self.q_proj = nn.Linear(E, self.num_heads * D, bias=config.qkv_bias)
        self.k_proj = nn.Linear(E, self.num_key_value_heads * D, bias=config.qkv_bias)
        self.v_proj = nn.Linear(E, self.num_key_value_heads * D, bias=config.qkv_bias)
        self.o_proj = nn.Linear(self.num_heads * D, E, bias=config.o_bias)

    def forward(self, x, cos, sin, mask, past_key_values: nn.Cache | None = None):
        """Each token attends to itself and the tokens before it (and those cached) that the
        mask lets it see.

        Shape:
            x ``(N, T, E)``; cos, sin ``(N, 1, T, D)``; mask ``"causal"``, None (see all) or
            boolean ``(N or 1, 1, T, S)`` (``causal_lm.attention_mask_for``) -> ``(N, T, E)``.
        """
        N, T, _ = x.shape
        H, K, D = self.num_heads, self.num_key_value_heads, self.head_dim
        q = F.apply_rotary_emb(self.q_proj(x).view(N, T, H, D).transpose(1, 2), cos, sin)
        k = F.apply_rotary_emb(self.k_proj(x).view(N, T, K, D).transpose(1, 2), cos, sin)
        v = self.v_proj(x).view(N, T, K, D).transpose(1, 2)
        if past_key_values is not None:
            k, v = past_key_values.update(k, v, self.layer_idx)
        # groups of H / K query heads share one key/value head: (N, K, H/K, T, D) vs (N, K, 1, S, D)
        q, k, v = q.reshape(N, K, H // K, T, D), k.unsqueeze(2), v.unsqueeze(2)
        out = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=None if mask is None or isinstance(mask, str) else mask[:, :, None],
            is_causal=isinstance(mask, str),
            dropout_p=self.attention_dropout if self.training else 0.0,
        )
        return self.o_proj(out.reshape(N, H, T, D).transpose(1, 2).reshape(N, T, H * D))


class LlamaMLP(nn.Module):
    """SwiGLU feed-forward: ``down_proj(silu(gate_proj(x)) * up_proj(x))``."""

    def __init__(self, config: LlamaConfig):
        super().__init__()
        E, inner = config.hidden_size, config.intermediate_size
        self.gate_proj = nn.Linear(E, inner, bias=config.mlp_bias)
        self.up_proj = nn.Linear(E, inner, bias=config.mlp_bias)
        self.down_proj = nn.Linear(inner, E, bias=config.mlp_bias)

    def forward(self, x):
        """Shape: ``(N, T, E)`` -> ``(N, T, E)`` through ``(N, T, intermediate_size)``."""
        return self.down_proj(F.swiglu(self.gate_proj(x), self.up_proj(x)))


class LlamaDecoderLayer(nn.Module):
    """Pre-norm: x + attn(norm(x)), then x + mlp(norm(x)), both norms RMSNorm."""

    def __init__(self, config: LlamaConfig, layer_idx: int):
        super().__init__()
        self.self_attn = LlamaAttention(config, layer_idx)
        self.mlp = LlamaMLP(config)
        self.input_layernorm = nn.RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.post_attention_layernorm = nn.RMSNorm(config.hidden_size, eps=config.rms_norm_eps)

    def forward(self, x, cos, sin, mask, past_key_values: nn.Cache | None = None):
        """Shape: x ``(N, T, E)`` -> ``(N, T, E)`` (cos, sin and mask as ``LlamaAttention``)."""
        h = x + self.self_attn(self.input_layernorm(x), cos, sin, mask, past_key_values)
        return h + self.mlp(self.post_attention_layernorm(h))


# --- the model and its language-model head ---------------------------------------------------


class LlamaModel(nn.Module):
    """Token embedding, ``num_hidden_layers`` decoder layers, a final RMSNorm.

    Args:
        config: the sizes (``LlamaConfig`` or a subclass).
    """

    def __init__(self, config: LlamaConfig):
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(LlamaDecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = nn.RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary_emb = LlamaRotaryEmbedding(config)

    def forward(self, input_ids, attention_mask=None, position_ids=None, past_key_values: nn.Cache | None = None):
        """The final hidden states of every position (Hugging Face's ``LlamaModel.forward``).

        Shape:
            input_ids ``(N, T)``; attention_mask ``(N, S)``, S = cached + T, 1 for real tokens and
            0 for padding (None: no padding); position_ids ``(N, T)`` (default: cached + 0 ..
            T - 1, as Hugging Face's; left-padded rows pass theirs, as ``generate`` does) ->
            ``(N, T, E)``.
        """
        N, T = input_ids.shape
        past = past_key_values.get_seq_length() if past_key_values is not None else 0
        if position_ids is None:
            position_ids = xp.broadcast_to(past + xp.arange(T), (N, T))
        cos, sin = self.rotary_emb(position_ids)
        masks = {w: attention_mask_for(attention_mask, N, T, past, w) for w in set(self.config.sliding_windows)}
        x = self.embed_tokens(input_ids)
        for layer in self.layers:
            x = layer(x, cos, sin, masks[layer.self_attn.sliding_window], past_key_values)
        return self.norm(x)


class LlamaForCausalLM(PreTrainedCausalLM):
    """A Llama-family language model: ``LlamaModel`` and an output layer ``lm_head`` (tied to
    the embedding when ``tie_word_embeddings``). ``from_pretrained(folder)`` reads a Hugging Face
    folder; ``generate`` continues prompts (``causal_lm.PreTrainedCausalLM``).

    Args:
        config: the sizes (``LlamaConfig`` or a subclass).
    """

    config_class = LlamaConfig
    model_types = ("llama",)

    def __init__(self, config: LlamaConfig):
        super().__init__()
        self.config = config
        self.model = LlamaModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.apply(self._init_weights)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    def _init_weights(self, module) -> None:
        # Hugging Face's LlamaPreTrainedModel: N(0, initializer_range) weights, zero biases.
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=self.config.initializer_range)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(
        self,
        input_ids,
        attention_mask=None,
        position_ids=None,
        past_key_values: nn.Cache | None = None,
        labels=None,
        use_cache: bool | None = None,
        logits_to_keep: int = 0,
    ) -> CausalLMOutputWithPast:
        """Next-token logits, and with ``labels`` the mean cross-entropy (Hugging Face's
        ``LlamaForCausalLM.forward``).

        With ``past_key_values`` (an ``nn.Cache``) the new tokens' keys and values are stored
        and the tokens attend to everything cached: decoding feeds the new tokens only. With
        ``use_cache`` (default: the config's, when no gradient is recorded) and no cache, a
        ``nn.DynamicCache`` is made and returned.

        Shape:
            input_ids ``(N, T)`` integers (or ``(T,)``); attention_mask ``(N, S)``, S = cached + T,
            1 for real tokens, 0 for (left) padding; position_ids ``(N, T)``; labels ``(N, T)``
            integers, -100 where no loss is wanted (shifted inside: position t predicts label
            t + 1). Returns ``CausalLMOutputWithPast(logits (N, T', V), past_key_values, loss ()
            or None)``, T' = ``logits_to_keep`` (the last positions) or T when 0.

        Raises:
            TypeError: ids that are not integers. ValueError: ids outside the vocabulary, an
            attention_mask or position_ids of the wrong shape.
        """
        c = self.config
        ids = check_input_ids(input_ids, c.vocab_size, type(self).__name__)
        N, T = ids.shape
        if position_ids is not None:
            position_ids = array_of(position_ids)
            if position_ids.shape != (N, T) and position_ids.shape != (1, T):
                raise ValueError(
                    f"{type(self).__name__}: position_ids must have shape {(N, T)}, got {position_ids.shape}"
                )
            position_ids = xp.broadcast_to(position_ids, (N, T))
        if use_cache is None:
            use_cache = c.use_cache and not (is_grad_enabled() and self.training)
        if past_key_values is None and use_cache:
            past_key_values = nn.DynamicCache()
        hidden = self.model(ids, attention_mask, position_ids, past_key_values)
        if logits_to_keep:
            hidden = hidden[:, -logits_to_keep:]
        logits = self.lm_head(hidden)
        loss = None
        if labels is not None:
            loss = causal_lm_loss(logits, labels, T)
        return CausalLMOutputWithPast(logits=logits, past_key_values=past_key_values, loss=loss)

    # --- reading Hugging Face folders ---------------------------------------------------------
    @classmethod
    def checkpoint_shapes(cls, config: LlamaConfig) -> dict:
        """Every tensor of a Hugging Face Llama-family folder and its shape, from the config."""
        c = config
        E, D, H, K, inner = c.hidden_size, c.head_dim, c.num_attention_heads, c.num_key_value_heads, c.intermediate_size
        shapes = {"model.embed_tokens.weight": (c.vocab_size, E)}
        for i in range(c.num_hidden_layers):
            p = f"model.layers.{i}."
            for name, rows in (("q_proj", H * D), ("k_proj", K * D), ("v_proj", K * D)):
                shapes[f"{p}self_attn.{name}.weight"] = (rows, E)
                if c.qkv_bias:
                    shapes[f"{p}self_attn.{name}.bias"] = (rows,)
            shapes[f"{p}self_attn.o_proj.weight"] = (E, H * D)
            if c.o_bias:
                shapes[f"{p}self_attn.o_proj.bias"] = (E,)
            for name, shape in (("gate_proj", (inner, E)), ("up_proj", (inner, E)), ("down_proj", (E, inner))):
                shapes[f"{p}mlp.{name}.weight"] = shape
                if c.mlp_bias:
                    shapes[f"{p}mlp.{name}.bias"] = shape[:1]
            shapes[f"{p}input_layernorm.weight"] = (E,)
            shapes[f"{p}post_attention_layernorm.weight"] = (E,)
        shapes["model.norm.weight"] = (E,)
        shapes["lm_head.weight"] = (c.vocab_size, E)
        return shapes

    @classmethod
    def checkpoint_name(cls, name: str, config: LlamaConfig) -> str | None:
        """Older folders keep each layer's rotary frequencies (``rotary_emb.inv_freq``): derived,
        skipped."""
        return None if name.endswith("rotary_emb.inv_freq") else name

    @classmethod
    def optional_tensors(cls, config: LlamaConfig) -> set:
        return {"lm_head.weight"} if config.tie_word_embeddings else set()


class Qwen2ForCausalLM(LlamaForCausalLM):
    """Qwen2 (and Qwen2.5): Llama's model with biases on the query, key and value projections.

    Args:
        config: the sizes (``Qwen2Config``).
    """

    config_class = Qwen2Config
    model_types = ("qwen2",)


class MistralForCausalLM(LlamaForCausalLM):
    """Mistral: Llama's model with a sliding attention window (``sliding_window``; null in the
    later versions, which are then exactly Llama).

    Args:
        config: the sizes (``MistralConfig``).
    """

    config_class = MistralConfig
    model_types = ("mistral",)
