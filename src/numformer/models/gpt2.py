"""GPT-2 (Radford et al., 2019) read from Hugging Face folders (seed section 8: generation).

Reads top to bottom like nanoGPT's ``model.py``: config, attention, MLP, block, model,
language-model head. Pre-LN blocks, learned position embeddings, GELU (tanh form), the output
layer tied to the token embedding. Module and parameter names are Hugging Face's
(``transformer.h.0.attn.c_attn.weight``), so a folder loads by name.

Why not numformer's own ``models.gpt.GPT``: it has nanoGPT's names, which GPT-2's are, but it
takes no attention mask (its generate right-pads and tracks lengths itself) and answers
``(logits, loss)`` rather than Hugging Face's output; this file is the Hugging Face model, with
its ``forward(input_ids, attention_mask, past_key_values)`` and left-padded ``generate``.

Hugging Face stores GPT-2's projections as ``Conv1D`` weights ``(in, out)``, the transpose of
``nn.Linear``'s ``(out, in)``: they load as transposed views of the file (no copy), and
``x @ W^T`` then multiplies by the stored ``(in, out)`` matrix directly.
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
from numformer.nn.layers import linear_then
from numformer.serialization.configs import Config
from numformer.tensor import array_of

ACTIVATIONS = {"gelu_new": "tanh", "gelu_pytorch_tanh": "tanh", "gelu": "none", "relu": None}
CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


@dataclass
class GPT2Config(Config):
    """The fields of GPT-2's ``config.json`` that shape the model (Hugging Face's names and
    defaults; the file's other keys are ignored).

    Radford et al., 2019, "Language Models are Unsupervised Multitask Learners".

    Args:
        model_type: ``"gpt2"``.
        vocab_size: the number of token ids.
        n_positions: the longest context (the learned position table's rows).
        n_embd: E, the width.
        n_layer: the number of blocks.
        n_head: the heads per block.
        n_inner: the MLP's width (None: 4 * n_embd).
        activation_function: ``"gelu_new"`` (tanh form), ``"gelu_pytorch_tanh"`` or ``"gelu"``.
        layer_norm_epsilon: LayerNorm's epsilon.
        resid_pdrop: dropout on the residual branches (training only).
        embd_pdrop: dropout on the embeddings (training only).
        attn_pdrop: dropout on the attention weights (training only).
        scale_attn_weights: divide the scores by sqrt(head width).
        scale_attn_by_inverse_layer_idx: also divide by the layer's index + 1.
        add_cross_attention: must be False (no encoder-decoder GPT-2).
        tie_word_embeddings: the output layer shares the token embedding.
        initializer_range: the standard deviation of the weights' normal initialisation.
        use_cache: read for compatibility (numformer's ``generate`` always caches).
        bos_token_id: the beginning-of-sequence token, or None.
        eos_token_id: the end-of-sequence token(s) ``generate`` stops at, or None.
        pad_token_id: the padding token, or None.
        dtype: the stored weights' dtype as the file names it (numformer computes in float32).
        torch_dtype: the older name of ``dtype``.
    """

    unknown_keys = "ignore"
    model_type: str = "gpt2"
    vocab_size: int = 50257
    n_positions: int = 1024
    n_embd: int = 768
    n_layer: int = 12
    n_head: int = 12
    n_inner: int | None = None  # None: 4 * n_embd
    activation_function: str = "gelu_new"
    layer_norm_epsilon: float = 1e-5
    resid_pdrop: float = 0.1
    embd_pdrop: float = 0.1
    attn_pdrop: float = 0.1
    initializer_range: float = 0.02
    scale_attn_weights: bool = True
    scale_attn_by_inverse_layer_idx: bool = False
    add_cross_attention: bool = False
    tie_word_embeddings: bool = True
    use_cache: bool = True
    bos_token_id: int | None = 50256
    eos_token_id: int | list | None = 50256
    pad_token_id: int | None = None
    dtype: str | None = None
    torch_dtype: str | None = None

    def __post_init__(self):
        super().__post_init__()  # every field's type (Config)
        for name in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        self.n_inner = self.n_inner or 4 * self.n_embd
        if self.activation_function not in ACTIVATIONS:
            raise ValueError(
                f"activation_function must be one of {sorted(ACTIVATIONS)}, got {self.activation_function!r}"
            )
        if self.add_cross_attention:
            raise ValueError("add_cross_attention (GPT-2 as a seq2seq decoder) is not supported")
        for name in ("resid_pdrop", "embd_pdrop", "attn_pdrop"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")


class GPT2Attention(nn.Module):
    """Multi-head causal self-attention with one fused QKV projection (``c_attn``).

    Scores are scaled by 1/sqrt(head dim) (``scale_attn_weights``), and further by
    1/(layer_idx + 1) with ``scale_attn_by_inverse_layer_idx``."""

    def __init__(self, config: GPT2Config, layer_idx: int):
        super().__init__()
        E = config.n_embd
        self.n_head, self.head_dim, self.layer_idx = config.n_head, E // config.n_head, layer_idx
        self.scale = 1.0 / math.sqrt(self.head_dim) if config.scale_attn_weights else 1.0
        if config.scale_attn_by_inverse_layer_idx:
            self.scale /= layer_idx + 1
        self.attn_dropout = config.attn_pdrop
        self.c_attn = nn.Linear(E, 3 * E)
        self.c_proj = nn.Linear(E, E)
        self.resid_dropout = nn.Dropout(config.resid_pdrop)

    def forward(self, x, mask, past_key_values: nn.Cache | None = None):
        """Each token attends to itself and the tokens before it (and those cached) that the
        mask lets it see.

        Shape:
            x ``(N, T, E)``; mask ``"causal"``, None (see all) or boolean ``(N or 1, 1, T, S)``
            (``causal_lm.attention_mask_for``) -> ``(N, T, E)``.
        """
        N, T, E = x.shape
        H, D = self.n_head, self.head_dim
        qkv = self.c_attn(x).view(N, T, 3, H, D).permute(2, 0, 3, 1, 4)  # (3, N, H, T, D)
        q, k, v = qkv[0], qkv[1], qkv[2]
        if past_key_values is not None:
            k, v = past_key_values.update(k, v, self.layer_idx)
        out = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=None if mask is None or isinstance(mask, str) else mask,
            is_causal=isinstance(mask, str),
            scale=self.scale,
            dropout_p=self.attn_dropout if self.training else 0.0,
        )
        return self.resid_dropout(self.c_proj(out.transpose(1, 2).reshape(N, T, E)))


class GPT2MLP(nn.Module):
    def __init__(self, config: GPT2Config):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, config.n_inner)
        approximate = ACTIVATIONS[config.activation_function]
        self.act = nn.ReLU() if approximate is None else nn.GELU(approximate=approximate)
        self.c_proj = nn.Linear(config.n_inner, config.n_embd)
        self.dropout = nn.Dropout(config.resid_pdrop)

    def forward(self, x):
        """Shape: ``(N, T, E)`` -> ``(N, T, E)`` through ``(N, T, n_inner)``."""
        return self.dropout(self.c_proj(linear_then(self.c_fc, self.act, x)))


class GPT2Block(nn.Module):
    """Pre-LN: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(self, config: GPT2Config, layer_idx: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.attn = GPT2Attention(config, layer_idx)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.mlp = GPT2MLP(config)

    def forward(self, x, mask, past_key_values: nn.Cache | None = None):
        """Shape: x ``(N, T, E)`` -> ``(N, T, E)`` (mask as ``GPT2Attention``)."""
        x = x + self.attn(self.ln_1(x), mask, past_key_values)
        return x + self.mlp(self.ln_2(x))


class GPT2Model(nn.Module):
    """Token and position embeddings, ``n_layer`` blocks, a final LayerNorm.

    Args:
        config: the sizes (``GPT2Config``).
    """

    def __init__(self, config: GPT2Config):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.n_positions, config.n_embd)
        self.drop = nn.Dropout(config.embd_pdrop)
        self.h = nn.ModuleList(GPT2Block(config, i) for i in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)

    def forward(self, input_ids, attention_mask=None, position_ids=None, past_key_values: nn.Cache | None = None):
        """The final hidden states of every position (Hugging Face's ``GPT2Model.forward``).

        Shape:
            input_ids ``(N, T)``; attention_mask ``(N, S)``, S = cached + T, 1 for real tokens;
            position_ids ``(N, T)`` (default: cached + 0 .. T - 1) -> ``(N, T, E)``.

        Raises:
            ValueError: positions at or beyond ``n_positions``."""
        N, T = input_ids.shape
        past = past_key_values.get_seq_length() if past_key_values is not None else 0
        if position_ids is None:
            position_ids = xp.broadcast_to(past + xp.arange(T), (N, T))
        position_ids = array_of(position_ids)
        if position_ids.max() >= self.config.n_positions:
            raise ValueError(
                f"GPT2Model: position {int(position_ids.max())} is beyond the {self.config.n_positions} positions "
                "GPT-2 has embeddings for"
            )
        mask = attention_mask_for(attention_mask, N, T, past)
        x = self.drop(self.wte(input_ids) + self.wpe(position_ids))
        for block in self.h:
            x = block(x, mask, past_key_values)
        return self.ln_f(x)


class GPT2LMHeadModel(PreTrainedCausalLM):
    """GPT-2 with its output layer ``lm_head`` tied to the token embedding.
    ``from_pretrained(folder)`` reads a Hugging Face folder; ``generate`` continues prompts.

    Args:
        config: the sizes (``GPT2Config``).
    """

    config_class = GPT2Config
    model_types = ("gpt2",)

    def __init__(self, config: GPT2Config):
        super().__init__()
        self.config = config
        self.transformer = GPT2Model(config)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self._init_weights(config)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.transformer.wte.weight

    def _init_weights(self, config: GPT2Config) -> None:
        # GPT-2: N(0, 0.02) everywhere, zero biases, residual projections scaled by 1/sqrt(2 n_layer).
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif ".ln_" in name:
                continue
            else:
                scale = 1 / math.sqrt(2 * config.n_layer) if name.endswith("c_proj.weight") else 1.0
                nn.init.normal_(p, 0.0, config.initializer_range * scale)

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
        ``GPT2LMHeadModel.forward``); the arguments as ``LlamaForCausalLM.forward``.

        Shape:
            input_ids ``(N, T)``; attention_mask ``(N, S)``, S = cached + T; position_ids and
            labels ``(N, T)`` -> ``CausalLMOutputWithPast(logits (N, T', V), past_key_values,
            loss)``, T' = ``logits_to_keep`` or T.

        Raises:
            TypeError: ids that are not integers. ValueError: ids outside the vocabulary,
            positions beyond ``n_positions``, masks or positions of the wrong shape.
        """
        c = self.config
        ids = check_input_ids(input_ids, c.vocab_size, type(self).__name__)
        N, T = ids.shape
        if position_ids is not None:
            position_ids = array_of(position_ids)
            if position_ids.shape not in ((N, T), (1, T)):
                name = type(self).__name__
                raise ValueError(f"{name}: position_ids must have shape {(N, T)}, got {position_ids.shape}")
            position_ids = xp.broadcast_to(position_ids, (N, T))
        if use_cache is None:
            use_cache = c.use_cache and not (is_grad_enabled() and self.training)
        if past_key_values is None and use_cache:
            past_key_values = nn.DynamicCache()
        hidden = self.transformer(ids, attention_mask, position_ids, past_key_values)
        if logits_to_keep:
            hidden = hidden[:, -logits_to_keep:]
        logits = self.lm_head(hidden)
        loss = causal_lm_loss(logits, labels, T) if labels is not None else None
        return CausalLMOutputWithPast(logits=logits, past_key_values=past_key_values, loss=loss)

    # --- reading Hugging Face folders ---------------------------------------------------------
    @classmethod
    def checkpoint_shapes(cls, config: GPT2Config) -> dict:
        """Every tensor of a Hugging Face GPT-2 folder and its shape as stored (Conv1D
        weights ``(in, out)``)."""
        E, inner = config.n_embd, config.n_inner
        shapes = {"transformer.wte.weight": (config.vocab_size, E), "transformer.wpe.weight": (config.n_positions, E)}
        for i in range(config.n_layer):
            p = f"transformer.h.{i}."
            for name in ("ln_1", "ln_2"):
                shapes[f"{p}{name}.weight"], shapes[f"{p}{name}.bias"] = (E,), (E,)
            for name, (n_in, n_out) in (
                ("attn.c_attn", (E, 3 * E)),
                ("attn.c_proj", (E, E)),
                ("mlp.c_fc", (E, inner)),
                ("mlp.c_proj", (inner, E)),
            ):
                shapes[f"{p}{name}.weight"], shapes[f"{p}{name}.bias"] = (n_in, n_out), (n_out,)
        shapes["transformer.ln_f.weight"], shapes["transformer.ln_f.bias"] = (E,), (E,)
        shapes["lm_head.weight"] = (config.vocab_size, E)
        return shapes

    @classmethod
    def checkpoint_name(cls, name: str, config: GPT2Config) -> str | None:
        """The folder's name under ``transformer.`` (the original GPT-2 files have no prefix);
        the saved causal-mask buffers (``attn.bias``, ``attn.masked_bias``) are skipped."""
        if name.endswith((".attn.bias", ".attn.masked_bias")):
            return None
        return name if name.startswith(("transformer.", "lm_head.")) else f"transformer.{name}"

    @classmethod
    def optional_tensors(cls, config: GPT2Config) -> set:
        return {"lm_head.weight"} if config.tie_word_embeddings else set()

    def from_checkpoint(self, name: str, array: np.ndarray) -> np.ndarray:
        """Conv1D weights ``(in, out)`` as ``nn.Linear``'s ``(out, in)``: a transposed view."""
        return array.T if name.endswith(CONV1D) else array
