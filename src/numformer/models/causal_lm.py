"""What the decoder language models read from Hugging Face folders share (GPT-2, the Llama
family): their output, the attention mask of a decoding step, loading a checkpoint folder, and
``generate``.

A folder in Hugging Face's layout holds ``config.json`` (``model_type`` names the
architecture), the weights (``model.safetensors``, or shards listed in
``model.safetensors.index.json``; float32, float16 or bfloat16), and usually
``generation_config.json``, ``tokenizer.json`` and ``tokenizer_config.json``. Parameter names
are Hugging Face's, so tensors load by name. ``from_pretrained`` checks every tensor's name and
shape from the files' headers, and the memory the float32 weights need, before it allocates
anything; every problem is listed in one error.

Nothing is downloaded: the folder must be on disk.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from numformer import nn
from numformer.backend import xp
from numformer.nn import functional as F
from numformer.serialization.folders import ModelFolderError, read_config, verify
from numformer.serialization.safetensors import Checkpoint, available_memory
from numformer.tensor import Tensor, array_of


@dataclass
class CausalLMOutputWithPast:
    """A causal language model's output (Hugging Face's ``CausalLMOutputWithPast``).

    Attributes:
        logits: ``(N, T, V)`` next-token scores at every position (the last
            ``logits_to_keep`` positions when asked).
        past_key_values: the ``nn.Cache`` holding every layer's keys and values, or None.
        loss: the mean next-token cross-entropy when ``labels`` were given, else None.
    """

    logits: Tensor
    past_key_values: nn.Cache | None = None
    loss: Tensor | None = None


def check_input_ids(input_ids, vocab_size: int, name: str) -> np.ndarray:
    """``input_ids`` as an integer array ``(N, T)`` (a 1-D sequence becomes one row).

    Raises:
        TypeError: not integers. ValueError: another rank, no tokens, or ids outside the
        vocabulary (naming the model ``name``)."""
    ids = array_of(input_ids)
    if ids.dtype.kind not in "iu":
        raise TypeError(f"{name}: input_ids must hold integers, got dtype {ids.dtype}")
    if ids.ndim == 1:
        ids = ids[None]
    if ids.ndim != 2 or ids.shape[1] == 0:
        raise ValueError(f"{name}: input_ids must have shape (N, T) with T >= 1, got {ids.shape}")
    if ids.min() < 0 or ids.max() >= vocab_size:
        raise ValueError(f"{name}: input_ids must be in [0, {vocab_size}), got values in [{ids.min()}, {ids.max()}]")
    return ids


def attention_mask_for(attention_mask, batch: int, query_length: int, past_length: int, sliding_window=None):
    """The mask a decoder's attention takes for a step of ``query_length`` new tokens after
    ``past_length`` cached ones: each token sees itself and the tokens before it that are not
    padding (and, with ``sliding_window`` w, only the last w positions: query i sees key j when
    0 <= i - j < w, positions counted in the cache as Hugging Face's masks count them).

    Returns what ``F.scaled_dot_product_attention`` wants, the cheapest form that is exact:
    ``"causal"`` (a prompt from position 0, no padding: the causal kernel), None (one new
    token per row, no padding: it sees everything cached), or a boolean array ``(N or 1, 1, T,
    S)``, True where the (query, key) pair takes part.

    Shape:
        attention_mask ``(N, S)`` with S = past_length + query_length, 1 (or True) for real
        tokens and 0 for padding (None: no padding).

    Raises:
        ValueError: an attention_mask of another shape."""
    T, S = query_length, past_length + query_length
    real = None
    if attention_mask is not None:
        real = array_of(attention_mask)
        if real.shape != (batch, S):
            raise ValueError(
                f"attention_mask must have shape (N, past + T) = {(batch, S)} (the cached positions too), "
                f"got {real.shape}"
            )
        real = real.astype(bool, copy=False)
        if real.all():
            real = None
    windowed = sliding_window is not None and S > sliding_window
    if real is None and not windowed:
        if T == 1:
            return None
        if past_length == 0:
            return "causal"
    query = past_length + xp.arange(T)[:, None]
    key = xp.arange(S)[None, :]
    visible = key <= query
    if windowed:
        visible &= query - key < sliding_window
    mask = visible[None, None]
    if real is not None:
        mask = mask & real[:, None, None, :]
    return mask


def causal_lm_loss(logits, labels, T: int):
    """Mean cross-entropy of position t's logits against label t + 1, skipping labels -100
    (Hugging Face's causal-LM loss).

    Shape: logits ``(N, T, V)``, labels ``(N, T)`` integers -> ``()``.

    Raises:
        ValueError: labels of another shape, or logits cut by ``logits_to_keep``."""
    targets = array_of(labels)
    N, length, V = logits.shape
    if targets.shape != (N, T) or length != T:
        raise ValueError(f"labels must have the shape of input_ids {(N, T)} with every position's logits kept")
    shifted = xp.full((N, T), -100, dtype=np.int64)
    shifted[:, :-1] = targets[:, 1:]
    return F.cross_entropy(logits.reshape(N * T, V), shifted.reshape(-1), ignore_index=-100)


class PreTrainedCausalLM(nn.Module):
    """Base of the causal language models that load Hugging Face folders: ``from_pretrained``
    and ``generate``; each subclass is one architecture's file (``gpt2``, ``llama``).

    A subclass sets ``config_class`` and ``model_types`` (the ``config.json`` values it reads)
    and implements ``checkpoint_shapes(config)`` (the tensors a folder holds, by name, in the
    folder's layout) and ``from_checkpoint(name, array)`` (a tensor as this model's parameter).
    """

    config_class = None
    model_types: tuple = ()
    generation_config = None
    name_or_path: str | None = None

    @classmethod
    def checkpoint_shapes(cls, config) -> dict:
        """``{name: shape}`` of the tensors a folder holds for ``config``, as stored."""
        raise NotImplementedError

    @classmethod
    def checkpoint_name(cls, name: str, config) -> str | None:
        """The name ``checkpoint_shapes`` uses for a tensor named ``name`` in a file, or None for
        a tensor to skip (a saved buffer); default: the name itself."""
        return name

    def from_checkpoint(self, name: str, array: np.ndarray) -> np.ndarray:
        """The array a parameter holds for the checkpoint's tensor ``name`` (default: as stored)."""
        return array

    @classmethod
    def from_pretrained(cls, folder, dtype=np.float32):
        """A model from a folder in Hugging Face's layout, in eval mode (as Hugging Face's).

        Weights stored in ``dtype`` are memory-mapped, not copied (copy-on-write: training
        changes the model, never the file); float16 and bfloat16 weights are converted to
        ``dtype`` (numformer computes in float32). ``generation_config.json`` sets
        ``generate``'s defaults.

        Args:
            folder: the model folder.
            dtype: the floating dtype to compute in (float32; float64 for checks).

        Raises:
            FileNotFoundError: no such folder, or no config.json or weights in it.
            ModelFolderError: a config.json of another architecture or with bad values, or
                weights that do not fit it: one message listing every unmapped, missing and
                mis-shaped tensor.
            MemoryError: the weights need more memory than the machine has available (the
                message gives both figures).
        """
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"no model folder at {folder}")
        data = read_config(folder)
        source = str(folder / "config.json")
        if data.get("model_type") not in cls.model_types:
            raise ModelFolderError(
                f"{source}: model_type {data.get('model_type')!r} is not one {cls.__name__} reads "
                f"({', '.join(cls.model_types)})"
            )
        try:
            config = cls.config_class.from_dict(data, source=source)
        except ValueError as err:
            raise ModelFolderError(str(err)) from None
        checkpoint = Checkpoint.open(folder)
        # a folder numformer wrote has a checksum manifest; Hugging Face's have none
        verify(folder, missing="ignore", only=[path.name for path in checkpoint.files])
        tensors = cls._match(checkpoint, config, folder)
        cls._check_memory(checkpoint, tensors, np.dtype(dtype), folder)
        model = nn.utils.skip_init(cls, config)
        params = dict(model.named_parameters())
        for ours, name in tensors.items():
            array = model.from_checkpoint(ours, checkpoint.array(name, dtype))
            params[ours].array = array
            params[ours].grad = None
        for p in model.parameters():  # anything not in the checkpoint (none today) in dtype too
            if p.dtype != dtype:
                p.array = p.array.astype(dtype)
        from numformer.models.generation import GenerationConfig

        model.generation_config = GenerationConfig.from_folder(folder, config)
        model.name_or_path = str(folder)
        return model.eval()

    @classmethod
    def _match(cls, checkpoint: Checkpoint, config, folder: Path) -> dict:
        """``{parameter name: tensor name in the checkpoint}``, every problem in one error."""
        expected = cls.checkpoint_shapes(config)
        optional = cls.optional_tensors(config)
        found, unmapped, shaped = {}, [], []
        for name, info in checkpoint.tensors.items():
            ours = cls.checkpoint_name(name, config)
            if ours is None:
                continue
            if ours not in expected:
                unmapped.append(f"unmapped tensor {name} {list(info.shape)}")
            elif info.shape != tuple(expected[ours]):
                shaped.append(f"tensor {name} has shape {list(info.shape)}, expected {list(expected[ours])}")
            elif ours in found:
                unmapped.append(f"tensor {name} duplicates {found[ours]}")
            else:
                found[ours] = name
        missing = [f"missing tensor {k} {list(v)}" for k, v in expected.items() if k not in found and k not in optional]
        problems = _listed(unmapped) + _listed(missing) + _listed(shaped)
        if problems:
            raise ModelFolderError(
                f"{folder}: the weights do not fit config.json ({len(unmapped)} unmapped, {len(missing)} missing, "
                f"{len(shaped)} mis-shaped):\n  " + "\n  ".join(problems)
            )
        return {k: v for k, v in found.items() if k not in optional or cls.keeps_optional(config)}

    @classmethod
    def optional_tensors(cls, config) -> set:
        """Names ``checkpoint_shapes`` lists that a folder may leave out (a tied output layer)."""
        return set()

    @classmethod
    def keeps_optional(cls, config) -> bool:
        """Whether optional tensors found in a folder are loaded (False: the tied weight is used)."""
        return False

    @staticmethod
    def _check_memory(checkpoint: Checkpoint, tensors: dict, dtype: np.dtype, folder: Path) -> None:
        need = sum(checkpoint.tensors[name].numel for name in tensors.values()) * dtype.itemsize
        have = available_memory()
        if have is not None and need > have:
            raise MemoryError(
                f"{folder}: its weights need {need / 2**30:.2f} GiB of memory in {dtype.name}, "
                f"and this machine has {have / 2**30:.2f} GiB available"
            )

    def generate(self, input_ids, attention_mask=None, **kwargs) -> Tensor:
        """Continue each prompt: Hugging Face's ``generate`` (greedy or sampled, left-padded
        batches, one KV cache); see ``numformer.models.generation.generate`` for the arguments.

        Returns:
            An int64 tensor of token ids, the prompts first (as Hugging Face's ``LongTensor``).

        Shape: input_ids ``(N, T)`` (or ``(T,)``) -> ``(N, T + new)``."""
        from numformer.models.generation import generate

        return generate(self, input_ids, attention_mask=attention_mask, **kwargs)


def _listed(items: list, limit: int = 20) -> list:
    return items[:limit] + ([f"... and {len(items) - limit} more"] if len(items) > limit else [])
