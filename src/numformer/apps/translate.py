"""Translation with the paper's encoder-decoder (apps ``translate-numbers``, ``translate-dates``).

Task 1: English number words to French number words, made with ``num2words`` ("nine hundred
and ninety-nine" -> "neuf cent quatre-vingt-dix-neuf"), numbers 0 to 999,999; the test numbers
are never seen in training. Task 2: English long dates to German long dates with Babel
("March 14, 2024" -> "14. März 2024"), 1900-2099, held-out dates. Both are rule-bound and
exactly checkable, so exact match is the score (chrF from sacrebleu beside it).

Text becomes pieces: words, single digits and punctuation, a piece after a space marked with
"▁" (SentencePiece's convention), so the pieces join back to the exact text. The baseline is
``LSTMSeq2Seq`` (LSTM encoder-decoder with dot attention) of about the same size, trained for
the same number of steps on the same batches.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import numformer as nf
from numformer.apps.app import App, AppError, OnnxModel, fit, fit_adamw
from numformer.models.seq2seq import BOS, EOS, PAD, UNK, LSTMSeq2Seq, Seq2SeqConfig, Seq2SeqTransformer
from numformer.ops.masks import Equal

SPECIALS = ["<pad>", "<bos>", "<eos>", "<unk>"]
_PIECE = re.compile(r"\s*(\d|[^\W\d_]+|[^\w\s])")


def to_pieces(text: str) -> list[str]:
    """``"March 14, 2024"`` -> ``["March", "▁1", "4", ",", "▁2", "0", "2", "4"]``."""
    pieces, pos = [], 0
    text = text.strip()
    for m in _PIECE.finditer(text):
        if m.start() != pos:
            break
        piece = m.group(1)
        pieces.append(("▁" + piece) if m.group(0) != piece else piece)
        pos = m.end()
    return pieces


def from_pieces(pieces: list[str]) -> str:
    return "".join(p.replace("▁", " ") for p in pieces).strip()


class Vocab:
    """Pieces <-> ids; ids 0-3 are pad, bos, eos, unk."""

    def __init__(self, pieces: list[str]):
        self.itos = list(SPECIALS) + [p for p in pieces if p not in SPECIALS]
        self.stoi = {p: i for i, p in enumerate(self.itos)}

    @classmethod
    def build(cls, texts) -> Vocab:
        return cls(sorted({p for t in texts for p in to_pieces(t)}))

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, text: str, strict: bool = False) -> list[int]:
        if strict:
            if not text.strip():
                raise AppError("the input is empty: give a text to translate")
            if from_pieces(to_pieces(text)) != " ".join(text.split()):
                raise AppError(
                    f"{text!r} holds characters the model cannot read (letters, digits and punctuation only)"
                )
        ids = []
        for piece in to_pieces(text):
            if piece not in self.stoi and strict:
                raise AppError(
                    f"the model never saw {piece.lstrip('▁')[:40]!r} in training: it cannot translate {_short(text)!r}"
                )
            ids.append(self.stoi.get(piece, 3))
        return ids

    def decode(self, ids) -> str:
        return from_pieces([self.itos[i] for i in ids if i > 3])


def _short(text: str, n: int = 60) -> str:
    return text if len(text) <= n else text[:n] + "..."


def pad_batch(rows: list[list[int]], bos: bool = False, eos: bool = False) -> np.ndarray:
    rows = [([BOS] if bos else []) + r + ([EOS] if eos else []) for r in rows]
    out = np.full((len(rows), max(len(r) for r in rows)), PAD, dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


# --- data ------------------------------------------------------------------------------------
def number_pairs(seed: int, n_train: int, n_test: int):
    """(train, test) lists of (English, French) number words; the test numbers are disjoint
    from the training numbers. Numbers are drawn by magnitude (10% below 100, 20% below 1,000,
    70% up to 999,999) so every form is represented."""
    from num2words import num2words

    rng = np.random.default_rng(seed)

    def draw(k):
        kind = rng.random(k)
        return np.where(
            kind < 0.1,
            rng.integers(0, 100, k),
            np.where(kind < 0.3, rng.integers(100, 1000, k), rng.integers(1000, 10**6, k)),
        )

    test = list(dict.fromkeys(draw(3 * n_test).tolist()))[:n_test]
    seen = set(test)
    train = [n for n in dict.fromkeys(draw(3 * n_train).tolist()) if n not in seen][:n_train]

    def pair(n):
        return num2words(n, lang="en"), num2words(n, lang="fr")

    return [pair(n) for n in train], [pair(n) for n in test]


MONTHS = [
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
]  # fmt: skip
_DATE = re.compile(r"\s*([A-Z][a-z]+) (\d{1,2}), (\d{4})\s*")


def check_date(text: str) -> datetime.date:
    """``text`` as the dates app's model was trained on: an English long date (``March 14,
    2024``) that exists, from 1900 to 2099.

    Raises:
        AppError: another form, a day the month does not have, or a year out of range."""
    match = _DATE.fullmatch(text)
    if match is None or match.group(1) not in MONTHS:
        raise AppError(f"translate-dates: expected an English long date such as 'March 14, 2024', got {_short(text)!r}")
    month, day, year = MONTHS.index(match.group(1)) + 1, int(match.group(2)), int(match.group(3))
    try:
        date = datetime.date(year, month, day)
    except ValueError as err:
        raise AppError(f"translate-dates: {text.strip()!r} is not a date ({err})") from None
    if not 1900 <= year <= 2099:
        raise AppError(f"translate-dates: the model was trained on dates from 1900 to 2099, got {year}")
    return date


def date_pairs(seed: int, n_train: int, n_test: int):
    """(train, test) lists of (English long date, German long date), 1900-01-01 to 2099-12-31,
    the test dates disjoint from the training dates."""
    from babel.dates import format_date

    rng = np.random.default_rng(seed)
    start = datetime.date(1900, 1, 1).toordinal()
    days = datetime.date(2099, 12, 31).toordinal() - start + 1
    order = rng.permutation(days)
    test_days, train_days = order[:n_test], order[n_test : n_test + n_train]

    def pair(day):
        d = datetime.date.fromordinal(start + int(day))
        return format_date(d, format="long", locale="en_US"), format_date(d, format="long", locale="de_DE")

    return [pair(d) for d in train_days], [pair(d) for d in test_days]


# --- train / eval / predict ------------------------------------------------------------------
@dataclass(frozen=True)
class Preset:
    """Every setting a translate train reads: the data, the Transformer's and the LSTM's sizes,
    and the optimisation."""

    name: str
    n_train: int  # training pairs
    n_test: int  # test pairs
    steps: int
    batch: int
    d_model: int
    nhead: int
    num_layers: int  # encoder and decoder layers each
    dim_feedforward: int
    lstm_hidden: int
    lstm_layers: int


FAST = Preset(
    "fast", 400, 50, 30, 16, d_model=32, nhead=2, num_layers=1, dim_feedforward=64, lstm_hidden=32, lstm_layers=1
)
FULL = Preset("full", 40000, 2000, 3000, 128, 128, 4, 2, 256, lstm_hidden=128, lstm_layers=2)


def _batches(pairs, src: Vocab, tgt: Vocab, batch_size: int):
    """``batches(rng) -> (source, target in, target out)``: ``batch_size`` pairs drawn at random."""
    src_ids = [src.encode(a) for a, _ in pairs]
    tgt_ids = [tgt.encode(b) for _, b in pairs]

    def batches(rng):
        rows = rng.integers(0, len(pairs), batch_size)
        full = pad_batch([tgt_ids[i] for i in rows], bos=True, eos=True)
        return pad_batch([src_ids[i] for i in rows]), full[:, :-1], full[:, 1:]

    return batches


def _loss(model, batch):
    s, t_in, t_out = batch
    logits = model(s, t_in)
    return nf.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), t_out.reshape(-1), ignore_index=PAD, label_smoothing=0.1
    )


def _is_size(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


class Seq2SeqEncoder(nf.nn.Module):
    """A ``Seq2SeqTransformer``'s encoder alone (what ONNX export writes as ``encoder.onnx``)."""

    def __init__(self, model: Seq2SeqTransformer):
        super().__init__()
        self.model = model

    def forward(self, src):
        """Shape: ``src`` integer ``(N, S)``, padded with ``pad_id`` -> memory ``(N, S, d_model)``."""
        return self.model.encode(src)[0]


