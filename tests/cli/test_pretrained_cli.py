"""`numformer embed` and `numformer search` end to end on the packaged all-MiniLM-L6-v2, and
their one-line errors (exit code 2, no traceback)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from numformer.cli import main
from numformer.models.sentence import SentenceEncoder

LINES = [
    "A man is playing a guitar.",
    "",
    "How do I reset my password?",
    "  ",
    "Stock markets fell sharply on Tuesday.",
    "The cat sat on the mat.",
]


@pytest.fixture(scope="module")
def expected():
    return SentenceEncoder().encode(LINES, show_progress_bar=False)


def test_embed_prints_one_json_array_per_line_in_order(tmp_path, capsys, expected):
    path = tmp_path / "texts.txt"
    path.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    assert main(["embed", "--file", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == len(LINES)  # empty and blank lines are texts too
    got = np.array([json.loads(line) for line in out], dtype=np.float32)
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_embed_texts_and_npy_output(tmp_path, capsys, expected):
    out = tmp_path / "e.npy"
    assert main(["embed", LINES[0], LINES[2], "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and "wrote 2 embeddings of dim 384" in captured.err
    np.testing.assert_allclose(np.load(out, allow_pickle=False), expected[[0, 2]], atol=1e-6)
    assert main(["embed", "x", "--out", str(out)]) == 2  # never overwritten unless told
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert main(["embed", "x", "--out", str(out), "--overwrite"]) == 0
    assert np.load(out).shape == (1, 384)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["embed"], "give one or more texts, or --file"),
        (["embed", "a", "--file", "f.txt"], "give texts or --file, not both"),
        (["embed", "--file", "missing.txt"], "no such file: missing.txt"),
        (["embed", "a", "--batch-size", "0"], "--batch-size must be >= 1"),
        (["embed", "a", "--out", "e.txt"], "--out must name a .npy file"),
        (["embed", "a", "--model", "nowhere"], "no model folder at nowhere"),
        (["search", "--corpus", "missing.txt", "--query", "q"], "no such file: missing.txt"),
        (["search", "--corpus", "", "--query", "q"], "--corpus is empty"),  # not '. is a folder'
        (["search", "--corpus", "c.txt", "--query", "q", "--model", ""], "--model is empty"),
        (["embed", "--file", ""], "--file is empty"),
        (["embed", "a", "--model", " "], "--model is empty"),
        (["search", "--corpus", "c.txt", "--query", "q", "--top-k", "0"], "--top-k must be >= 1"),
        (["search", "--corpus", "c.txt", "--query", "   "], "--query is empty"),
        (["search", "--corpus", "c.txt", "--query", "caf\udce9"], "is not valid Unicode"),
        (["embed", "caf\udce9"], "is not valid Unicode"),
        (["embed", "--file", "."], ". is a folder, not a text file"),
        (["embed", "a", "--out", "d.npy"], "--out d.npy is a folder"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.txt").write_text("a\n")
    (tmp_path / "d.npy").mkdir()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


def test_a_file_that_is_not_utf8_is_named(tmp_path, capsys):
    path = tmp_path / "latin1.txt"
    path.write_bytes("caf\u00e9\n".encode("latin-1"))
    assert main(["embed", "--file", str(path)]) == 2
    assert f"{path} is not UTF-8 text" in capsys.readouterr().err
    assert main(["search", "--corpus", str(path), "--query", "x"]) == 2


def test_search_ranks_by_cosine_and_caches_beside_the_corpus(tmp_path, capsys, expected):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    assert main(["search", "--corpus", str(corpus), "--query", "I forgot my password", "--top-k", "2", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["line"] for r in rows][0] == 3 and rows[0]["text"] == LINES[2]
    assert rows[0]["score"] > rows[1]["score"] and len(rows) == 2
    cache = tmp_path / "corpus.txt.embeddings.safetensors"
    assert cache.is_file()
    from numformer.serialization.safetensors import load_arrays

    np.testing.assert_allclose(load_arrays(cache)["embeddings"], expected, atol=1e-6)
    stamp = cache.stat().st_mtime_ns
    assert main(["search", "--corpus", str(corpus), "--query", "guitar"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[0] == "1" and out[0].endswith(LINES[0])
    assert cache.stat().st_mtime_ns == stamp  # the cache was reused
    assert not any(line.split("line")[1].split()[0] in ("2", "4") for line in out)  # empty lines never rank
    corpus.write_text("Guitars are string instruments.\nBananas are yellow.\n", encoding="utf-8")
    assert main(["search", "--corpus", str(corpus), "--query", "music", "--top-k", "1"]) == 0
    assert capsys.readouterr().out.rstrip().endswith("Guitars are string instruments.")
    assert cache.stat().st_mtime_ns != stamp  # a changed corpus is embedded again


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "nan", "foreign"])
def test_a_damaged_or_foreign_cache_is_never_trusted(tmp_path, capsys, damage):
    from numformer.serialization.safetensors import load_arrays, save_arrays

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    cache = tmp_path / "corpus.txt.embeddings.safetensors"
    assert main(["search", "--corpus", str(corpus), "--query", "guitar", "--top-k", "1"]) == 0
    good = capsys.readouterr().out
    if damage == "truncate":
        cache.write_bytes(cache.read_bytes()[:100])
    elif damage == "garbage":
        cache.write_text("garbage")
    elif damage == "empty":
        cache.write_bytes(b"")
    elif damage == "nan":
        from safetensors import safe_open

        with safe_open(str(cache), framework="numpy") as f:
            meta = f.metadata()
        save_arrays({"embeddings": np.full((len(LINES), 384), np.nan, np.float32)}, cache, metadata=meta)
    else:  # a user's own file of that name: used for nothing, never overwritten
        save_arrays({"mine": np.ones(3)}, cache)
    assert main(["search", "--corpus", str(corpus), "--query", "guitar", "--top-k", "1"]) == 0
    captured = capsys.readouterr()
    assert captured.out == good
    if damage == "foreign":
        assert "is not numformer's cache" in captured.err
        np.testing.assert_array_equal(load_arrays(cache)["mine"], np.ones(3))
    else:
        assert np.isfinite(load_arrays(cache)["embeddings"]).all()  # rebuilt


def test_search_works_without_a_cache_where_it_cannot_write(tmp_path, capsys, monkeypatch):
    import numformer.serialization.safetensors

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(numformer.serialization.safetensors, "save_arrays", refuse)
    (tmp_path / "c.txt").write_text("one\ntwo\n")
    assert main(["search", "--corpus", str(tmp_path / "c.txt"), "--query", "one", "--top-k", "1"]) == 0
    captured = capsys.readouterr()
    assert captured.out.rstrip().endswith("one") and "not cached" in captured.err
    assert not (tmp_path / "c.txt.embeddings.safetensors").exists()


# --- issue 36: the search cache and inputs that are not regular files ----------------------------
def test_the_cache_is_keyed_on_exactly_the_bytes_that_were_embedded(tmp_path, capsys, monkeypatch):
    """A corpus saved while its lines were being embedded: the cache must hold the old lines
    under the old bytes' hash, so the next search embeds the new text."""
    import hashlib

    from numformer.serialization.safetensors import read_metadata

    corpus = tmp_path / "faq.txt"
    old = b"refund policy for orders\nshipping times\n"
    corpus.write_bytes(old)
    encode = SentenceEncoder.encode

    def save_meanwhile(self, texts, **kwargs):
        if len(texts) > 1:  # the corpus, not the query
            corpus.write_bytes(b"how to reset a forgotten password\nshipping times\n")
        return encode(self, texts, **kwargs)

    monkeypatch.setattr(SentenceEncoder, "encode", save_meanwhile)
    assert main(["search", "--corpus", str(corpus), "--query", "forgot password", "--top-k", "1"]) == 0
    assert "refund policy" in capsys.readouterr().out  # what was read, and embedded
    meta = read_metadata(tmp_path / "faq.txt.embeddings.safetensors")
    assert meta["corpus_sha256"] == hashlib.sha256(old).hexdigest()
    monkeypatch.setattr(SentenceEncoder, "encode", encode)
    assert main(["search", "--corpus", str(corpus), "--query", "forgot password", "--top-k", "1"]) == 0
    assert "reset a forgotten password" in capsys.readouterr().out


