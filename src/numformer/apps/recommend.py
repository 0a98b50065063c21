"""Next-item recommendation (app ``sasrec``): SASRec on MovieLens-100K.

Data: MovieLens-100K (100,000 ratings of 1,682 movies by 943 users, with timestamps, titles
and genres; GroupLens). Its licence forbids redistribution, so it is read where the PyPI
package ``recbole==1.2.1`` installed it (``recbole/dataset_example/ml-100k/``, found with
``importlib.util.find_spec``; RecBole itself is never imported, so it is installed with
``--no-deps``), and never copied here. ``load_interactions`` also reads the standard MovieLens
files (``u.data``, ``ratings.dat``) and RecBole's ``.inter`` files.

Protocol (the paper's): each user's items in timestamp order; the last is the test target, the
one before it the validation target, the rest the training history. Both models are trained
alike: the same batches (the newest 200 items of a training history; for a longer history,
half the time a window ending at a random item), cross-entropy against the whole catalogue at
every position (``softmax_loss``; Klenitskiy and Vasilev, 2023, find it lifts SASRec over the
paper's one sampled negative), AdamW at 1e-3. Each trains until its validation loss (the
validation item's cross-entropy, measured every 100 steps) has not fallen for 10 evaluations
in a row, at most 10,000 steps (``--steps`` sets that cap), and keeps the weights of its lowest
validation loss: early stopping (RecBole's defaults also wait 10 evaluations, of MRR@10 once
an epoch). Metrics: HR@10 and NDCG@10
of the target ranked among 100 sampled items the user never rated (the paper's protocol), and
among the whole catalogue minus the user's history, with SASRec's lead over each baseline and
its 95% paired bootstrap interval over users. Baselines: most popular (by training
interactions) and a recurrent recommender (GRU4Rec's recipe on ``nn.LSTM``). The paper's
figures on MovieLens-1M (a different, larger data set): HR@10 0.8245, NDCG@10 0.5905 (100
negatives).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import numformer as nf
from numformer.apps.app import App, AppError, OnnxModel, fit_adamw
from numformer.models.sasrec import RecurrentRecommender, SASRec, SASRecConfig, softmax_loss

INSTALL = "pip install --no-deps recbole==1.2.1"
DATA = "MovieLens-100K (GroupLens; read from the installed recbole 1.2.1 package, never copied)"
PAPER = {"data": "MovieLens-1M", "HR@10": 0.8245, "NDCG@10": 0.5905, "protocol": "100 sampled negatives"}
# Each model trains until its validation loss has not fallen for PATIENCE evaluations in a row
# (one every EVAL_EVERY steps), at most ``steps`` steps, and keeps its best evaluation's weights.
EVAL_EVERY, PATIENCE = 100, 10
MODELS = {"sasrec": SASRec, "lstm": RecurrentRecommender}  # SASRec and its recurrent baseline, one file each


@dataclass(frozen=True)
class Preset:
    """Every setting a sasrec train reads."""

    name: str
    users: int | None  # the first so many users (None: all 943)
    max_len: int  # 200: the paper's for MovieLens-1M
    d_model: int
    num_layers: int
    batch: int
    steps: int  # the most steps each model trains (early stopping usually ends it first)


PRESETS = {
    "fast": Preset("fast", users=60, max_len=20, d_model=16, num_layers=1, batch=64, steps=6),
    "full": Preset("full", users=None, max_len=200, d_model=64, num_layers=2, batch=64, steps=10_000),
}


def movielens_folder() -> Path:
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"MovieLens-100K comes from the recbole package's files: {INSTALL}")
    return Path(next(iter(spec.submodule_search_locations))) / "dataset_example" / "ml-100k"


def load_interactions(path) -> np.ndarray:
    """(user, item, timestamp) rows, int64 ``(M, 3)``, from ``u.data`` (tab-separated user, item,
    rating, timestamp), ``ratings.dat`` (``::``-separated) or RecBole's ``.inter`` (a typed
    header, then tab-separated columns).

    Raises:
        FileNotFoundError: no such file. ValueError: a line that does not parse (named)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    lines = path.read_text(encoding="latin-1").splitlines()
    columns = (0, 1, 3)
    if path.suffix == ".inter":
        header = lines[0].split("\t")
        names = [h.split(":")[0] for h in header]
        try:
            columns = (names.index("user_id"), names.index("item_id"), names.index("timestamp"))
        except ValueError:
            raise ValueError(f"{path}: the header must name user_id, item_id and timestamp, got {header}") from None
        lines = lines[1:]
    sep = "::" if "::" in (lines[0] if lines else "") else "\t"
    rows = []
    for number, line in enumerate(lines, 2 if path.suffix == ".inter" else 1):
        if not line.strip():
            continue
        parts = line.split(sep)
        try:
            rows.append([int(float(parts[c])) for c in columns])
        except (ValueError, IndexError):
            raise ValueError(f"{path}: line {number} is not user{sep}item{sep}rating{sep}timestamp: {line!r}") from None
    if not rows:
        raise ValueError(f"{path}: no interactions")
    return np.array(rows, dtype=np.int64)


