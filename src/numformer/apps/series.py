"""Forecasting (app ``forecast``) and anomaly detection (app ``anomaly``) on real series.

Data: two public-domain series shipped inside the ``statsmodels`` wheel (read from its files;
``statsmodels`` itself is never imported, so it is installed with ``--no-deps``):
- ``co2``: weekly CO2 at Mauna Loa, 1958-2001 (2,284 weeks, 59 missing), season 52;
- ``elec_equip``: monthly euro-area electrical equipment orders, 1995-2016 (257 months), season 12.

Forecast: the last ``HORIZON`` steps of each series are the test (never seen in training or in
the scaling); a model reads the ``WINDOW`` steps before an origin and forecasts the next
``HORIZON`` at once. Inputs per step: the value minus the window's last value, divided by the
series' scale (the mean absolute first difference over the training part), a missing-value
flag (missing values are carried forward from the last observation, never filled from the
future), and the season's phase as sin/cos. Scores: MAE and MASE (MAE over the in-sample
seasonal naive MAE) on the observed test points. Baselines: last value, seasonal naive, an LSTM.

Anomaly: a ``TransformerAutoencoder`` over 32-step windows of co2, trained on the first 70%;
spikes, level shifts and variance bursts are injected at seeded positions into the rest, half
for choosing the threshold (validation), half for the test. A point's score is its mean
reconstruction error over the windows that hold it. Baseline: a rolling z-score (26 weeks
before the point), its threshold chosen on the same validation half. Scores: point-level
precision, recall and F1.
"""

from __future__ import annotations

import datetime
import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import numformer as nf
from numformer.apps.app import App, AppError, OnnxModel, fit_adamw, pyplot, save_figure
from numformer.models.timeseries import LSTMForecaster, SeriesConfig, TimeSeriesTransformer, TransformerAutoencoder

SERIES = {
    "co2": {"season": 52, "window": 156, "horizon": 104},
    "elec_equip": {"season": 12, "window": 48, "horizon": 24},
}
DATA = "statsmodels 0.14.6 datasets (public domain): Mauna Loa CO2 weekly, euro-area electrical equipment monthly"
INSTALL = "pip install --no-deps statsmodels==0.14.6"
FORECASTERS = {"transformer": TimeSeriesTransformer, "lstm": LSTMForecaster}  # per series, one file each


