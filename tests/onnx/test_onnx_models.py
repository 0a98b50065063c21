"""Every model of ``numformer.models`` exported to ONNX, checked, and run in ONNX Runtime at
three sizes against numformer's forward: GPT with each kind of positions, BERT and its
classifier, the sentence encoder's module, the seq2seq Transformer's encoder, one decoding
step and its whole forward, ViT, SASRec and its LSTM baseline, and the time-series models.
Models whose input length is fixed by their config (ViT's image, SASRec's ``max_len``, the
series' window) change their batch only. Largest difference measured: 8.3e-7 (float32, the seq2seq encoder)."""

from __future__ import annotations

import inspect
import io

import numpy as np
import pytest
from ort_compare import export_and_compare

import numformer as nf
import numformer.onnx as nfo
from numformer import nn
from numformer.apps.recommend import NextItemScores
from numformer.apps.translate import Seq2SeqDecoder, Seq2SeqEncoder
from numformer.models import bert, gpt, sasrec, sentence, seq2seq, timeseries, vit
from numformer.models.bert import BertConfig, BertForSequenceClassification, BertModel
from numformer.models.gpt import GPT, GPTConfig
from numformer.models.sasrec import RecurrentRecommender, SASRec, SASRecConfig
from numformer.models.sentence import SentenceEmbedding
from numformer.models.seq2seq import LSTMSeq2Seq, Seq2SeqConfig, Seq2SeqTransformer
from numformer.models.timeseries import LSTMForecaster, SeriesConfig, TimeSeriesTransformer, TransformerAutoencoder
from numformer.models.vit import VisionTransformer, ViTConfig

R = np.random.default_rng(0)
SIZES = [(2, 6), (3, 9), (1, 4)]  # (batch, length): the example's, then two others
NL = {0: "batch", 1: "length"}

BERT = BertConfig(
    vocab_size=30, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
    max_position_embeddings=20,
)  # fmt: skip
SEQ2SEQ = Seq2SeqConfig(
    src_vocab_size=20, tgt_vocab_size=22, d_model=16, nhead=2, num_encoder_layers=2, num_decoder_layers=2,
    dim_feedforward=32, max_len=32,
)  # fmt: skip
SASREC = SASRecConfig(num_items=30, max_len=10, d_model=16, nhead=2, num_layers=2)
SERIES = SeriesConfig(n_features=3, window=12, horizon=4, d_model=16, nhead=2, num_layers=2, dim_feedforward=32)


def gpt_model(positions):
    return lambda: GPT(GPTConfig(vocab_size=11, block_size=16, n_layer=2, n_head=2, d_model=16, positions=positions))


