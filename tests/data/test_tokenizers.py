"""Tokenizers round-trip text exactly; corpora load with clear errors; batches are windows."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from numformer.data import (
    BPETokenizer,
    CharTokenizer,
    TokenData,
    default_corpus,
    load_text,
    load_tokenizer,
)

ALPHABET = "abcdefghijklmnopqrstuvwxyz ABC.,;:!?\n\t'\"é日😀"
_BPE = BPETokenizer.train("the quick brown fox jumps over the lazy dog. " * 50 + ALPHABET, 300)


@given(st.text(alphabet=ALPHABET))
def test_char_round_trip(text):
    tok = CharTokenizer.train(ALPHABET)
    assert tok.decode(tok.encode(text)) == text


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",))))
def test_bpe_round_trips_any_unicode(text):
    ids = _BPE.encode(text)
    assert _BPE.decode(ids) == text
    assert ids.dtype == np.int64 and (ids < _BPE.vocab_size).all()


def test_save_load_and_errors(tmp_path):
    char = CharTokenizer.train("hello world")
    char.save(tmp_path / "c.json")
    _BPE.save(tmp_path / "b.json")
    assert load_tokenizer(tmp_path / "c.json").chars == char.chars
    text = "unseen words survive byte-level BPE: ünïcödé"
    assert load_tokenizer(tmp_path / "b.json").decode(_BPE.encode(text)) == text
    with pytest.raises(ValueError, match=r"outside the 8-character vocabulary: 'z' \(U\+007A\)"):
        char.encode("hello z")
    with pytest.raises(ValueError, match="vocab_size must be >= 257"):
        BPETokenizer.train("abc", vocab_size=100)


def test_corpora(tmp_path):
    text = default_corpus()
    assert len(text.encode()) > 1_000_000 and "Return" in text
    (tmp_path / "a.txt").write_text("first file")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.md").write_text("second file")
    assert load_text(tmp_path) == "first file\n\nsecond file"
    (tmp_path / "empty.txt").write_text("  \n")
    with pytest.raises(ValueError, match="is empty"):
        load_text(tmp_path / "empty.txt")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_text(tmp_path / "missing.txt")
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ValueError, match="is not UTF-8 text"):
        load_text(tmp_path / "bin.txt")


def test_token_batches_and_memmap(tmp_path):
    text = "abcdefghij" * 200
    tok = CharTokenizer.train(text)
    data = TokenData(text, tok, val_fraction=0.1)
    mapped = TokenData(text, tok, val_fraction=0.1, cache=tmp_path, memmap_threshold=100)
    assert isinstance(mapped.train, np.memmap) and list(tmp_path.glob("tokens-char-*.bin"))
    np.testing.assert_array_equal(np.asarray(mapped.train), data.train)
    x, y = data.batch(np.random.default_rng(0), 4, 8)
    assert x.shape == y.shape == (4, 8) and x.dtype == np.int64
    np.testing.assert_array_equal(x[:, 1:], y[:, :-1])
    with pytest.raises(ValueError, match="fewer than block_size"):
        data.batch(np.random.default_rng(0), 2, 500, split="val")
