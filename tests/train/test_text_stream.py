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