def load_series(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(values float64 with NaN for missing, season phase in [0, 1)) of a statsmodels series.

    Raises:
        FileNotFoundError: statsmodels' files are not installed (with the pip command)."""
    spec = importlib.util.find_spec("statsmodels")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the {name} series comes from the statsmodels package: {INSTALL}")
    folder = Path(next(iter(spec.submodule_search_locations))) / "datasets" / name
    lines = (folder / f"{name}.csv").read_text().strip().splitlines()[1:]
    values, phase = [], []
    for line in lines:
        date, value = line.split(",")
        values.append(float(value) if value.strip() else np.nan)
        if name == "co2":
            d = datetime.datetime.strptime(date, "%Y%m%d")
            phase.append((d.timetuple().tm_yday - 1) / 365.25)
        else:
            d = datetime.datetime.strptime(date, "%b-%d-%Y")
            phase.append((d.month - 1) / 12)
    return np.array(values), np.array(phase)


def carry_forward(values: np.ndarray) -> np.ndarray:
    """Each missing value replaced by the last observed one before it (the first by the first
    observed): uses nothing from later steps."""
    observed = np.flatnonzero(~np.isnan(values))
    if observed.size == 0:
        raise AppError("the series has no observed value")
    index = np.maximum.accumulate(np.where(~np.isnan(values), np.arange(len(values)), -1))
    return np.where(index >= 0, values[np.maximum(index, 0)], values[observed[0]])


def features(values: np.ndarray, phase: np.ndarray, end: int, window: int, scale: float) -> tuple[np.ndarray, float]:
    """The model's input for the window ending at ``end`` (inclusive) and its level.

    Shape: -> ``(window, 4)``: (value - level) / scale, missing flag, sin, cos of the phase.
    Reads ``values[end - window + 1 .. end]`` only."""
    start = end - window + 1
    if start < 0:
        raise AppError(f"a window of {window} steps needs {window} steps of history, got {end + 1}")
    raw = values[start : end + 1]
    filled = carry_forward(raw)
    level = filled[-1]
    angle = 2 * np.pi * phase[start : end + 1]
    x = np.stack([(filled - level) / scale, np.isnan(raw).astype(float), np.sin(angle), np.cos(angle)], axis=1)
    x32 = x.astype(np.float32)
    if not np.isfinite(x32).all():  # the model computes in float32: past ~3.4e38 a value is inf there
        raise AppError(
            f"the window ending at step {end + 1} holds values too far from its last one for the model's float32 "
            f"arithmetic (|value - level| / scale up to {np.nanmax(np.abs(x[:, 0])):.3g})"
        )
    return x32, float(level)


def seasonal_naive(history: np.ndarray, horizon: int, season: int) -> np.ndarray:
    filled = carry_forward(history)
    last = filled[-season:]
    return np.array([last[h % season] for h in range(horizon)])


def _scale(train: np.ndarray) -> float:
    filled = carry_forward(train)
    return float(np.mean(np.abs(np.diff(filled)))) or 1.0


def _mase_denominator(train: np.ndarray, season: int) -> float:
    filled = carry_forward(train)
    return float(np.nanmean(np.abs(filled[season:] - filled[:-season])))


def anchor(values, end: int, window: int, horizon: int, season: int) -> np.ndarray:
    """What the models correct: the seasonal-naive forecast from the window ending at ``end``
    (the last season of the window repeated), so a model that outputs zeros is the baseline and
    training only has to learn the departures from it (trend, changing seasons)."""
    return seasonal_naive(values[end - window + 1 : end + 1], horizon, season)


def _training_windows(values, phase, n_train: int, scale: float, series: dict, last: int | None):
    """The training windows of a series (``SERIES``' settings), the newest ``last`` only when
    given: inputs, targets (the departures from the anchor, in scales) and the mask of the
    observed targets."""
    window, horizon, season = series["window"], series["horizon"], series["season"]
    xs, ys, masks = [], [], []
    first = window - 1 if last is None else max(window - 1, n_train - horizon - last)
    for end in range(first, n_train - horizon):
        x, _ = features(values, phase, end, window, scale)
        future = values[end + 1 : end + 1 + horizon]
        xs.append(x)
        ys.append(np.nan_to_num((future - anchor(values, end, window, horizon, season)) / scale))
        masks.append(~np.isnan(future))
    return np.stack(xs), np.stack(ys).astype(np.float32), np.stack(masks).astype(np.float32)


def _masked_mse(m, batch):
    x, y, mask = batch
    err = (m(x) - nf.tensor(y)) * nf.tensor(mask)
    return (err * err).sum() / max(float(mask.sum()), 1.0)


@dataclass(frozen=True)
class Size:
    """A series model's size and dropout."""

    d_model: int
    nhead: int
    num_layers: int
    dim_feedforward: int
    dropout: float = 0.1


@dataclass(frozen=True)
class ForecastPreset:
    """Every setting a forecast train reads, per series: the model's size and its steps."""

    name: str
    last_windows: int | None  # train on the newest so many windows only (None: all)
    co2: Size
    co2_steps: int
    elec_equip: Size
    elec_equip_steps: int


# co2 has 2,000 training windows; elec_equip 162, where a smaller model generalises better
# (measured: MASE 0.37-0.44 at d_model 32 against 0.75-0.90 at 64).
_TINY = Size(d_model=16, nhead=2, num_layers=1, dim_feedforward=32)
FORECAST = {
    "fast": ForecastPreset("fast", 64, _TINY, 5, _TINY, 5),
    "full": ForecastPreset("full", None, Size(64, 4, 2, 128, 0.1), 800, Size(32, 4, 2, 64, 0.2), 300),
}


def forecast(model, values, phase, end: int, window: int, scale: float, season: int) -> np.ndarray:
    """The model's forecast after step ``end`` (inclusive), in the series' units: the
    seasonal-naive anchor plus the model's correction. Reads only ``values[: end + 1]``.

    Raises:
        AppError: the forecast is not finite (inputs beyond what the model can take)."""
    x, _ = features(values, phase, end, window, scale)
    with nf.no_grad():
        correction = model(x[None]).numpy()[0].astype(np.float64)
    pred = anchor(values, end, window, len(correction), season) + scale * correction
    if not np.isfinite(pred).all():
        raise AppError(
            f"the forecast after step {end + 1} is not finite: the model overflows float32 on this window "
            "(values far outside the range it was trained on)"
        )
    return pred


class Forecast(App):
    name = "forecast"
    summary = "TimeSeriesTransformer: direct multi-step forecasts"
    data = DATA
    licence = "public domain (statsmodels datasets)"
    metric = "mean MASE (lower is better)"
    baseline = "seasonal naive"
    inputs = "SERIES [FILE]"
    presets = FORECAST

    def fit_models(self, out: Path, p: ForecastPreset, seed: int, progress: bool) -> tuple[dict, dict]:
        seconds, info, models = {}, {}, {}
        for name, s in SERIES.items():
            values, phase = load_series(name)
            n_train = len(values) - s["horizon"]
            scale = _scale(values[:n_train])
            x, y, mask = _training_windows(values, phase, n_train, scale, s, p.last_windows)

            def batches(rng, x=x, y=y, mask=mask):
                rows = rng.integers(0, len(x), 32)
                return x[rows], y[rows], mask[rows]

            size, n = getattr(p, name), getattr(p, f"{name}_steps")
            config = SeriesConfig(n_features=4, window=s["window"], horizon=s["horizon"], **size.__dict__)
            for kind, make in FORECASTERS.items():
                nf.manual_seed(seed)
                model = make(config)
                fitted = fit_adamw(model, _masked_mse, batches, out, f"{name}-{kind}", n, seed, progress, 1e-3)
                seconds[f"{name}_{kind}"] = fitted.seconds
                models[f"{name}/{kind}.safetensors"] = model
            info[name] = {"scale": scale, "n_train": n_train, "config": config.to_dict(), "steps": n}
        split = {"preset": p.name, "seed": seed, "horizons": {k: v["horizon"] for k, v in SERIES.items()}}
        self.save_models(out / "model", info, models, split)
        return split, {"train_seconds": seconds}

    def _models(self, out: Path, name: str):
        saved, path = self.model_folder(out / "model")
        info = saved[name]
        config = self.config(SeriesConfig, info["config"], path)
        weights = path.parent / name
        return {
            kind: self.load_weights(make(config), weights / f"{kind}.safetensors") for kind, make in FORECASTERS.items()
        }, info

    def evaluate(self, out: Path) -> dict:
        split = self.read_split(out)
        per_series, figures = {}, []
        for name, s in SERIES.items():
            values, phase = load_series(name)
            models, info = self._models(out, name)
            n_train, H = info["n_train"], s["horizon"]
            truth = values[n_train:]
            observed = ~np.isnan(truth)
            end, window, scale, season = n_train - 1, s["window"], info["scale"], s["season"]
            preds = {
                **{k: forecast(model, values, phase, end, window, scale, season) for k, model in models.items()},
                "seasonal_naive": seasonal_naive(values[:n_train], H, season),
                "last_value": np.full(H, carry_forward(values[:n_train])[-1]),
            }
            denom = _mase_denominator(values[:n_train], season)
            mae = {k: float(np.mean(np.abs(p[observed] - truth[observed]))) for k, p in preds.items()}
            per_series[name] = {
                "MAE": {k: round(v, 4) for k, v in mae.items()},
                "MASE": {k: round(v / denom, 4) for k, v in mae.items()},
                "n_test": int(observed.sum()),
            }
            figures.append(_plot_forecast(out / "figures", name, values, n_train, preds, season))
        names = per_series["co2"]["MASE"]
        mean = {k: round(float(np.mean([v["MASE"][k] for v in per_series.values()])), 4) for k in names}
        return self.scored(
            out,
            split,
            "mean MASE over the series (test horizon; lower is better)",
            mean["transformer"],
            mean["seasonal_naive"],
            sum(v["n_test"] for v in per_series.values()),
            mean_MASE=mean,
            series=per_series,
            beats_seasonal_naive_on_every_series=all(
                v["MASE"]["transformer"] < v["MASE"]["seasonal_naive"] for v in per_series.values()
            ),
            figures=figures,
        )

    def predict(self, out: Path, inputs: list[str]) -> list[str]:
        """``SERIES``: the forecast after the whole series; ``SERIES FILE``: after the values in
        FILE (one per line, an empty line for a missing value, at least the model's window)."""
        name = inputs[0]
        if name not in SERIES:
            raise AppError(f"forecast: the first input names a series ({', '.join(SERIES)}), got {name!r}")
        if len(inputs) > 2:
            raise AppError("forecast: predict takes SERIES [FILE]")
        s = SERIES[name]
        models, info = self._models(out, name)
        values, phase = load_series(name)
        if len(inputs) == 2:
            values = _read_values(inputs[1], s["window"])
            step = 1 / s["season"]
            phase = (phase[-1] + step * (np.arange(len(values)) - len(values) + 1)) % 1.0
        end = len(values) - 1
        pred = forecast(models["transformer"], values, phase, end, s["window"], info["scale"], s["season"])
        return [f"{h + 1}\t{v:.4f}" for h, v in enumerate(pred)]

    def onnx_models(self, out: Path) -> list[OnnxModel]:
        """Per series, the transformer and the LSTM (``co2-transformer``, ...): ``windows``
        ``(batch, window, 4)`` (``features``' inputs) -> ``forecast`` ``(batch, horizon)``, the
        correction to the seasonal-naive anchor in units of the series' scale."""
        found = []
        for name in SERIES:
            models, _ = self._models(out, name)
            for kind, model in models.items():
                found.append(_window_model(f"{name}-{kind}", model, "forecast"))
        return found


def _read_values(path: str, window: int) -> np.ndarray:
    """The values of a file, one per line (an empty line: missing), at least ``window`` of them
    with some observed in the last ``window``.

    Raises:
        AppError: a line that is not a number, a value that is not finite, or too few values."""
    values = read_series(path, missing=True)
    finite = np.isfinite(values)
    if len(values) < window or not finite[-window:].any():
        raise AppError(
            f"{path}: need at least {window} values with some observed in the last {window}, "
            f"got {len(values)} ({int(finite.sum())} observed)"
        )
    return values


FLOAT32_MAX = float(np.finfo(np.float32).max)


def read_series(path: str, missing: bool) -> np.ndarray:
    """The values of a file (``-``: standard input), one per line: numbers that float32, the dtype the models compute
    in, can hold (|x| <= 3.4e38); an empty line is a missing value (NaN) with ``missing``, else
    it is skipped.

    Raises:
        AppError: a line that is not such a number, naming the file, the line and the value."""
    from numformer.models.sentence import read_lines

    values = []
    for number, line in enumerate(read_lines("/dev/stdin" if path == "-" else path), 1):
        if not line.strip():
            if missing:
                values.append(np.nan)
            continue
        try:
            value = float(line)
        except ValueError:
            value = None
        if value is None or not abs(value) <= FLOAT32_MAX:  # NaN and inf fail it too
            what = "a number or empty"
            if value is not None and math.isfinite(value):
                what = "within float32's range (|x| <= 3.4e38), the dtype the model computes in"
            raise AppError(f"{path}: line {number} holds {line.strip()[:40]!r}; every value must be {what}")
        values.append(value)
    return np.array(values, dtype=np.float64)


def _plot_forecast(folder: Path, name: str, values, n_train: int, preds: dict, season: int) -> str:
    plt = pyplot(folder)
    start = max(0, n_train - 3 * season)
    t = np.arange(len(values))
    fig, ax = plt.subplots(figsize=(8, 3.2))
    ax.plot(t[start:n_train], values[start:n_train], color="k", lw=1, label="history")
    ax.plot(t[n_train:], values[n_train:], color="k", lw=1, ls=":", label="truth")
    styles = {"transformer": "C3", "lstm": "C0", "seasonal_naive": "C2"}
    for k, color in styles.items():
        ax.plot(t[n_train:], preds[k], color=color, lw=1.2, label=k.replace("_", " "))
    ax.axvline(n_train - 0.5, color="grey", lw=0.6)
    ax.set(title=f"{name}: forecast of the test horizon", xlabel="step")
    ax.legend(fontsize=7, ncol=5, loc="upper left")
    return save_figure(fig, folder / f"forecast_{name}.png")


# --- anomaly detection -----------------------------------------------------------------------
AE_WINDOW, ZSCORE_WINDOW = 32, 26


def inject(values: np.ndarray, rng, scale: float, count: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` anomalies at random, non-overlapping places: a spike (one point, 6-10 scales),
    a level shift (8-20 points moved by 4-6 scales) or a variance burst (12-24 points with
    noise of 3 scales). Returns (series, labels)."""
    x, labels = values.copy(), np.zeros(len(values), dtype=bool)
    for _ in range(count):
        for _attempt in range(50):
            kind = rng.integers(3)
            length = 1 if kind == 0 else int(rng.integers(8, 21) if kind == 1 else rng.integers(12, 25))
            start = int(rng.integers(AE_WINDOW, len(x) - length - 1))
            if not labels[max(0, start - 10) : start + length + 10].any():
                break
        sign = rng.choice([-1.0, 1.0])
        if kind == 0:
            x[start] += sign * rng.uniform(6, 10) * scale
        elif kind == 1:
            x[start : start + length] += sign * rng.uniform(4, 6) * scale
        else:
            x[start : start + length] += rng.normal(0, 3 * scale, length)
        labels[start : start + length] = True
    return x, labels


def _windows(values: np.ndarray, phase: np.ndarray, scale: float) -> np.ndarray:
    """Every AE_WINDOW-step window (stride 1), the value centred on the window's mean."""
    L = AE_WINDOW
    idx = np.arange(len(values) - L + 1)[:, None] + np.arange(L)[None]
    v = values[idx]
    angle = 2 * np.pi * phase[idx]
    x = np.stack([(v - v.mean(1, keepdims=True)) / scale, np.zeros_like(v), np.sin(angle), np.cos(angle)], axis=-1)
    return x.astype(np.float32)


def ae_scores(model, values, phase, scale) -> np.ndarray:
    """Each point's mean absolute reconstruction error over the windows that hold it, the
    windows made and scored 256 at a time (a long series never holds all its windows at once).

    Raises:
        AppError: a window's values, centred and scaled, are beyond float32 (the model's dtype)."""
    total, count = np.zeros(len(values)), np.zeros(len(values))
    chunk = 256
    for start in range(0, len(values) - AE_WINDOW + 1, chunk):
        stop = min(start + chunk + AE_WINDOW - 1, len(values))
        x = _windows(values[start:stop], phase[start:stop], scale)
        if not np.isfinite(x).all():
            raise AppError(
                f"the values from step {start + 1} to {stop} are too far from their window's mean for the "
                f"model's float32 arithmetic (it was trained on steps of about {scale:.3g})"
            )
        with nf.no_grad():
            err = np.abs(model(x).array - x[:, :, 0])
        for j in range(AE_WINDOW):
            total[start + j : start + j + len(x)] += err[:, j]
            count[start + j : start + j + len(x)] += 1
    return total / count


def zscore_scores(values: np.ndarray) -> np.ndarray:
    """|x_t - mean| / std over the ZSCORE_WINDOW points before t (0 where there are fewer)."""
    w = ZSCORE_WINDOW
    out = np.zeros(len(values))
    for t in range(w, len(values)):
        past = values[t - w : t]
        out[t] = abs(values[t] - past.mean()) / (past.std() + 1e-9)
    return out


def _prf(predicted, labels) -> dict:
    tp = float((predicted & labels).sum())
    precision = tp / max(predicted.sum(), 1)
    recall = tp / max(labels.sum(), 1)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4)}


def best_threshold(scores, labels) -> float:
    """The threshold on ``scores`` with the best F1 on ``labels`` (the validation half)."""
    candidates = np.unique(np.quantile(scores, np.linspace(0.5, 0.999, 300)))
    return float(max(candidates, key=lambda th: _prf(scores >= th, labels)["f1"]))


def _anomaly_data(seed: int):
    values, phase = load_series("co2")
    values = carry_forward(values)
    n_train = int(0.7 * len(values))
    scale = _scale(values[:n_train])
    rest = len(values) - n_train
    mid = n_train + rest // 2
    rng = np.random.default_rng(seed)
    val, val_labels = inject(values[n_train - AE_WINDOW : mid], rng, scale, 8)
    test, test_labels = inject(values[mid - AE_WINDOW :], rng, scale, 8)
    val_labels[:AE_WINDOW] = test_labels[:AE_WINDOW] = False  # the context before each half is clean
    return {
        "values": values,
        "phase": phase,
        "n_train": n_train,
        "scale": scale,
        "val": (val, phase[n_train - AE_WINDOW : mid], val_labels),
        "test": (test, phase[mid - AE_WINDOW :], test_labels),
    }


@dataclass(frozen=True)
class AnomalyPreset:
    """Every setting an anomaly train reads."""

    name: str
    size: Size
    steps: int


ANOMALY = {
    "fast": AnomalyPreset("fast", _TINY, 5),
    "full": AnomalyPreset("full", Size(d_model=64, nhead=4, num_layers=2, dim_feedforward=128), 2000),
}


def _plot_anomaly(folder: Path, values, labels, scores, threshold) -> str:
    plt = pyplot(folder)
    t = np.arange(len(values))
    flagged = scores >= threshold
    fig, (a, b) = plt.subplots(2, 1, figsize=(9, 4.5), sharex=True)
    a.plot(t, values, color="k", lw=0.8)
    a.scatter(t[labels], values[labels], s=10, color="C1", label="injected")
    a.scatter(t[flagged], values[flagged], s=22, facecolors="none", edgecolors="C3", label="flagged")
    a.legend(fontsize=7)
    a.set(title="co2 test half: injected anomalies and the autoencoder's flags", ylabel="ppm")
    b.plot(t, scores, color="C0", lw=0.8)
    b.axhline(threshold, color="C3", lw=0.8, ls="--")
    b.set(ylabel="reconstruction error", xlabel="week")
    return save_figure(fig, folder / "anomaly_scores.png")


class Anomaly(App):
    name = "anomaly"
    summary = "TransformerAutoencoder: anomalous points in a series"
    data = "statsmodels co2 with seeded, injected anomalies"
    licence = "public domain (statsmodels datasets)"
    metric = "point F1"
    baseline = "rolling z-score"
    inputs = "FILE (one value per line; - for standard input)"
    presets = ANOMALY

    def fit_models(self, out: Path, p: AnomalyPreset, seed: int, progress: bool) -> tuple[dict, dict]:
        d = _anomaly_data(seed)
        x = _windows(d["values"][: d["n_train"]], d["phase"][: d["n_train"]], d["scale"])
        config = SeriesConfig(n_features=4, window=AE_WINDOW, latent=8, **p.size.__dict__)
        nf.manual_seed(seed)
        model = TransformerAutoencoder(config)

        def batches(rng):
            return x[rng.integers(0, len(x), 64)]

        def loss_fn(m, batch):
            err = m(batch) - nf.tensor(batch[:, :, 0])
            return (err * err).mean()

        seconds = fit_adamw(model, loss_fn, batches, out, "autoencoder", p.steps, seed, progress, 1e-3).seconds
        split = {"preset": p.name, "seed": seed, "n_train": d["n_train"]}
        self.save_models(
            out / "model", {"config": config.to_dict(), "scale": d["scale"]}, {"model.safetensors": model}, split
        )
        return split, {"train_seconds": {"autoencoder": seconds}, "steps": p.steps}

    def _autoencoder(self, out: Path):
        info, path = self.model_folder(out / "model")
        model = TransformerAutoencoder(self.config(SeriesConfig, info["config"], path))
        return self.load_weights(model, path.parent / "model.safetensors"), info

    def evaluate(self, out: Path) -> dict:
        split = self.read_split(out)
        d = _anomaly_data(split["seed"])
        model, info = self._autoencoder(out)
        results, thresholds = {}, {}
        for name, score in (
            ("autoencoder", lambda v, p: ae_scores(model, v, p, info["scale"])),
            ("rolling_zscore", lambda v, p: zscore_scores(v)),
        ):
            val_scores = score(*d["val"][:2])
            self.check_output(val_scores, "reconstruction errors", out / "model")
            th = best_threshold(val_scores[AE_WINDOW:], d["val"][2][AE_WINDOW:])
            test_scores = score(*d["test"][:2])
            results[name] = _prf(test_scores[AE_WINDOW:] >= th, d["test"][2][AE_WINDOW:])
            thresholds[name] = th
            if name == "autoencoder":
                figure = _plot_anomaly(out / "figures", d["test"][0], d["test"][2], test_scores, th)
        return self.scored(
            out,
            split,
            "point-level F1 (test half)",
            results["autoencoder"]["f1"],
            results["rolling_zscore"]["f1"],
            int(len(d["test"][0]) - AE_WINDOW),
            data="statsmodels 0.14.6 co2 (public domain), with seeded spikes, level shifts and variance bursts",
            detectors=results,
            thresholds=thresholds,
            anomalous_points=int(d["test"][2].sum()),
            figures=[figure],
        )

    def predict(self, out: Path, inputs: list[str]) -> list[str]:
        """``FILE``: flag the points of a series (one value per line) whose reconstruction error
        passes the validation threshold measured by the last ``eval``."""
        if len(inputs) != 1:
            raise AppError("anomaly: predict takes one FILE of values, one per line")
        model, info = self._autoencoder(out)
        if not (out / "eval.json").is_file():
            raise AppError("anomaly: predict uses the threshold eval chooses: run 'numformer app anomaly eval' first")
        evaluated = self.read_json(out / "eval.json")
        values = read_series(inputs[0], missing=False)
        if len(values) < AE_WINDOW:
            raise AppError(f"{inputs[0]}: need at least {AE_WINDOW} values, got {len(values)}")
        phase = (np.arange(len(values)) / 52) % 1.0
        try:
            scores = ae_scores(model, values, phase, info["scale"])
        except AppError as err:
            raise AppError(f"{inputs[0]}: {err}") from None
        self.check_output(scores, "reconstruction errors", out / "model")
        th = evaluated["thresholds"]["autoencoder"]
        flagged = np.flatnonzero(scores >= th)
        return [f"{i + 1}\t{values[i]:.4f}\tscore {scores[i]:.3f}" for i in flagged] or ["no anomaly"]

    def onnx_models(self, out: Path) -> list[OnnxModel]:
        """The autoencoder: ``windows`` ``(batch, 32, 4)`` (``_windows``' inputs) ->
        ``reconstruction`` ``(batch, 32)`` of their first feature."""
        model, _ = self._autoencoder(out)
        return [_window_model("model", model, "reconstruction")]


def _window_model(stem: str, model, output: str) -> OnnxModel:
    """A series model for ONNX export: random windows of its config's shape, the batch dynamic."""
    c = model.config
    x = np.random.default_rng(0).standard_normal((2, c.window, c.n_features)).astype(np.float32)
    return OnnxModel(stem, model, (x,), ["windows"], [output], {"windows": {0: "batch"}, output: {0: "batch"}})


APPS = [Forecast(), Anomaly()]
