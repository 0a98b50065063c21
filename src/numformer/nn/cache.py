"""Key-value caches for decoding: one protocol, Hugging Face's ``Cache``, and its kinds.

A decoder that generates token by token keeps each attention layer's keys and values of the
tokens seen so far, so that a step computes only its new tokens' (seed section 8: generation).
Every numformer decoder takes such a cache as an argument of its one ``forward`` (Hugging
Face's ``past_key_values``; ``GPT``'s and ``nn.MultiheadAttention``'s ``cache``), and every
cache speaks this protocol:

- ``update(key, value, layer_idx, cache_kwargs=None) -> (keys, values)``: store layer
  ``layer_idx``'s new keys and values ``(N, H, T, D)`` and return the keys and values ``(N, H,
  S, D)`` that layer's queries attend to;
- ``cache[layer_idx] -> (keys, values)``: what layer ``layer_idx`` holds, without storing
  anything (a cross-attention reads its memory's keys this way after its first step);
- ``get_seq_length(layer_idx=0) -> int``: how many positions layer ``layer_idx`` holds;
- ``reorder_cache(beam_idx)``: keep the rows ``beam_idx`` (beam search picks its hypotheses);
- ``len(cache)``: the layers updated so far.

The kinds, named as Hugging Face's:

- ``DynamicCache``: grows by each update's positions (all rows share one length: prompts of
  different lengths are left-padded and the padding masked, as in Hugging Face's ``generate``);
- ``StaticCache``: ``max_cache_len`` positions reserved, each update written at its
  ``cache_position`` (one per row if rows differ: ``GPT.generate`` right-pads its prompts and
  writes each row's next token at that row's own position);
- ``EncoderDecoderCache``: a decoder's self-attention cache and its cross-attention cache
  (``nn.TransformerDecoder``).

Keys and values are kept as arrays, outside any graph: a step whose new keys require gradients
gets them back joined to the cached ones in the graph (``cat``), so a cached forward can still be
differentiated with respect to its own tokens (``DynamicCache``), never to earlier steps'.
"""

from __future__ import annotations

import warnings

from numformer.backend import xp
from numformer.tensor import Tensor, cat


class Cache:
    """The protocol every key-value cache implements (Hugging Face's ``Cache``)."""

    def update(self, key: Tensor, value: Tensor, layer_idx: int, cache_kwargs: dict | None = None):
        """Store layer ``layer_idx``'s new keys and values; return what its queries attend to.

        Shape:
            key, value ``(N, H, T, D)`` -> keys, values ``(N, H, S, D)``.
        """
        raise NotImplementedError

    def __getitem__(self, layer_idx: int):
        """``(keys, values)`` ``(N, H, S, D)`` that layer ``layer_idx`` holds (S its length)."""
        raise NotImplementedError

    def get_seq_length(self, layer_idx: int = 0) -> int:
        """The number of positions layer ``layer_idx`` holds (0 before its first update)."""
        raise NotImplementedError

    def reorder_cache(self, beam_idx) -> None:
        """Keep the rows ``beam_idx`` (integers ``(N',)``, repeats allowed) of every layer."""
        raise NotImplementedError

    def __len__(self) -> int:
        """The number of layers that have been updated at least once."""
        raise NotImplementedError


