"""all-MiniLM-L6-v2 exported by ``numformer export onnx`` (``export_model_folder``) and run in
ONNX Runtime gives the embeddings ``numformer embed`` prints, on a dozen varied sentences
(short, empty, spaced, punctuation, digits, accents, Cyrillic, Japanese, emoji, a tab and a
newline, one past the 256-token truncation), the short ones batched with padding and the long
one alone. Measured: cosine at least 1 - 6e-8, largest difference 3e-7."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from ort_compare import onnx, ort

from numformer.cli import main
from numformer.models.sentence import SentenceEncoder

FIXTURE = Path(__file__).parents[1] / "fixtures" / "minilm"
PICKED = (0, 4, 7, 8, 9, 10, 12, 13, 14, 15, 18, 20)  # the last one runs past 256 tokens
SENTENCES = [json.loads((FIXTURE / "sentences.json").read_text(encoding="utf-8"))[i] for i in PICKED]


def test_minilm_in_onnx_runtime_gives_numformer_embeds_vectors(tmp_path, capsys):
    path = tmp_path / "minilm.onnx"
    assert main(["export", "onnx", "all-MiniLM-L6-v2", str(path)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"{path}: sentence encoder all-MiniLM-L6-v2 (mean pooling, dim 384)",
        "  inputs: input_ids: (batch, sequence), attention_mask: (batch, sequence)",
        "  outputs: embeddings: (batch, 384)",
    ]
    onnx.checker.check_model(str(path))
    assert main(["embed", "--batch-size", "1", *SENTENCES]) == 0  # one at a time: no 256-token padding
    expected = np.array([json.loads(line) for line in capsys.readouterr().out.splitlines()], dtype=np.float32)
    assert expected.shape == (len(SENTENCES), 384)
    encoder = SentenceEncoder("all-MiniLM-L6-v2")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ids = encoder.tokenize(SENTENCES)
    assert len(ids[-1]) == 256 and min(len(x) for x in ids) == 2  # truncated; [CLS] [SEP] alone
    names = ["input_ids", "attention_mask"]
    short = session.run(None, dict(zip(names, encoder.pad(ids[:-1]))))[0]  # batched, padded
    long = session.run(None, dict(zip(names, encoder.pad(ids[-1:]))))[0]  # alone
    got = np.concatenate([short, long])
    cosine = (got * expected).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(expected, axis=1)
    assert cosine.min() >= 0.99999, cosine.min()
    assert np.abs(got - expected).max() < 1e-5
