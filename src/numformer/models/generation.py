"""Hugging Face's ``generate`` for numformer's causal language models: greedy or sampled
decoding of left-padded batches through one KV cache (seed section 8: generation).

The loop: the prompts run once through the model (positions counted from each row's first real
token, padding masked), filling an ``nn.DynamicCache``; then each step feeds one token per row
and reads the next-token logits. Those pass Hugging Face's processors in its order: the
repetition penalty (Keskar et al., 2019: a seen token's logit divided by the penalty if
positive, multiplied if negative; the prompt's padding not counted), then, when sampling,
temperature, top-k and top-p (``sampling.sample``). A row that emits an end-of-sequence token
is finished and gets ``pad_token_id`` from then on; generation stops when every row is finished
or after ``max_new_tokens``. Greedy decoding gives Hugging Face's tokens; sampling draws from
the same distribution with numformer's generator (``seed``), not PyTorch's.

Defaults come from the model's ``generation_config.json`` (``GenerationConfig``), then
Hugging Face's own (20 tokens in all, greedy, top_k 50 when sampling).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from numformer.autograd import no_grad
from numformer.backend import to_numpy, xp
from numformer.models.sampling import check_sampling, sample
from numformer.nn.cache import DynamicCache
from numformer.serialization.configs import Config
from numformer.serialization.files import read_json
from numformer.tensor import Tensor, array_of

GENERATION_CONFIG = "generation_config.json"


@dataclass
class GenerationConfig(Config):
    """``generation_config.json``'s settings that ``generate`` reads (Hugging Face's names and
    defaults; its other keys are ignored)."""

    unknown_keys = "ignore"
    max_length: int | None = None  # prompt + new tokens; used when max_new_tokens is not set
    max_new_tokens: int | None = None
    do_sample: bool | None = None
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    repetition_penalty: float | None = None
    bos_token_id: int | None = None
    eos_token_id: int | list | None = None
    pad_token_id: int | None = None

    @classmethod
    def from_folder(cls, folder, model_config=None) -> GenerationConfig:
        """The folder's ``generation_config.json``, or else the model config's token ids (as
        Hugging Face's ``GenerationConfig.from_model_config``).

        Raises:
            ValueError: a generation_config.json that is not JSON or has values of wrong types."""
        path = Path(folder) / GENERATION_CONFIG
        if path.is_file():
            return cls.from_dict(read_json(path), source=str(path))
        ids = {k: getattr(model_config, k, None) for k in ("bos_token_id", "eos_token_id", "pad_token_id")}
        return cls(**ids)

    def resolved(self) -> GenerationConfig:
        """Every unset setting filled with Hugging Face's default."""
        defaults = {
            "max_length": 20,
            "do_sample": False,
            "temperature": 1.0,
            "top_k": 50,
            "top_p": 1.0,
            "repetition_penalty": 1.0,
        }
        return replace(self, **{k: v for k, v in defaults.items() if getattr(self, k) is None})


def _token_list(value) -> list:
    if value is None:
        return []
    return [int(v) for v in (value if isinstance(value, (list, tuple)) else [value])]


@no_grad()
def generate(
    model,
    input_ids,
    attention_mask=None,
    generation_config: GenerationConfig | None = None,
    max_new_tokens: int | None = None,
    do_sample: bool | None = None,
    temperature: float | None = None,
    top_k: int | None = None,
    top_p: float | None = None,
    repetition_penalty: float | None = None,
    eos_token_id=None,
    pad_token_id: int | None = None,
    max_length: int | None = None,
    seed: int | None = None,
    streamer=None,
) -> Tensor:
    """Continue each prompt of a batch, as Hugging Face's ``model.generate`` does.

    Args:
        model: a causal LM whose ``forward(input_ids, attention_mask=, position_ids=,
            past_key_values=, logits_to_keep=)`` returns ``.logits`` (``LlamaForCausalLM``,
            ``GPT2LMHeadModel``).
        input_ids: prompts ``(N, T)``, left-padded when their lengths differ (or ``(T,)``).
        attention_mask: ``(N, T)``, 1 for real tokens and 0 for padding (default: inferred from
            ``pad_token_id`` when the prompts hold it and it is no end-of-sequence token, else
            all real: Hugging Face's rule).
        generation_config: the settings to start from (default: the model's, from its
            ``generation_config.json``); the other arguments override it.
        max_new_tokens: tokens to add at most (default: ``max_length`` - T, 20 - T when unset).
        do_sample: sample (True) or take the likeliest token (False, the default).
        temperature, top_k, top_p: the sampling distribution: logits / temperature, the top_k
            likeliest tokens (0: all), the smallest set with probability >= top_p.
        repetition_penalty: > 1 makes tokens already in the row (prompt and output) less likely.
        eos_token_id: an id or a list of ids that finish a row.
        pad_token_id: what finished rows get (default: the first end-of-sequence id).
        max_length: prompt plus new tokens, when ``max_new_tokens`` is not given.
        seed: makes sampling reproducible (numformer's generator).
        streamer: an object with ``put(ids)`` and ``end()`` (Hugging Face's streamer
            protocol): ``put`` gets the prompts ``(N, T)``, then each step's ``(N,)`` new tokens,
            as int64 tensors.

    Returns:
        An int64 tensor ``(N, T + n)`` (a ``LongTensor``, as Hugging Face's): the prompts, then
        n <= max_new_tokens new tokens per row (rows that finished early padded with
        ``pad_token_id``).

    Shape:
        input_ids ``(N, T)`` -> ``(N, T + n)``.

    Raises:
        ValueError: settings out of range (naming them), or an attention_mask that does not fit.
    """
    ids = to_numpy(array_of(input_ids)).astype(np.int64, copy=False)
    if ids.ndim == 1:
        ids = ids[None]
    if ids.ndim != 2 or ids.shape[1] == 0:
        raise ValueError(f"generate: input_ids must have shape (N, T) with T >= 1, got {ids.shape}")
    N, T = ids.shape
    overrides = dict(max_new_tokens=max_new_tokens, do_sample=do_sample, temperature=temperature, top_k=top_k)
    overrides.update(top_p=top_p, repetition_penalty=repetition_penalty, eos_token_id=eos_token_id)
    overrides.update(pad_token_id=pad_token_id, max_length=max_length)
    config = (generation_config or model.generation_config or GenerationConfig()).resolved()
    config = replace(config, **{k: v for k, v in overrides.items() if v is not None})
    steps, eos, pad, top_k_used, top_p_used = _decoding(config, T, seed)
    mask = _prompt_mask(ids, attention_mask, pad, eos)

    # Positions count from each row's first real token (Hugging Face's cumsum(mask) - 1).
    positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0)
    seen = _seen_tokens(ids, mask, model.config.vocab_size)
    rng = np.random.default_rng(seed)
    cache = DynamicCache(max_cache_len=T + steps)
    unfinished = np.ones(N, dtype=bool)
    out = [ids]
    if streamer is not None:
        streamer.put(Tensor(xp.asarray(ids)))
    was_training = model.training
    model.eval()
    try:
        step_ids, step_positions = ids, positions
        for _ in range(steps):
            logits = model(
                xp.asarray(step_ids),
                attention_mask=xp.asarray(mask),
                position_ids=xp.asarray(step_positions),
                past_key_values=cache,
                logits_to_keep=1,
            ).logits
            scores = to_numpy(logits.array[:, -1]).astype(np.float32)
            tokens = _next_tokens(scores, seen, config, rng, top_k_used, top_p_used)
            if pad is not None:
                tokens = np.where(unfinished, tokens, pad)
            tokens = tokens.astype(np.int64)
            out.append(tokens[:, None])
            seen[np.arange(N), tokens] = True
            if streamer is not None:
                streamer.put(Tensor(xp.asarray(tokens)))
            if eos:
                unfinished &= ~np.isin(tokens, eos)
                if not unfinished.any():
                    break
            step_ids, step_positions = tokens[:, None], step_positions[:, -1:] + 1
            mask = np.concatenate([mask, np.ones((N, 1), dtype=mask.dtype)], axis=1)
    finally:
        model.train(was_training)
        if streamer is not None:
            streamer.end()
    return Tensor(xp.asarray(np.concatenate(out, axis=1)))