def test_a_pipe_is_read_once_and_never_gets_a_cache(tmp_path, capsys):
    """``--corpus <(cmd)`` (a pipe under /dev/fd): read once, searched, no cache written anywhere."""
    import os

    read, write = os.pipe()
    os.write(write, "\n".join(LINES).encode() + b"\n")
    os.close(write)
    try:
        assert main(["search", "--corpus", f"/dev/fd/{read}", "--query", "guitar", "--top-k", "1"]) == 0
    finally:
        os.close(read)
    assert capsys.readouterr().out.rstrip().endswith(LINES[0])
    assert not list(tmp_path.iterdir()) and not Path(f"/dev/fd/{read}.embeddings.safetensors").exists()


def test_a_file_named_through_dev_fd_is_searched_and_never_gets_a_cache(tmp_path, capsys):
    """``--corpus /dev/stdin < c.txt`` or ``/dev/fd/N`` open on a regular file: the cache went
    beside the descriptor (``/dev/stdin.embeddings.safetensors``, or a SafetensorError traceback
    under /dev/fd); found by the breaking pass after issue 36."""
    import os

    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(LINES) + "\n")
    fd = os.open(corpus, os.O_RDONLY)
    try:
        assert main(["search", "--corpus", f"/dev/fd/{fd}", "--query", "guitar", "--top-k", "1"]) == 0
    finally:
        os.close(fd)
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out.rstrip().endswith(LINES[0])
    assert sorted(tmp_path.iterdir()) == [corpus]


