"""Text data: tokenizers (char, byte-level BPE), corpora and token batches."""

from numformer.data.corpus import TokenData, default_corpus, load_text
from numformer.data.tokenizers import (
    BPETokenizer,
    CharTokenizer,
    load_tokenizer,
    tokenizer_from_dict,
    train_tokenizer,
)

__all__ = [
    "CharTokenizer",
    "BPETokenizer",
    "load_tokenizer",
    "tokenizer_from_dict",
    "train_tokenizer",
    "default_corpus",
    "load_text",
    "TokenData",
]