class _Buffers(Cache):
    """What ``DynamicCache`` and ``StaticCache`` share: per layer one ``(N, H, capacity, D)``
    buffer of keys and one of values written in place, and the length each layer holds."""

    def __init__(self):
        self.keys: list = []  # per layer: (N, H, capacity, D) arrays
        self.values: list = []
        self.lengths: list[int] = []

    def __len__(self) -> int:
        return len(self.keys)

    def _layer(self, key: Tensor, value: Tensor, layer_idx: int, capacity: int, fill):
        """Layer ``layer_idx``'s buffers, made at its first update (``fill``: ``xp.empty`` or
        ``xp.zeros``) and checked against the new keys' batch, heads and features."""
        name, k, v = type(self).__name__, key.array, value.array
        if layer_idx > len(self.keys) or layer_idx < 0:
            raise ValueError(f"{name}: layer {layer_idx} updated before layer {len(self.keys)}")
        if layer_idx == len(self.keys):
            self.keys.append(fill(k.shape[:2] + (capacity, k.shape[3]), dtype=k.dtype))
            self.values.append(fill(v.shape[:2] + (capacity, v.shape[3]), dtype=v.dtype))
            self.lengths.append(0)
        buffer_k = self.keys[layer_idx]
        if k.shape[:2] + k.shape[3:] != buffer_k.shape[:2] + buffer_k.shape[3:] or v.shape != k.shape[:3] + v.shape[3:]:
            raise ValueError(
                f"{name}: layer {layer_idx} holds keys of shape (N, H, S, D) = {buffer_k.shape[:2]} + "
                f"(S, {buffer_k.shape[3]}), got new keys of shape {k.shape} and values of shape {v.shape}"
            )
        return self.keys[layer_idx], self.values[layer_idx]

    def __getitem__(self, layer_idx: int):
        if not 0 <= layer_idx < len(self.keys):
            raise IndexError(f"{type(self).__name__}: layer {layer_idx} holds nothing ({len(self.keys)} layers cached)")
        S = self.lengths[layer_idx]
        return Tensor(self.keys[layer_idx][:, :, :S]), Tensor(self.values[layer_idx][:, :, :S])

    def get_seq_length(self, layer_idx: int = 0) -> int:
        """Positions held by layer ``layer_idx`` (0 if it was never updated)."""
        return self.lengths[layer_idx] if 0 <= layer_idx < len(self.lengths) else 0

    def reorder_cache(self, beam_idx) -> None:
        """Keep the rows ``beam_idx`` of every layer (beam search)."""
        index = xp.asarray(beam_idx.array if isinstance(beam_idx, Tensor) else beam_idx)
        self.keys = [k[index] for k in self.keys]
        self.values = [v[index] for v in self.values]

    def __repr__(self) -> str:
        shape = self.keys[0].shape if self.keys else None
        return f"{type(self).__name__}(layers={len(self.keys)}, length={self.get_seq_length()}, buffer={shape})"


class DynamicCache(_Buffers):
    """A cache that grows with each update (Hugging Face's ``DynamicCache``).

    Each layer's keys and values live in one buffer ``(N, H, capacity, D)`` written in place;
    ``update`` returns views of its filled part, so a decoding step copies only its new
    positions. The capacity doubles when an update would overflow it (amortised O(1) copies per
    position); ``max_cache_len`` sizes the first buffer when the final length is known (``generate``
    passes prompt length + new tokens), and then nothing is ever copied twice.

    Args:
        max_cache_len: the length to reserve at the first update (None: what that update holds).

    Raises:
        ValueError: ``max_cache_len`` below 1.
    """

    def __init__(self, max_cache_len: int | None = None):
        if max_cache_len is not None and max_cache_len < 1:
            raise ValueError(f"DynamicCache: max_cache_len must be >= 1, got {max_cache_len}")
        super().__init__()
        self.max_cache_len = max_cache_len

    def update(self, key: Tensor, value: Tensor, layer_idx: int, cache_kwargs: dict | None = None):
        """Append ``key`` and ``value`` to layer ``layer_idx`` and return all its keys and values.

        Shape:
            key, value ``(N, H, T, D)`` -> ``(N, H, S, D)`` each, S = the length before plus T.

        Raises:
            ValueError: a layer index skipped (layers are updated in order, from 0), or keys
            whose batch, heads or features differ from the cached ones.
        """
        k, v = key.array, value.array
        capacity = max(self.max_cache_len or 0, k.shape[2])
        buffer_k, buffer_v = self._layer(key, value, layer_idx, capacity, xp.empty)
        past, T = self.lengths[layer_idx], k.shape[2]
        if past + T > buffer_k.shape[2]:  # grow: double, or more if one update needs it
            capacity = max(2 * buffer_k.shape[2], past + T)
            buffer_k, buffer_v = self._grown(buffer_k, capacity, past), self._grown(buffer_v, capacity, past)
            self.keys[layer_idx], self.values[layer_idx] = buffer_k, buffer_v
        buffer_k[:, :, past : past + T] = k
        buffer_v[:, :, past : past + T] = v
        self.lengths[layer_idx] = past + T
        if key.requires_grad or value.requires_grad:  # the new positions stay in the graph
            return (
                cat([Tensor(buffer_k[:, :, :past]), key], dim=2),
                cat([Tensor(buffer_v[:, :, :past]), value], dim=2),
            )
        return Tensor(buffer_k[:, :, : past + T]), Tensor(buffer_v[:, :, : past + T])

    @staticmethod
    def _grown(buffer, capacity: int, filled: int):
        grown = xp.empty(buffer.shape[:2] + (capacity,) + buffer.shape[3:], dtype=buffer.dtype)
        grown[:, :, :filled] = buffer[:, :, :filled]
        return grown