def load_titles(path) -> dict[int, str]:
    """Item id -> title from RecBole's ``.item``, MovieLens' ``u.item`` (``|``) or ``movies.dat``."""
    path = Path(path)
    titles = {}
    raw = path.read_bytes()
    try:  # RecBole's files are UTF-8; GroupLens' own u.item and movies.dat are Latin-1
        lines = raw.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        lines = raw.decode("latin-1").splitlines()
    if path.suffix == ".item" and lines and ":token" in lines[0]:
        for line in lines[1:]:
            parts = line.split("\t")
            if len(parts) >= 3:
                titles[int(parts[0])] = f"{parts[1]} ({parts[2]})"
        return titles
    sep = "::" if path.name == "movies.dat" else "|"
    for line in lines:
        parts = line.split(sep)
        if len(parts) >= 2 and parts[0].strip().isdigit():
            titles[int(parts[0])] = parts[1]
    return titles


def sequences(interactions: np.ndarray) -> dict[int, np.ndarray]:
    """Each user's items in timestamp order (ties in file order), items renumbered 1..I."""
    order = np.lexsort((np.arange(len(interactions)), interactions[:, 2], interactions[:, 0]))
    rows = interactions[order]
    users = {}
    for user in np.unique(rows[:, 0]):
        users[int(user)] = rows[rows[:, 0] == user, 1]
    return users


def leave_one_out(users: dict[int, np.ndarray]):
    """(train history, validation target, test target) per user with at least 3 items."""
    return {u: (s[:-2], int(s[-2]), int(s[-1])) for u, s in users.items() if len(s) >= 3}


def left_pad(items, max_len: int) -> np.ndarray:
    row = np.zeros(max_len, dtype=np.int64)
    items = np.asarray(items)[-max_len:]
    if len(items):
        row[-len(items) :] = items
    return row


def sample_negatives(rng, num_items: int, seen: set, k: int, exclude=()) -> np.ndarray:
    """``k`` distinct items in 1..num_items that are not in ``seen`` nor ``exclude``."""
    blocked = set(seen) | set(exclude)
    pool = num_items - len(blocked & set(range(1, num_items + 1)))
    if pool < k:
        raise AppError(f"only {pool} items are left to sample {k} negatives from")
    out = set()
    while len(out) < k:
        for item in rng.integers(1, num_items + 1, 2 * k).tolist():
            if item not in blocked and item not in out:
                out.add(item)
                if len(out) == k:
                    break
    return np.array(sorted(out), dtype=np.int64)


def rank_metrics(target: np.ndarray, others: np.ndarray, k: int = 10) -> tuple[float, float]:
    """HR@k and NDCG@k of each row's ``target`` score among its ``others`` (ties count
    against the target; -inf entries are not candidates), averaged over the rows.

    Shape: target ``(N,)``, others ``(N, C)``."""
    hit, ndcg = per_user_rank_metrics(target, others, k)
    return float(hit.mean()), float(ndcg.mean())