class Seq2SeqDecoder(nf.nn.Module):
    """One decoding step of a ``Seq2SeqTransformer`` without a cache (``decoder.onnx``): the
    target so far, the memory and the source ids (for their padding) in, the next token's
    logits at every target position out (a decoder reads the last)."""

    def __init__(self, model: Seq2SeqTransformer):
        super().__init__()
        self.model = model

    def forward(self, tgt, memory, src):
        """Shape: ``tgt`` ``(N, T)``, ``memory`` ``(N, S, d_model)``, ``src`` ``(N, S)`` ->
        ``(N, T, tgt_vocab_size)``."""
        padding = Equal.apply(nf.Tensor(src), value=self.model.config.pad_id).array
        return self.model.decode(tgt, memory, padding)


class Translate(App):
    """``translate-numbers`` and ``translate-dates``: the paper's encoder-decoder against an
    LSTM encoder-decoder with attention. Each is made with its own name, summary, data, inputs,
    presets and ``pairs`` (``pairs(seed, n_train, n_test) -> (train, test)``)."""

    licence = "generated by the package at run time"
    metric = "exact match"
    baseline = "LSTM encoder-decoder + attention"

    def fit_models(self, out: Path, p: Preset, seed: int, progress: bool) -> tuple[dict, dict]:
        train_pairs, test_pairs = self.pairs(seed, p.n_train, p.n_test)
        src, tgt = Vocab.build(a for a, _ in train_pairs), Vocab.build(b for _, b in train_pairs)
        longest = max(len(to_pieces(t)) for pair in train_pairs + test_pairs for t in pair) + 2
        nf.manual_seed(seed)
        cfg = Seq2SeqConfig(
            len(src),
            len(tgt),
            d_model=p.d_model,
            nhead=p.nhead,
            num_encoder_layers=p.num_layers,
            num_decoder_layers=p.num_layers,
            dim_feedforward=p.dim_feedforward,
            max_len=max(64, 2 * longest),
        )
        transformer = Seq2SeqTransformer(cfg)
        lstm = LSTMSeq2Seq(len(src), len(tgt), hidden=p.lstm_hidden, layers=p.lstm_layers, dropout=0.1)
        batches = _batches(train_pairs, src, tgt, p.batch)
        run = {"seed": seed, "progress": progress, "count": lambda b: b[2].size, "unit": "tokens"}
        # the paper's schedule (NoamLR), scaled so that its peak, at step ``warmup``, is 1e-3
        warmup = max(p.steps // 10, 1)
        lr = 1e-3 * math.sqrt(p.d_model * warmup)
        optimizer = nf.optim.AdamW(transformer.parameters(), lr=lr, betas=(0.9, 0.98), eps=1e-9, weight_decay=0.0)
        noam = nf.optim.lr_scheduler.NoamLR(optimizer, p.d_model, warmup)
        fitted = fit(transformer, optimizer, _loss, batches, out, "transformer", p.steps, scheduler=noam, **run)
        lstm_fit = fit_adamw(lstm, _loss, batches, out, "lstm", p.steps, lr=3e-3, weight_decay=0.0, warmup=False, **run)
        times = {"transformer": fitted.seconds, "lstm": lstm_fit.seconds}
        split = {"preset": p.name, "seed": seed, "n_train": len(train_pairs), "test": [list(t) for t in test_pairs]}
        vocabularies = {"src_vocab": src.itos, "tgt_vocab": tgt.itos}
        model_config = {"kind": "transformer", "config": cfg.to_dict(), **vocabularies}
        self.save_models(out / "model", model_config, {"model.safetensors": transformer}, split)
        lstm_config = {"kind": "lstm", "config": lstm.config, **vocabularies}
        self.save_models(out / "baseline", lstm_config, {"model.safetensors": lstm}, split)
        return split, {
            "steps": p.steps,
            "train_seconds": times,
            "parameters": {"transformer": transformer.num_parameters(), "lstm": lstm.num_parameters()},
        }

    def _load(self, folder: Path, kind: str):
        """The ``kind`` of model (``"transformer"`` in ``model/``, ``"lstm"`` in ``baseline/``)
        and the vocabularies saved in ``folder`` (eval mode).

        Raises:
            AppError: a missing or damaged file, naming it and the command that writes it again."""
        info, path = self.model_folder(folder)
        if info.get("kind") != kind:
            raise self.fail(path, f"{path}: kind must be {kind!r}, got {info.get('kind')!r}")
        weights = folder / "model.safetensors"
        if kind == "transformer":
            c = self.config(Seq2SeqConfig, info.get("config"), path)
            if c.pad_id != PAD:
                raise self.fail(path, f"{path}: pad_id must be {PAD}, the app's, got {c.pad_id}")
            layer = "transformer.{}.layers.{}.linear1.weight"
            expected = {
                "positions.pe": (c.max_len, c.d_model),
                "src_embed.weight": (c.src_vocab_size, c.d_model),
                "generator.weight": (c.tgt_vocab_size, c.d_model),
                layer.format("encoder", c.num_encoder_layers - 1): (c.dim_feedforward, c.d_model),
                layer.format("decoder", c.num_decoder_layers - 1): (c.dim_feedforward, c.d_model),
            }
            self.check_sizes(weights, expected)  # before a model of the config's size is built
            model, sizes = Seq2SeqTransformer(c), (c.src_vocab_size, c.tgt_vocab_size)
        else:
            fields = info.get("config")
            if not isinstance(fields, dict):
                got = type(fields).__name__
                raise self.fail(path, f"{path} does not hold a LSTMSeq2Seq (expected a JSON object, got {got})")
            h, layers = fields.get("hidden"), fields.get("layers")
            if _is_size(h) and _is_size(layers):
                self.check_sizes(weights, {f"encoder.weight_hh_l{layers - 1}": (4 * h, h)})
            try:
                model = LSTMSeq2Seq(**fields)
            except (TypeError, ValueError, ArithmeticError) as err:
                raise self.fail(path, f"{path} does not hold a LSTMSeq2Seq ({err})") from None
            sizes = (model.config["src_vocab_size"], model.config["tgt_vocab_size"])
        self.load_weights(model, weights)  # every size of the config against the weights'
        src, tgt = (self._vocab(info.get(k), k, n, path) for k, n in zip(("src_vocab", "tgt_vocab"), sizes))
        return model.eval(), src, tgt

    def _vocab(self, pieces, key: str, size: int, path: Path) -> Vocab:
        """The vocabulary saved under ``key``: distinct strings, ``SPECIALS`` first, one per row
        of the model's embedding (``size``), so a truncated or padded list is named, not decoded
        wrong. (A list of the right length in another order cannot be told from the real one.)"""
        if not (
            isinstance(pieces, list)
            and all(isinstance(p, str) for p in pieces)
            and pieces[:4] == SPECIALS
            and len(set(pieces)) == len(pieces)
        ):
            raise self.fail(path, f"{path}: {key} must be a list of distinct strings beginning {SPECIALS}")
        if len(pieces) != size:
            raise self.fail(path, f"{path}: {key} holds {len(pieces)} pieces, the model's embedding {size}")
        return Vocab(pieces[4:])

    def _test_pairs(self, split: dict, path: Path) -> list[tuple[str, str]]:
        """split.json's test set: a non-empty list of [source, reference] string pairs."""
        test = split.get("test")
        if not (
            isinstance(test, list)
            and test
            and all(isinstance(p, list) and len(p) == 2 and all(isinstance(t, str) for t in p) for p in test)
        ):
            raise self.fail(
                path, f"{path} is damaged (its test must be a non-empty list of [source, reference] strings)"
            )
        return [(a, b) for a, b in test]

    def evaluate(self, out: Path) -> dict:
        import sacrebleu

        split = self.read_split(out)
        test = self._test_pairs(split, out / "split.json")
        transformer, src, tgt = self._load(out / "model", "transformer")
        lstm, lstm_src, lstm_tgt = self._load(out / "baseline", "lstm")
        sources = [a for a, _ in test]
        refs = [b for _, b in test]
        hyps = {
            "greedy": _translate(transformer, src, tgt, sources),
            "beam4": _translate(transformer, src, tgt, sources, beam=4),
            "lstm": _translate(lstm, lstm_src, lstm_tgt, sources),
        }
        exact = {k: float(np.mean([h == r for h, r in zip(v, refs)])) for k, v in hyps.items()}
        chrf = {k: round(sacrebleu.corpus_chrf(v, [refs]).score, 2) for k, v in hyps.items()}
        best = "beam4" if exact["beam4"] >= exact["greedy"] else "greedy"
        errors = [(s, h, r) for s, h, r in zip(sources, hyps[best], refs) if h != r][:5]
        return self.scored(
            out,
            split,
            "exact match (test set)",
            round(exact["beam4"], 4),
            round(exact["lstm"], 4),
            len(refs),
            baseline="LSTM encoder-decoder with attention",
            exact_match={k: round(v, 4) for k, v in exact.items()},
            chrF=chrf,
            parameters=self.read_json(out / "train.json")["parameters"],
            examples_wrong=[{"source": s, "output": h, "reference": r} for s, h, r in errors],
        )

    def predict(self, out: Path, inputs: list[str]) -> list[str]:
        transformer, src, tgt = self._load(out / "model", "transformer")
        texts = []
        for text in inputs:
            if self.name == "translate-numbers" and text.strip().isdigit():
                from num2words import num2words

                value = int(text)
                if value >= 10**6:
                    raise AppError(f"the model translates numbers up to 999,999, got {value}")
                text = num2words(value, lang="en")
            if self.name == "translate-dates":
                check_date(text)
            texts.append(text)
        return _translate(transformer, src, tgt, texts, beam=4, strict=True)

    def onnx_models(self, out: Path) -> list[OnnxModel]:
        """The transformer as ``predict``'s decoding loop runs it: ``encoder`` (``src`` ids
        ``(batch, source)`` -> ``memory``) and ``decoder`` (``tgt`` ``(batch, target)``, the
        memory and ``src`` -> ``logits`` ``(batch, target, vocab)``), ids of the saved
        vocabularies. (The LSTM baseline picks each row's last real state with a NumPy index:
        not exportable.)"""
        model, _, _ = self._load(out / "model", "transformer")
        rng, c = np.random.default_rng(0), model.config
        src = rng.integers(4, c.src_vocab_size, size=(2, 6))
        src[1, 4:] = c.pad_id
        tgt = rng.integers(4, c.tgt_vocab_size, size=(2, 3))
        with nf.no_grad():
            memory = Seq2SeqEncoder(model).eval()(src).array
        source = {0: "batch", 1: "source"}
        decoder_axes = {"tgt": {0: "batch", 1: "target"}, "memory": source, "src": source}
        return [
            OnnxModel("encoder", Seq2SeqEncoder(model), (src,), ["src"], ["memory"], {"src": source, "memory": source}),
            OnnxModel(
                "decoder",
                Seq2SeqDecoder(model),
                (tgt, memory, src),
                ["tgt", "memory", "src"],
                ["logits"],
                {**decoder_axes, "logits": {0: "batch", 1: "target"}},
            ),
        ]


def _translate(model, src: Vocab, tgt: Vocab, texts: list[str], beam: int = 1, strict: bool = False) -> list[str]:
    out = []
    for start in range(0, len(texts), 256):
        chunk = texts[start : start + 256]
        ids = pad_batch([src.encode(t, strict=strict) or [UNK] for t in chunk], eos=False)
        if isinstance(model, Seq2SeqTransformer):
            if ids.shape[1] > model.config.max_len:
                raise AppError(
                    f"input of {ids.shape[1]} pieces is longer than the model's context ({model.config.max_len})"
                )
            rows = model.greedy_decode(ids) if beam == 1 else model.beam_search(ids, beam_size=beam)
        else:
            rows = model.greedy_decode(ids, max_len=64)
        out += [tgt.decode(r) for r in rows]
    return out


APPS = [
    Translate(
        name="translate-numbers",
        summary="Seq2SeqTransformer: English number words to French",
        data="num2words 0.5.14: English -> French number words, 0-999,999 (LGPL package, generated text)",
        inputs="TEXT ... (English number words, or digits)",
        presets={"fast": FAST, "full": FULL},
        pairs=number_pairs,
    ),
    Translate(
        name="translate-dates",
        summary="Seq2SeqTransformer: English long dates to German",
        data="Babel 2.19.0 CLDR: English -> German long dates, 1900-2099",
        inputs="TEXT ... ('March 14, 2024')",
        presets={"fast": FAST, "full": dataclasses.replace(FULL, n_train=20000, steps=1500)},
        pairs=date_pairs,
    ),
]
