"""Text data: tokenizers (char, byte-level BPE), corpora and token batches."""

from numformer.data.corpus import CORPORA, TokenData, default_corpus, load_text, stdlib_corpus
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
    "stdlib_corpus",
    "CORPORA",
    "load_text",
    "TokenData",
]
