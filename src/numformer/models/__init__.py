"""Models built from numformer's layers; each file reads top to bottom."""

from numformer.models.gpt import GPT, GPTConfig, KVCache

__all__ = ["GPT", "GPTConfig", "KVCache"]