def _decoding(config: GenerationConfig, T: int, seed):
    """The decoding settings, checked: (new tokens, end-of-sequence ids, pad id, top_k and top_p
    as used: None where they do not apply)."""
    steps = config.max_new_tokens if config.max_new_tokens is not None else max(config.max_length - T, 0)
    eos = _token_list(config.eos_token_id)
    pad = config.pad_token_id if config.pad_token_id is not None else (eos[0] if eos else None)
    sampling = bool(config.do_sample)
    if config.top_k < 0:
        raise ValueError(f"generate: top_k must be >= 0 (0: no limit), got {config.top_k}")
    top_k_used = config.top_k if sampling and config.top_k else None
    top_p_used = config.top_p if sampling and config.top_p != 1.0 else None
    check_sampling(steps, config.temperature, top_k_used, top_p_used, seed)
    if sampling and config.temperature == 0:
        raise ValueError("generate: temperature must be > 0 when sampling (do_sample=False for greedy decoding)")
    if not config.repetition_penalty > 0:
        raise ValueError(f"generate: repetition_penalty must be > 0, got {config.repetition_penalty}")
    return steps, eos, pad, top_k_used, top_p_used


def _next_tokens(scores, seen, config: GenerationConfig, rng, top_k, top_p) -> np.ndarray:
    """Each row's next token from its last logits ``(N, V)``: the repetition penalty on tokens
    already ``seen``, then sampling or the likeliest."""
    if config.repetition_penalty != 1.0:
        penalised = np.where(scores < 0, scores * config.repetition_penalty, scores / config.repetition_penalty)
        scores = np.where(seen, penalised, scores)
    if config.do_sample:
        return sample(scores, rng, config.temperature, top_k, top_p)
    return scores.argmax(axis=-1)


def _seen_tokens(ids: np.ndarray, mask: np.ndarray, vocab_size: int) -> np.ndarray:
    """``(N, V)`` booleans: the tokens in each row's real prompt (for the repetition penalty)."""
    seen = np.zeros((ids.shape[0], vocab_size), dtype=bool)
    real = mask.astype(bool)
    seen[np.nonzero(real)[0], ids[real]] = True
    return seen


def _prompt_mask(ids: np.ndarray, attention_mask, pad, eos: list) -> np.ndarray:
    """The prompts' attention mask as int64 ``(N, T)``: the given one, or Hugging Face's guess."""
    if attention_mask is not None:
        mask = to_numpy(array_of(attention_mask))
        if mask.shape != ids.shape:
            raise ValueError(f"generate: attention_mask must have input_ids' shape {ids.shape}, got {mask.shape}")
        mask = mask.astype(np.int64)
    elif pad is not None and pad not in eos and (ids == pad).any():
        mask = (ids != pad).astype(np.int64)
    else:
        mask = np.ones(ids.shape, dtype=np.int64)
    if not mask.any(axis=1).all():
        raise ValueError("generate: every prompt needs at least one real token (its attention_mask is all 0)")
    return mask
