"""The main job (``make demo``): a character-level GPT trained on the default corpus.

Prints the model, the validation loss and a sample before and after about three minutes of
training, then generates from a prompt; writes ``runs/demo/`` with the checkpoint, the model,
the loss curve, an attention heatmap of one head on a generated line and the health report.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

import numformer as nf
from numformer.train import lm
from numformer.viz.tables import heading, say, stream_to_stdout, table

PROMPT = "Return the "


def _config(out: str) -> lm.RunConfig:
    return lm.RunConfig().updated(
        dict(
            tokenizer="char",
            n_layer=4,
            n_head=4,
            d_model=128,
            d_ff=512,
            block_size=128,
            batch_size=16,
            lr=3e-3,
            min_lr=3e-4,
            warmup_steps=50,
            eval_every=100,
            eval_batches=8,
            checkpoint_every=100,
            sample_prompt=PROMPT,
            sample_tokens=80,
            out_dir=out,
        ),
        source="demo",
    )


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


def run(seconds: float = 180.0, out: str = "runs/demo") -> None:
    config = _config(out)
    out_dir = Path(out)
    say(
        "[bold]numformer demo[/bold]: a character-level GPT in pure NumPy, trained on the "
        "English in the docstrings of Python's standard library (offline, nothing to download)"
    )
    tokenizer, data, model = lm.prepare(config, out_dir)
    steps = _steps_for(seconds, config, data, tokenizer.vocab_size)
    config = config.updated({"max_steps": steps, "warmup_steps": min(50, steps // 10)})
    heading("Model")
    say(model.summary())
    say(
        f"data: {len(data.train):,} training and {len(data.val):,} validation characters; "
        f"vocabulary of {tokenizer.vocab_size} characters; loss at random = ln({tokenizer.vocab_size})"
        f" = {np.log(tokenizer.vocab_size):.3f}"
    )
    trainer = lm.build_trainer(config, out_dir, tokenizer, data, model, write=_write)
    before = trainer.evaluate()
    sample_before = lm.sample_text(model, tokenizer, PROMPT, 80, seed=0)
    heading(
        f"Training for about {seconds:.0f} s ({steps} steps of {config.batch_size} x "
        f"{config.model.block_size} characters)"
    )
    result = trainer.fit()
    after = trainer.evaluate()
    model.save(
        out_dir / "model",
        tokenizer,
        extra={"run": config.to_dict(), "history": {"steps": result.step, "best_val_loss": result.best_val_loss}},
    )
    heading("Before and after")
    table(
        "Validation loss (nats per character)",
        ["", "loss", "sample (temperature 0.8)"],
        [
            ["before training", f"{before:.3f}", repr(PROMPT + sample_before)],
            [
                f"after {result.step} steps",
                f"{after:.3f}",
                repr(PROMPT + lm.sample_text(model, tokenizer, PROMPT, 80, seed=0)),
            ],
        ],
    )
    heading("Generation (KV cache, streamed)")
    prompt = "The function "
    print(prompt, end="", flush=True)
    line = prompt + lm.sample_text(model, tokenizer, prompt, 240, seed=1, temperature=0.7, stream=stream_to_stdout)
    print()
    first_line = next((s for s in line.split("\n") if len(s) > 20), line)
    which = _attention_figure(model, tokenizer, first_line, out_dir / "attention.png")
    heading("Written")
    table(
        f"{out_dir}/",
        ["file", "what"],
        [
            ["checkpoints/", "safetensors checkpoints (resume with numformer train --resume)"],
            ["model/", "the trained model: numformer generate --model " + out],
            ["metrics.jsonl, metrics.png", "loss curves, learning rate, gradient norm"],
            ["attention.png", f"attention heatmap ({which}) on the generated line"],
            ["health_report.txt", "the health monitor's report (the seed's checklist)"],
        ],
    )


def _write(text: str) -> None:
    from tqdm.auto import tqdm

    tqdm.write(text)