def test_a_named_pipe_without_a_writer_is_one_line_not_a_hang(tmp_path, capsys, monkeypatch):
    import os
    import threading

    import numformer.serialization.files as files

    monkeypatch.setattr(files, "PIPE_WAIT", 0.5, raising=False)
    fifo = tmp_path / "corpus.fifo"
    os.mkfifo(fifo)
    result = []
    search = threading.Thread(
        target=lambda: result.append(main(["search", "--corpus", str(fifo), "--query", "q"])), daemon=True
    )
    search.start()
    search.join(60)
    assert not search.is_alive(), "search waited for ever on a pipe nothing writes to"
    assert result == [2]
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{fifo} is a named pipe (FIFO) that no process writes to" in err
    assert not (tmp_path / "corpus.fifo.embeddings.safetensors").exists()


def test_a_corpus_too_large_for_memory_is_refused_before_embedding(tmp_path, capsys, monkeypatch):
    import numformer.serialization.files as files

    corpus = tmp_path / "c.txt"
    corpus.write_text("one\ntwo\nthree\n")
    monkeypatch.setattr(files, "available_memory", lambda: 1000)
    assert main(["search", "--corpus", str(corpus), "--query", "one"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the embeddings of" in err and "more than the 0.0 GiB" in err
    assert main(["embed", "one", "two"]) == 2
    assert "the embeddings of 2 texts need about" in capsys.readouterr().err


def test_running_out_of_memory_is_one_line_not_a_traceback(tmp_path, capsys, monkeypatch):
    def exhausted(self, texts, **kwargs):
        raise MemoryError

    monkeypatch.setattr(SentenceEncoder, "encode", exhausted)
    assert main(["embed", "one"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: this machine ran out of memory")


def test_a_link_at_the_caches_name_is_never_written_through_or_replaced(tmp_path, capsys):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    target = outside / "notes.bin"
    target.write_bytes(b"mine")
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "c.txt").write_text("one\ntwo\n")
    link = folder / "c.txt.embeddings.safetensors"
    link.symlink_to(target)
    assert main(["search", "--corpus", str(folder / "c.txt"), "--query", "one", "--top-k", "1"]) == 0
    assert "not cached" in capsys.readouterr().err
    assert link.is_symlink() and target.read_bytes() == b"mine" and sorted(outside.iterdir()) == [target]
