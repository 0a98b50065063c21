"""Streamed generation shows exactly the final text, also where a character's bytes span tokens."""

from __future__ import annotations

from numformer.data import train_tokenizer
from numformer.train.lm import TextStream


def test_streamed_pieces_join_to_the_final_text_without_replacement_characters():
    tokenizer = train_tokenizer("bpe", " the cat sat on the mat " * 50, 300)  # no merges for the text below
    ids = tokenizer.encode(" café 😀 漢字 ok")
    assert len(ids) > 8  # the multi-byte characters are split over several byte tokens
    stream = TextStream(tokenizer)
    pieces = [stream.push(t) for t in ids] + [stream.flush()]
    assert "".join(pieces) == tokenizer.decode(ids) == " café 😀 漢字 ok"
    assert not any("\ufffd" in piece for piece in pieces)
    naive, shown = [], 0  # decoding the tail at each token, as before: U+FFFD leaks out
    for i in range(1, len(ids) + 1):
        text = tokenizer.decode(ids[:i])
        naive.append(text[shown:])
        shown = len(text)
    assert "\ufffd" in "".join(naive)


class _Counting:
    """A tokenizer that counts the tokens it is asked to decode."""

    def __init__(self, tokenizer):
        self.tokenizer, self.decoded = tokenizer, 0

    def decode(self, ids):
        self.decoded += len(ids)
        return self.tokenizer.decode(ids)


def test_a_long_stream_decodes_each_token_a_bounded_number_of_times():
    """Decoding every token again at each step is quadratic: 2,000 tokens would decode 2 million."""
    base = train_tokenizer("bpe", " the cat sat on the mat " * 50, 300)
    ids = base.encode(" café 😀 漢字 ok the cat" * 100)
    tokenizer = _Counting(base)
    stream = TextStream(tokenizer)
    text = "".join(stream.push(t) for t in ids) + stream.flush()
    assert text == base.decode(ids)
    assert tokenizer.decoded <= 8 * len(ids), (tokenizer.decoded, len(ids))


def test_a_sentencepiece_style_decoder_keeps_each_words_space():
    """A decoder that drops the first token's leading space (SentencePiece's "▁") must not drop
    the space of a later word when only a window of tokens is decoded."""

    class Metaspace:
        pieces = ["▁the", "▁cat", "▁sat", "s", "!"]

        def decode(self, ids):
            return "".join(self.pieces[i] for i in ids).replace("▁", " ").removeprefix(" ")

    tokenizer, ids = Metaspace(), [0, 1, 3, 2, 4, 0]
    stream = TextStream(tokenizer)
    pieces = [stream.push(t) for t in ids] + [stream.flush()]
    assert "".join(pieces) == tokenizer.decode(ids) == "the cats sat! the"
