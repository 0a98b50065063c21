"""The right class for a Hugging Face folder, from its ``config.json``'s ``model_type``
(Hugging Face's ``AutoModelForCausalLM``), and the two things the command line does with such a
folder: ``describe`` it (``numformer info``) and ``stream`` text from it (``numformer generate``).

Architectures read: ``gpt2`` (``GPT2LMHeadModel``), ``llama`` (``LlamaForCausalLM``; SmolLM,
TinyLlama, Llama 2 and 3), ``qwen2`` (``Qwen2ForCausalLM``; Qwen2 and Qwen2.5) and ``mistral``
(``MistralForCausalLM``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from numformer.backend import to_numpy
from numformer.data.pretrained import PreTrainedTokenizer
from numformer.data.tokenizers import DecodeStream
from numformer.models.gpt2 import GPT2LMHeadModel
from numformer.models.llama import LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM
from numformer.serialization.folders import ModelFolderError, read_config
from numformer.serialization.safetensors import Checkpoint
from numformer.tensor import array_of

MODEL_TYPES = {
    "gpt2": GPT2LMHeadModel,
    "llama": LlamaForCausalLM,
    "qwen2": Qwen2ForCausalLM,
    "mistral": MistralForCausalLM,
}
STORED = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64"}


def model_class(folder):
    """The class that reads ``folder`` (from its ``config.json``'s ``model_type``).

    Raises:
        FileNotFoundError: no folder or no config.json. ModelFolderError: another model type
        (naming those numformer reads)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no model folder at {folder}")
    kind = read_config(folder).get("model_type")
    if kind not in MODEL_TYPES:
        raise ModelFolderError(
            f"{folder / 'config.json'}: model_type {kind!r} is not a causal language model numformer reads "
            f"({', '.join(MODEL_TYPES)})"
        )
    return MODEL_TYPES[kind]


class AutoModelForCausalLM:
    """``AutoModelForCausalLM.from_pretrained(folder)``: the folder's model, by its type."""

    @staticmethod
    def from_pretrained(folder, dtype=np.float32):
        """See ``causal_lm.PreTrainedCausalLM.from_pretrained``; the class comes from
        ``config.json``'s ``model_type`` (``model_class``)."""
        return model_class(folder).from_pretrained(folder, dtype=dtype)


class AutoTokenizer:
    """``AutoTokenizer.from_pretrained(folder)``: the folder's ``PreTrainedTokenizer``."""

    @staticmethod
    def from_pretrained(folder) -> PreTrainedTokenizer:
        return PreTrainedTokenizer.from_pretrained(folder)


def describe(folder) -> str:
    """A few lines on a Hugging Face folder's model, from ``config.json`` and the weights'
    headers alone (nothing loaded): architecture, sizes, parameter count, stored dtype and the
    memory numformer computes in.

    Raises:
        FileNotFoundError: no folder, config.json or weights. ModelFolderError: a model type
        numformer does not read, a config.json with bad values, or weights that do not fit it."""
    folder = Path(folder)
    cls = model_class(folder)
    data = read_config(folder)
    try:
        config = cls.config_class.from_dict(data, source=str(folder / "config.json"))
    except ValueError as err:
        raise ModelFolderError(str(err)) from None
    checkpoint = Checkpoint.open(folder)
    cls._match(checkpoint, config, folder)  # weights that do not fit the config: named, as a load would
    shapes = cls.checkpoint_shapes(config)
    tied = "lm_head.weight" in cls.optional_tensors(config)
    params = sum(int(np.prod(s)) for name, s in shapes.items() if not (tied and name == "lm_head.weight"))
    stored = ", ".join(f"{STORED.get(k, k)} ({n} tensors)" for k, n in sorted(checkpoint.dtypes().items()))
    lines = [f"{folder}: {cls.__name__} (model_type {config.model_type})"]
    if cls is GPT2LMHeadModel:
        c = config
        lines.append(
            f"  {c.n_layer} layers, hidden {c.n_embd}, {c.n_head} heads, MLP {c.n_inner} ({c.activation_function}), "
            f"vocab {c.vocab_size}, context {c.n_positions}, learned positions"
        )
    else:
        c = config
        heads = f"{c.num_attention_heads} heads"
        if c.num_key_value_heads != c.num_attention_heads:
            heads += f" ({c.num_key_value_heads} key/value heads: grouped-query attention)"
        rope = f"rope theta {c.rope.rope_theta:g}"
        if c.rope.rope_type != "default":
            rope += f", {c.rope.rope_type} scaling x{c.rope.factor:g}"
        windows = {w for w in c.sliding_windows if w is not None}
        lines.append(
            f"  {c.num_hidden_layers} layers, hidden {c.hidden_size}, {heads}, head dim {c.head_dim}, "
            f"MLP {c.intermediate_size} (SwiGLU), vocab {c.vocab_size}, context {c.max_position_embeddings}, {rope}"
            + (f", sliding window {min(windows)}" if windows else "")
            + (", biases on q/k/v" if c.qkv_bias else "")
        )
    lines.append(
        f"  {params:,} parameters{' (output layer tied to the embedding)' if tied else ''}; "
        f"weights {stored} in {len(checkpoint.files)} file(s), {checkpoint.file_bytes() / 2**20:,.1f} MiB; "
        f"computes in float32: {4 * params / 2**20:,.1f} MiB"
    )
    return "\n".join(lines)


class TextStream:
    """Hugging Face's streamer protocol (``put(ids)``, ``end()``) turning row 0's new tokens
    into text pieces for ``on_text(piece)``, decoded incrementally (``DecodeStream``: a piece
    is held back while it ends inside a multi-byte character).

    Args:
        tokenizer: a ``PreTrainedTokenizer``.
        on_text: called with each new piece of text.
    """

    def __init__(self, tokenizer: PreTrainedTokenizer, on_text):
        self.tokenizer, self.on_text = tokenizer, on_text
        self.decoder = DecodeStream(tokenizer)
        self.prompt_seen = False

    def put(self, ids) -> None:
        if not self.prompt_seen:  # generate hands over the prompt first
            self.prompt_seen = True
            return
        self._give(self.decoder.push(int(to_numpy(array_of(ids)).reshape(-1)[0])))

    def end(self) -> None:
        self._give(self.decoder.flush())

    def _give(self, piece: str) -> None:
        if piece:
            self.on_text(piece)

    @property
    def text(self) -> str:
        return self.tokenizer.decode(self.decoder.tokens)


def stream(
    folder_or_model,
    prompt: str,
    chat: bool = False,
    system: str | None = None,
    max_new_tokens: int = 256,
    do_sample: bool | None = None,
    temperature: float | None = None,
    top_k: int | None = None,
    top_p: float | None = None,
    repetition_penalty: float | None = None,
    seed: int | None = None,
    on_text=None,
    tokenizer: PreTrainedTokenizer | None = None,
) -> str:
    """Continue ``prompt`` with a Hugging Face folder's model, giving the text piece by piece to
    ``on_text`` as it is generated (``numformer generate --model FOLDER``).

    Args:
        folder_or_model: a model folder, or a model loaded from one (its ``name_or_path`` names
            the folder its tokenizer comes from, unless ``tokenizer`` is given).
        prompt: the text to continue, or with ``chat`` the user's message.
        chat: lay the prompt out with the folder's chat template (``tokenizer_config.json``) as
            one user turn (after ``system``'s, if given), ending where the assistant's reply
            begins.
        system: a system message for ``chat``.
        max_new_tokens, do_sample, temperature, top_k, top_p, repetition_penalty, seed: as
            ``generation.generate`` (None: the folder's ``generation_config.json``).
        on_text: ``on_text(piece: str)`` for each new piece of text (None: nothing streamed).
        tokenizer: the tokenizer to use (default: the folder's ``tokenizer.json``).

    Returns:
        The generated text (special tokens left out), without the prompt.

    Raises:
        FileNotFoundError, ModelFolderError, MemoryError: as ``AutoModelForCausalLM.from_pretrained``
        and ``PreTrainedTokenizer.from_pretrained``. ValueError: ``chat`` without a chat template,
        or settings out of range.
    """
    if isinstance(folder_or_model, (str, Path)):
        model = AutoModelForCausalLM.from_pretrained(folder_or_model)
    else:
        model = folder_or_model
    if tokenizer is None:
        if model.name_or_path is None:
            raise ValueError("stream: pass tokenizer= for a model that was not loaded from a folder")
        tokenizer = PreTrainedTokenizer.from_pretrained(model.name_or_path)
    if chat:
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
        ids = tokenizer.encode(tokenizer.apply_chat_template(messages), add_special_tokens=False)
    else:
        ids = tokenizer.encode(prompt)
    if not ids:
        raise ValueError("stream: the prompt encodes to no tokens")
    eos = model.generation_config.eos_token_id if model.generation_config is not None else None
    if eos is None and tokenizer.eos_token_id is not None:
        eos = tokenizer.eos_token_id
    streamer = TextStream(tokenizer, on_text or (lambda piece: None))
    model.generate(
        np.asarray([ids], dtype=np.int64),
        max_new_tokens=max_new_tokens,
        do_sample=do_sample,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        repetition_penalty=repetition_penalty,
        eos_token_id=eos,
        seed=seed,
        streamer=streamer,
    )
    return streamer.text
