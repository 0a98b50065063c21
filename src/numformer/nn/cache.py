"""Key-value caches for decoding: one protocol, Hugging Face's ``Cache``.

A decoder that generates token by token keeps each attention layer's keys and values of the
tokens seen so far, so that a step computes only its new tokens' (seed section 8: generation).
Every numformer decoder takes such a cache as an argument of its one ``forward`` (Hugging
Face's ``past_key_values``), and every cache speaks this protocol:

- ``update(key, value, layer_idx) -> (keys, values)``: store layer ``layer_idx``'s new keys and
  values ``(N, H, T, D)`` after those already there and return all of them ``(N, H, S, D)``,
  what that layer's queries attend to (S = the cached length after the update);
- ``get_seq_length(layer_idx=0) -> int``: how many positions layer ``layer_idx`` holds;
- ``reorder_cache(beam_idx)``: keep the rows ``beam_idx`` (beam search picks its hypotheses).

All rows of a batch share one length: prompts of different lengths are left-padded and the
padding is masked (the attention mask covers the cached positions too), as in Hugging Face's
``generate``. Keys and values are kept as arrays, outside any graph: a step whose new keys
require gradients gets them back joined to the cached ones in the graph (``cat``), so a
cached forward can still be differentiated with respect to its own tokens.
"""

from __future__ import annotations

from numformer.backend import xp
from numformer.tensor import Tensor, cat


class Cache:
    """The protocol every key-value cache implements (Hugging Face's ``Cache``)."""

    def update(self, key: Tensor, value: Tensor, layer_idx: int, cache_kwargs: dict | None = None):
        """Append layer ``layer_idx``'s new keys and values; return everything it has cached.

        Shape:
            key, value ``(N, H, T, D)`` -> keys, values ``(N, H, S, D)``, S the cached length
            after the update (the new positions last).
        """
        raise NotImplementedError

    def get_seq_length(self, layer_idx: int = 0) -> int:
        """The number of positions layer ``layer_idx`` holds (0 before its first update)."""
        raise NotImplementedError

    def reorder_cache(self, beam_idx) -> None:
        """Keep the rows ``beam_idx`` (integers ``(N',)``, repeats allowed) of every layer."""
        raise NotImplementedError


class DynamicCache(Cache):
    """A cache that grows with each update (Hugging Face's ``DynamicCache``).

    Each layer's keys and values live in one buffer ``(N, H, capacity, D)`` written in place;
    ``update`` returns views of its filled part, so a decoding step copies only its new
    positions. The capacity doubles when an update would overflow it (amortised O(1) copies per
    position); ``max_cache_len`` sizes the first buffer when the final length is known (``generate``
    passes prompt length + new tokens), and then nothing is ever copied twice.

    Args:
        max_cache_len: the length to reserve at the first update (None: what that update holds).
    """

    def __init__(self, max_cache_len: int | None = None):
        if max_cache_len is not None and max_cache_len < 1:
            raise ValueError(f"DynamicCache: max_cache_len must be >= 1, got {max_cache_len}")
        self.max_cache_len = max_cache_len
        self.keys: list = []  # per layer: (N, H, capacity, D) arrays
        self.values: list = []
        self.lengths: list[int] = []

    def __len__(self) -> int:
        """The number of layers that have been updated at least once."""
        return len(self.keys)

    def update(self, key: Tensor, value: Tensor, layer_idx: int, cache_kwargs: dict | None = None):
        """Append ``key`` and ``value`` to layer ``layer_idx`` and return all its keys and values.

        Shape:
            key, value ``(N, H, T, D)`` -> ``(N, H, S, D)`` each, S = the length before plus T.

        Raises:
            ValueError: a layer index skipped (layers are updated in order, from 0), or keys
            whose batch, heads or features differ from the cached ones.
        """
        k, v = key.array, value.array
        if layer_idx > len(self.keys):
            raise ValueError(f"DynamicCache: layer {layer_idx} updated before layer {len(self.keys)}")
        if layer_idx == len(self.keys):
            capacity = max(self.max_cache_len or 0, k.shape[2])
            self.keys.append(xp.empty(k.shape[:2] + (capacity, k.shape[3]), dtype=k.dtype))
            self.values.append(xp.empty(v.shape[:2] + (capacity, v.shape[3]), dtype=v.dtype))
            self.lengths.append(0)
        past, T = self.lengths[layer_idx], k.shape[2]
        buffer_k, buffer_v = self.keys[layer_idx], self.values[layer_idx]
        if k.shape[:2] + k.shape[3:] != buffer_k.shape[:2] + buffer_k.shape[3:]:
            raise ValueError(
                f"DynamicCache: layer {layer_idx} holds keys of shape (N, H, S, D) = {buffer_k.shape[:2]} + "
                f"(S, {buffer_k.shape[3]}), got new keys of shape {k.shape}"
            )
        if past + T > buffer_k.shape[2]:  # grow: double, or more if one update needs it
            capacity = max(2 * buffer_k.shape[2], past + T)
            buffer_k, buffer_v = self._grown(buffer_k, capacity, past), self._grown(buffer_v, capacity, past)
            self.keys[layer_idx], self.values[layer_idx] = buffer_k, buffer_v
        buffer_k[:, :, past : past + T] = k
        buffer_v[:, :, past : past + T] = v
        self.lengths[layer_idx] = past + T
        keys, values = buffer_k[:, :, : past + T], buffer_v[:, :, : past + T]
        if key.requires_grad or value.requires_grad:  # the new positions stay in the graph
            return (
                cat([Tensor(buffer_k[:, :, :past]), key], dim=2),
                cat([Tensor(buffer_v[:, :, :past]), value], dim=2),
            )
        return Tensor(keys), Tensor(values)

    @staticmethod
    def _grown(buffer, capacity: int, filled: int):
        grown = xp.empty(buffer.shape[:2] + (capacity,) + buffer.shape[3:], dtype=buffer.dtype)
        grown[:, :, :filled] = buffer[:, :, :filled]
        return grown

    def get_seq_length(self, layer_idx: int = 0) -> int:
        """Positions held by layer ``layer_idx`` (0 if it was never updated)."""
        return self.lengths[layer_idx] if layer_idx < len(self.lengths) else 0

    def reorder_cache(self, beam_idx) -> None:
        """Keep the rows ``beam_idx`` of every layer (beam search)."""
        index = xp.asarray(beam_idx.array if isinstance(beam_idx, Tensor) else beam_idx)
        self.keys = [k[index] for k in self.keys]
        self.values = [v[index] for v in self.values]

    def __repr__(self) -> str:
        shape = self.keys[0].shape if self.keys else None
        return f"DynamicCache(layers={len(self.keys)}, length={self.get_seq_length()}, buffer={shape})"