class StaticCache(_Buffers):
    """A cache of ``max_cache_len`` positions reserved at the first update, each update written
    at its positions (Hugging Face's ``StaticCache`` and its ``cache_position``).

    ``update``'s ``cache_kwargs["cache_position"]`` says where the new keys go: ``(T,)`` positions
    shared by every row, or ``(N, T)``, one list per row, so rows of different lengths decode in
    one batch (``GPT.generate`` right-pads its prompts, then writes each row's next token at that
    row's own position, over the padding). Without it the keys go after the positions held.
    ``update`` returns the positions ``0 .. max(cache_position)``: what no query of the step can
    see (a row's positions after its own query, stale padding) is for the caller's mask to hide.
    Positions never written hold zeros, so a masked key is finite.

    Args:
        max_cache_len: the positions reserved (a model's context length).

    Raises:
        ValueError: ``max_cache_len`` below 1.
    """

    def __init__(self, max_cache_len: int):
        if max_cache_len < 1:
            raise ValueError(f"StaticCache: max_cache_len must be >= 1, got {max_cache_len}")
        super().__init__()
        self.max_cache_len = max_cache_len

    def update(self, key: Tensor, value: Tensor, layer_idx: int, cache_kwargs: dict | None = None):
        """Write ``key`` and ``value`` at their positions in layer ``layer_idx``; return its keys
        and values up to the last position written.

        Shape:
            key, value ``(N, H, T, D)``; ``cache_kwargs["cache_position"]`` integers ``(T,)`` or
            ``(N, T)`` -> ``(N, H, S, D)`` each, S = max(cache_position) + 1.

        Raises:
            ValueError: positions outside [0, max_cache_len) or not of the keys' shape, a layer
            index skipped, keys whose batch, heads or features differ from the cached ones, or
            keys that require gradients (decoding through a static cache is for inference).
        """
        if key.requires_grad or value.requires_grad:
            raise ValueError(
                "StaticCache: keys require gradients; decode under numformer.no_grad() or use DynamicCache"
            )
        k, v = key.array, value.array
        buffer_k, buffer_v = self._layer(key, value, layer_idx, self.max_cache_len, xp.zeros)
        N, _, T, _ = k.shape
        position = (cache_kwargs or {}).get("cache_position")
        if position is None:
            position = self.lengths[layer_idx] + xp.arange(T)
        position = xp.asarray(position.array if isinstance(position, Tensor) else position)
        if position.shape not in ((T,), (N, T)) or position.dtype.kind not in "iu":
            raise ValueError(
                f"StaticCache: cache_position must be integers of shape (T,) = {(T,)} or (N, T) = {(N, T)}, "
                f"got {position.dtype} {position.shape}"
            )
        low, S = int(position.min()), int(position.max()) + 1
        if low < 0 or S > self.max_cache_len:
            raise ValueError(
                f"StaticCache: cache_position must be in [0, max_cache_len={self.max_cache_len}), got [{low}, {S - 1}]"
            )
        if position.ndim == 2:  # each row its own positions
            rows = xp.arange(N)[:, None]
            buffer_k[rows, :, position] = k.transpose(0, 2, 1, 3)
            buffer_v[rows, :, position] = v.transpose(0, 2, 1, 3)
        elif T == 1 or S - low == T and bool((position[1:] > position[:-1]).all()):  # one block
            buffer_k[:, :, low:S], buffer_v[:, :, low:S] = k, v
        else:
            buffer_k[:, :, position], buffer_v[:, :, position] = k, v
        self.lengths[layer_idx] = max(self.lengths[layer_idx], S)
        return Tensor(buffer_k[:, :, :S]), Tensor(buffer_v[:, :, :S])