def per_user_rank_metrics(target: np.ndarray, others: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Each row's hit (1.0 if the target ranks in the top ``k``) and NDCG@k (1/log2(rank + 2)
    on a hit, else 0).

    Shape: target ``(N,)``, others ``(N, C)`` -> two float ``(N,)``."""
    rank = (others >= target[:, None]).sum(1)
    hit = rank < k
    return hit.astype(np.float64), np.where(hit, 1.0 / np.log2(rank + 2), 0.0)


def paired_difference(a: np.ndarray, b: np.ndarray, rng, resamples: int = 2000) -> dict:
    """Mean of ``a - b`` over users and its 95% paired bootstrap interval (users drawn with
    replacement, both models' values for a user kept together; Efron and Tibshirani, 1993).

    Shape: a, b ``(N,)``."""
    d = a - b
    means = d[rng.integers(0, len(d), (resamples, len(d)))].mean(1)
    low, high = np.percentile(means, [2.5, 97.5])
    return {"mean": round(float(d.mean()), 4), "ci95": [round(float(low), 4), round(float(high), 4)]}


def _data(seed: int, count: int | None):
    """(split by user, number of items, titles) of MovieLens-100K's first ``count`` users (None: all)."""
    folder = movielens_folder()
    interactions = load_interactions(folder / "ml-100k.inter")
    users = sequences(interactions)
    items = np.unique(interactions[:, 1])
    remap = {int(old): new for new, old in enumerate(items, 1)}
    users = {u: np.array([remap[int(i)] for i in s]) for u, s in users.items()}
    users = dict(list(users.items())[:count])
    split = leave_one_out(users)
    raw_titles = load_titles(folder / "ml-100k.item")
    titles = {new: raw_titles.get(old, f"item {old}") for old, new in remap.items()}
    return split, len(items), titles


def validation_batch(split: dict, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Every user's (sorted by id) training history, and the validation item as the target of
    its last position (the other positions have none: 0).

    Shape: two integer ``(users, max_len)``."""
    users = sorted(split)
    inputs = np.stack([left_pad(split[u][0], max_len) for u in users])
    targets = np.zeros_like(inputs)
    targets[:, -1] = [split[u][1] for u in users]
    return inputs, targets


def evaluation_inputs(split: dict, max_len: int) -> tuple[np.ndarray, np.ndarray, list[set]]:
    """Every user's (sorted by id) training history plus the validation item, the test item,
    and the items the user has rated before it (never candidates).

    Shape: integer ``(users, max_len)``, integer ``(users,)``, and a list of sets."""
    users = sorted(split)
    seen = [np.append(split[u][0], split[u][1]) for u in users]
    return (
        np.stack([left_pad(s, max_len) for s in seen]),
        np.array([split[u][2] for u in users]),
        [set(s.tolist()) for s in seen],
    )


class NextItemScores(nf.nn.Module):
    """A recommender's score of every item as the next one after each history: what ``predict``
    and ``evaluate`` rank (and ONNX export writes)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, seq):
        """Shape: ``seq`` integer ``(N, max_len)``, left-padded with 0 -> ``(N, num_items + 1)``
        (column 0 the padding id)."""
        return self.model.score(self.model(seq)[:, -1])


def _all_scores(model, rows: np.ndarray) -> np.ndarray:
    scores = NextItemScores(model)
    with nf.no_grad():
        return np.concatenate([scores(rows[i : i + 256]).numpy() for i in range(0, len(rows), 256)])


def _per_user_metrics(full: dict, candidates, history, targets) -> dict:
    """model -> protocol (100 sampled negatives, the full catalogue) -> metrics, each per user."""
    n = len(targets)
    per_user = {}  # model -> protocol -> metric -> (users,)
    for name, scores in full.items():
        sampled = np.take_along_axis(scores, candidates, axis=1)
        others = scores.copy()  # the whole catalogue but padding, the user's history and the target
        others[:, 0] = -np.inf
        for r, h in enumerate(history):
            others[r, list(h)] = -np.inf
        others[np.arange(n), targets] = -np.inf
        per_user[name] = {
            "sampled_100": per_user_rank_metrics(sampled[:, 0], sampled[:, 1:]),
            "full_catalogue": per_user_rank_metrics(scores[np.arange(n), targets], others),
        }
    return per_user


def _leads(per_user: dict, metrics, boot) -> dict:
    """SASRec minus each baseline, per protocol and metric, with a paired bootstrap interval."""
    # is SASRec's lead more than the luck of which users there are? (a paired bootstrap; it
    # does not cover other training seeds or another draw of the 100 negatives)
    return {
        f"sasrec_minus_{b}": {
            p: {m: paired_difference(per_user["sasrec"][p][i], per_user[b][p][i], boot) for i, m in enumerate(metrics)}
            for p in per_user[b]
        }
        for b in ("lstm", "most_popular")
    }


def _config(p: Preset, num_items: int) -> SASRecConfig:
    """SASRec's settings for a preset (the LSTM baseline reads the same config)."""
    # dropout 0.5: the paper's setting for its sparser data sets; MovieLens-100K is small. Of
    # 0.2 and 0.5, both models score a higher validation NDCG@10 (full catalogue) with 0.5.
    # SASRec's 2 heads, feed-forward width 4 * d_model and gelu are RecBole 1.2.1's SASRec
    # defaults, chosen over the paper's 1 head, width d_model and relu by the same
    # validation NDCG@10 (README)
    return SASRecConfig(
        num_items=num_items,
        max_len=p.max_len,
        d_model=p.d_model,
        nhead=2,
        num_layers=p.num_layers,
        dropout=0.5,
        dim_feedforward=4 * p.d_model,
        activation="gelu",
    )


def _window_batches(split: dict, L: int, batch: int):
    """The training batches: ``batches(rng) -> (inputs, targets)``, each ``(batch, L)``."""
    users = sorted(split)
    histories = {u: split[u][0] for u in users}

    def batches(rng):
        # each row a window of a user's training history ending at a random item (the last
        # with probability 1/2): every part of a long history is trained on, not only its newest
        rows = rng.integers(0, len(users), batch)
        inputs, targets = np.zeros((len(rows), L), np.int64), np.zeros((len(rows), L), np.int64)
        for r, row in enumerate(rows):
            h = histories[users[row]]
            end = len(h) if rng.random() < 0.5 or len(h) <= L else int(rng.integers(L, len(h) + 1))
            inputs[r], targets[r] = left_pad(h[: end - 1], L), left_pad(h[1:end], L)
        return inputs, targets

    return batches


class Recommend(App):
    name = "sasrec"
    summary = "SASRec: the next movie a user will rate"
    data = DATA
    licence = "MovieLens licence: no redistribution (read from the installed package)"
    metric = "NDCG@10 (100 negatives)"
    baseline = "most popular"
    inputs = "--user ID"
    takes_user = True
    presets = PRESETS

    def fit_models(self, out: Path, p: Preset, seed: int, progress: bool) -> tuple[dict, dict]:
        split, num_items, _ = _data(seed, p.users)
        config = _config(p, num_items)
        batches = _window_batches(split, config.max_len, p.batch)
        val = validation_batch(split, config.max_len)

        def loss_fn(m, batch):
            return softmax_loss(m, *batch)

        options = {  # each model keeps the weights of its lowest validation loss
            "betas": (0.9, 0.98),
            "warmup": False,
            "count": lambda b: int((b[1] != 0).sum()),
            "unit": "items",
            "val_batches": lambda rng: val,
            "eval_every": min(EVAL_EVERY, max(p.steps // 3, 1)),
            "patience": PATIENCE,
        }
        fitted, models = {}, {}
        for name, make in MODELS.items():
            nf.manual_seed(seed)
            model = make(config)
            fitted[name] = fit_adamw(model, loss_fn, batches, out, name, p.steps, seed, progress, 1e-3, 0.0, **options)
            models[f"{name}.safetensors"] = model
        split = {"preset": p.name, "seed": seed, "users": len(split), "items": num_items}
        self.save_models(out / "model", config.to_dict(), models, split)
        return split, {
            "max_steps": p.steps,
            "train_seconds": {k: f.seconds for k, f in fitted.items()},
            "steps_trained": {k: f.steps for k, f in fitted.items()},
            "kept_step": {k: f.kept_step for k, f in fitted.items()},
            "val_loss": {k: round(f.val_loss, 4) for k, f in fitted.items()},
        }

    def _models(self, out: Path, names=("sasrec", "lstm")):
        """The trained models named (eval mode) and their config; only their files are read."""
        folder = out / "model"
        info, path = self.model_folder(folder, only=[f"{name}.safetensors" for name in names])
        c = self.config(SASRecConfig, info, path)
        sizes = {  # checked against the files before anything of the config's size is allocated
            "sasrec": {
                "item_emb.weight": (c.num_items + 1, c.d_model),
                "pos_emb.weight": (c.max_len, c.d_model),
                f"encoder.layers.{c.num_layers - 1}.linear1.weight": (c.dim_feedforward, c.d_model),
            },
            "lstm": {"item_emb.weight": (c.num_items + 1, c.d_model), "lstm.weight_hh_l0": (4 * c.d_model, c.d_model)},
        }
        for name in names:
            self.check_sizes(folder / f"{name}.safetensors", sizes[name])
        return {name: self.load_weights(MODELS[name](c), folder / f"{name}.safetensors") for name in names}, c

    def evaluate(self, out: Path) -> dict:
        meta = self.read_split(out)
        split, num_items, _ = _data(meta["seed"], self.preset_of(meta).users)
        models, config = self._models(out)
        rows, targets, history = evaluation_inputs(split, config.max_len)
        rng = np.random.default_rng(meta["seed"] + 7)
        candidates = [
            np.concatenate([[t], sample_negatives(rng, num_items, h, 100, [t])]) for t, h in zip(targets, history)
        ]
        full = {name: _all_scores(m, rows) for name, m in models.items()}
        self.check_output(list(full.values()), "scores", out / "model")
        popularity = np.zeros(num_items + 1)
        np.add.at(popularity, np.concatenate([split[u][0] for u in sorted(split)]), 1)
        full["most_popular"] = np.tile(popularity + 1e-6 * np.arange(num_items + 1) / num_items, (len(split), 1))
        per_user = _per_user_metrics(full, np.stack(candidates), history, targets)
        metrics = ("HR@10", "NDCG@10")
        results = {
            name: {
                p: {m: round(float(v.mean()), 4) for m, v in zip(metrics, values)} for p, values in protocols.items()
            }
            for name, protocols in per_user.items()
        }
        lead = _leads(per_user, metrics, np.random.default_rng(meta["seed"] + 11))
        beats = all(
            results["sasrec"][p][m] > results[b][p][m]
            for b in ("most_popular", "lstm")
            for p in ("sampled_100", "full_catalogue")
            for m in ("HR@10", "NDCG@10")
        )
        trained = self.read_json(out / "train.json")
        return self.scored(
            out,
            meta,
            "NDCG@10, 100 sampled negatives (test: each user's last item)",
            results["sasrec"]["sampled_100"]["NDCG@10"],
            results["most_popular"]["sampled_100"]["NDCG@10"],
            len(split),
            models=results,
            sasrec_beats_both_baselines_everywhere=beats,
            differences=lead,
            lead_over_lstm_interval_above_zero_everywhere=all(
                d["ci95"][0] > 0 for p in lead["sasrec_minus_lstm"].values() for d in p.values()
            ),
            differences_note="SASRec minus each baseline per user, mean and 95% paired bootstrap interval over "
            "users (one training seed, one draw of negatives; 8 intervals, not corrected for multiplicity)",
            paper_for_context=PAPER,
            steps_trained=trained.get("steps_trained"),
            kept_step=trained.get("kept_step"),
        )

    def predict(self, out: Path, inputs: list[str]) -> list[str]:
        if len(inputs) != 1:
            raise AppError("sasrec: predict takes --user ID")
        try:
            user = int(inputs[0])
        except ValueError:
            raise AppError(f"sasrec: --user must be an integer id, got {inputs[0]!r}") from None
        meta = self.read_split(out)
        split, num_items, titles = _data(meta["seed"], self.preset_of(meta).users)
        if user not in split:
            raise AppError(f"sasrec: no user {user} (ids {min(split)} .. {max(split)})")
        models, config = self._models(out, names=("sasrec",))
        history = np.concatenate([split[user][0], [split[user][1], split[user][2]]])
        scores = _all_scores(models["sasrec"], left_pad(history, config.max_len)[None])[0]
        self.check_output(scores, "scores", out / "model")
        scores[0] = -np.inf
        scores[history] = -np.inf
        top = np.argsort(-scores)[:10]
        lines = [f"user {user}: {len(history)} rated; most recent:"]
        lines += [f"  {titles[i]}" for i in history[-5:][::-1]]
        lines.append("top 10 next (SASRec score):")
        lines += [f"  {rank:>2}. {titles[i]}  {scores[i]:.3f}" for rank, i in enumerate(top, 1)]
        return lines

    def onnx_models(self, out: Path) -> list[OnnxModel]:
        """SASRec and its LSTM baseline as ``NextItemScores``: ``history`` ``(batch, max_len)``
        item ids, left-padded with 0 -> ``scores`` ``(batch, num_items + 1)``."""
        models, config = self._models(out)
        seq = np.random.default_rng(0).integers(1, config.num_items + 1, size=(2, config.max_len))
        seq[:, : config.max_len // 2] = 0  # left padding, as the histories predict reads
        axes = {"history": {0: "batch"}, "scores": {0: "batch"}}
        return [
            OnnxModel(name, NextItemScores(model).eval(), (seq,), ["history"], ["scores"], axes)
            for name, model in models.items()
        ]


APPS = [Recommend()]