def tokens(n, l, high=30):
    """Ids and an attention mask, the first row padded after half its length."""
    mask = np.ones((n, l), dtype=np.int64)
    mask[0, l // 2 :] = 0
    return R.integers(1, high, (n, l)), mask


def source(n, l):
    """Source ids, the first row's last two padding."""
    src = R.integers(4, 20, (n, l))
    src[0, l - 2 :] = SEQ2SEQ.pad_id
    return src


def decoding_inputs(model):
    def inputs(n, l):
        src = source(n, l + 2)
        with nf.no_grad():
            memory = Seq2SeqEncoder(model).eval()(src).array
        return R.integers(4, 22, (n, l)), memory, src

    return inputs


def histories(n, _):
    seq = R.integers(1, 31, (n, SASREC.max_len))
    seq[0, :6] = 0  # left padding
    return (seq,)


def windows(n, _):
    return (nf.Tensor(R.standard_normal((n, SERIES.window, SERIES.n_features)).astype(np.float32)),)


TOKENS = {"input_ids": NL, "attention_mask": NL}
BATCH = {0: "batch"}

# name -> (model factory, inputs at (batch, length), input names, dynamic axes)
CASES = {
    "GPT learned positions": (gpt_model("learned"), lambda n, l: (R.integers(0, 11, (n, l)),), ["idx"], {"idx": NL}),
    "GPT sinusoidal positions": (
        gpt_model("sinusoidal"),
        lambda n, l: (R.integers(0, 11, (n, l)),),
        ["idx"],
        {"idx": NL},
    ),
    "GPT rotary positions": (gpt_model("rotary"), lambda n, l: (R.integers(0, 11, (n, l)),), ["idx"], {"idx": NL}),
    "BertModel": (lambda: BertModel(BERT), tokens, ["input_ids", "attention_mask"], TOKENS),
    "BertForSequenceClassification": (
        lambda: BertForSequenceClassification(BERT, 3, pooling="mean"),
        tokens,
        ["input_ids", "attention_mask"],
        TOKENS,
    ),
    "SentenceEmbedding mean": (
        lambda: SentenceEmbedding(BertModel(BERT, add_pooling_layer=False), "mean"),
        tokens,
        ["input_ids", "attention_mask"],
        TOKENS,
    ),
    "SentenceEmbedding max": (
        lambda: SentenceEmbedding(BertModel(BERT, add_pooling_layer=False), "max"),
        tokens,
        ["input_ids", "attention_mask"],
        TOKENS,
    ),
    "Seq2SeqTransformer encoder": (
        lambda: Seq2SeqEncoder(Seq2SeqTransformer(SEQ2SEQ)),
        lambda n, l: (source(n, l),),
        ["src"],
        {"src": NL},
    ),
    "Seq2SeqTransformer decoding step": (
        lambda: Seq2SeqDecoder(Seq2SeqTransformer(SEQ2SEQ)),
        None,  # the memory comes from the model's own encoder (below)
        ["tgt", "memory", "src"],
        {"tgt": NL, "memory": {0: "batch", 1: "source"}, "src": {0: "batch", 1: "source"}},
    ),
    "Seq2SeqTransformer": (
        lambda: Seq2SeqTransformer(SEQ2SEQ),
        lambda n, l: (source(n, l + 1), R.integers(4, 22, (n, l))),
        ["src", "tgt"],
        {"src": {0: "batch", 1: "source"}, "tgt": NL},
    ),
    "VisionTransformer": (
        lambda: VisionTransformer(ViTConfig(d_model=16, depth=2, num_heads=2, num_classes=5)),
        lambda n, _: (R.random((n, 1, 8, 8)).astype(np.float32),),
        ["images"],
        {"images": BATCH},
    ),
    "SASRec": (lambda: SASRec(SASREC), histories, ["seq"], {"seq": BATCH}),
    "SASRec scores": (lambda: NextItemScores(SASRec(SASREC)), histories, ["seq"], {"seq": BATCH}),
    "RecurrentRecommender": (lambda: RecurrentRecommender(SASREC), histories, ["seq"], {"seq": BATCH}),
    "TimeSeriesTransformer": (lambda: TimeSeriesTransformer(SERIES), windows, ["x"], {"x": BATCH}),
    "LSTMForecaster": (lambda: LSTMForecaster(SERIES, hidden=8), windows, ["x"], {"x": BATCH}),
    "TransformerAutoencoder": (lambda: TransformerAutoencoder(SERIES), windows, ["x"], {"x": BATCH}),
}


@pytest.mark.parametrize("name", list(CASES))
def test_model_runs_in_onnx_runtime_as_in_numformer(name):
    make, inputs, names, axes = CASES[name]
    nf.manual_seed(0)
    model = make()
    if inputs is None:
        inputs = decoding_inputs(model.model)
    export_and_compare(model, inputs(*SIZES[0]), names, axes, [inputs(*s) for s in SIZES[1:]])


def test_every_model_has_a_case():
    """Every model class of numformer.models runs here, whole or as a part of one that does
    (LSTMSeq2Seq is refused, below)."""
    classes = {
        cls.__name__
        for module in (bert, gpt, sasrec, sentence, seq2seq, timeseries, vit)
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if issubclass(cls, nn.Module) and cls.__module__ == module.__name__
    }
    covered = set()
    for make, *_ in CASES.values():
        nf.manual_seed(0)
        covered |= {type(m).__name__ for m in make().modules()}
    assert classes - covered == {"LSTMSeq2Seq"}


def test_lstm_seq2seq_is_refused_naming_the_model_and_the_index():
    """Its encoder picks each row's last real state with a NumPy index built from the ids: a
    clear error, never a graph with the traced batch's index baked in."""
    nf.manual_seed(0)
    model = LSTMSeq2Seq(20, 22, hidden=8, layers=1)
    with pytest.raises(
        nfo.OnnxExporterError, match=r"option 'index' of Index \(in module LSTMSeq2Seq\).*change with the size"
    ):
        nfo.export(
            model,
            (source(2, 5), R.integers(4, 22, (2, 3))),
            io.BytesIO(),
            input_names=["src", "tgt"],
            dynamic_axes={"src": NL, "tgt": {0: "batch", 1: "target"}},
        )