class EncoderDecoderCache(Cache):
    """An encoder-decoder's caches (Hugging Face's ``EncoderDecoderCache``): its decoder's
    self-attention keys, growing with each step, and its cross-attention keys, the encoder
    output's projections made at the first step and read after (``nn.TransformerDecoder``).

    The protocol's methods act on the self-attention cache; ``reorder_cache`` on both.

    Args:
        self_attention_cache: default a new ``DynamicCache``.
        cross_attention_cache: default a new ``DynamicCache``.
    """

    def __init__(self, self_attention_cache: Cache | None = None, cross_attention_cache: Cache | None = None):
        self.self_attention_cache = DynamicCache() if self_attention_cache is None else self_attention_cache
        self.cross_attention_cache = DynamicCache() if cross_attention_cache is None else cross_attention_cache

    def update(self, key: Tensor, value: Tensor, layer_idx: int, cache_kwargs: dict | None = None):
        """The self-attention cache's ``update``."""
        return self.self_attention_cache.update(key, value, layer_idx, cache_kwargs)

    def __getitem__(self, layer_idx: int):
        return self.self_attention_cache[layer_idx]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        """The target positions layer ``layer_idx`` holds (its self-attention's)."""
        return self.self_attention_cache.get_seq_length(layer_idx)

    def reorder_cache(self, beam_idx) -> None:
        """Keep the rows ``beam_idx`` of both caches (beam search)."""
        self.self_attention_cache.reorder_cache(beam_idx)
        self.cross_attention_cache.reorder_cache(beam_idx)

    def __len__(self) -> int:
        return len(self.self_attention_cache)

    def __repr__(self) -> str:
        return f"EncoderDecoderCache({self.self_attention_cache!r}, {self.cross_attention_cache!r})"


# --- deprecated names ---------------------------------------------------------------------------


def _deprecated(old: str, new: str) -> None:
    warnings.warn(f"{old} is deprecated: use {new} (one cache protocol, nn.Cache)", DeprecationWarning, stacklevel=3)


class AttentionCache(DynamicCache):
    """Deprecated: one ``nn.MultiheadAttention``'s cache. Pass any ``nn.Cache`` (such as
    ``nn.DynamicCache()``) as ``cache=``, with ``static_kv=True`` for a cross-attention.

    Args:
        static: a cross-attention's cache (its memory projected once), as ``static_kv=True``.
    """

    def __init__(self, static: bool = False):
        _deprecated("nn.AttentionCache", "nn.DynamicCache, with static_kv=True for a cross-attention")
        super().__init__()
        self.static = static

    @property
    def length(self) -> int:
        return self.get_seq_length()

    def reorder(self, index) -> None:
        self.reorder_cache(index)


class DecoderCache(EncoderDecoderCache):
    """Deprecated: an ``nn.TransformerDecoder``'s caches; use ``nn.EncoderDecoderCache()``.

    Args:
        num_layers: ignored (the cache holds the layers it is given).
    """

    def __init__(self, num_layers: int | None = None):
        _deprecated("nn.DecoderCache", "nn.EncoderDecoderCache")
        super().__init__()

    @property
    def length(self) -> int:
        return self.get_seq_length()

    def reorder(self, index) -> None:
        self.reorder_cache(index)
