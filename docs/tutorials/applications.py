# %% [markdown]
# # The applications
#
# *The seed's section 8*, on real data that installs offline. Each application pairs a
# numformer model with a plain baseline trained and scored on the same held-out split:
# translation (numbers and dates, with an LSTM encoder-decoder baseline), play-genre
# classification, a Vision Transformer on digits, forecasting, anomaly detection and a SASRec
# recommender. `numformer app list` shows them; `numformer app NAME train|eval|predict|export`
# runs one.
#
# ## 1. The registry and the project's recorded runs
#
# `numformer.apps.registry()` is the one description of the applications: the CLI's help,
# `app list`, the README's table and this page are made from it. The scores are the project's
# last full runs, recorded in `numformer/apps/measured.json` by `numformer app NAME eval`, never
# typed by hand.

# %%
import matplotlib.pyplot as plt

from numformer.apps import registry

apps = registry()
print(f"{'app':18} {'metric':40} {'numformer':>9} {'baseline':>9} {'n test':>6} {'train':>8}")
for name, app in apps.items():
    m = app.measured
    print(
        f"{name:18} {app.metric[:40]:40} {m.get('score', float('nan')):9.4f} "
        f"{m.get('baseline_score', float('nan')):9.4f} {m.get('n_test', 0):6d} {m.get('train_minutes', 0):6.1f} m"
    )

# %%
fig, ax = plt.subplots(figsize=(7, 3.4))
names = [n for n, a in apps.items() if a.measured]
scores = [apps[n].measured["score"] for n in names]
baselines = [apps[n].measured["baseline_score"] for n in names]
xs = range(len(names))
ax.bar([x - 0.2 for x in xs], scores, width=0.4, label="numformer")
ax.bar([x + 0.2 for x in xs], baselines, width=0.4, label="baseline")
ax.set_xticks(list(xs), names, rotation=30, ha="right")
ax.set_title("recorded scores (forecast: MASE, lower is better; others: higher is better)", fontsize=9)
ax.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 2. One application end to end: a Vision Transformer on digits
#
# The `vit` app trains a ViT (Dosovitskiy et al., 2021) on scikit-learn's 8x8 digits against
# logistic regression on the pixels. `--fast` picks a small preset (1 layer, width 16, 200
# training images) and `--steps 200` keeps it to seconds: a look at the machinery, far from the
# recorded score above (3,000 steps of a 4-layer model on every training image). It runs through
# the CLI's own entry point, as `numformer app vit train --fast --steps 200` would. (The data
# comes from scikit-learn, installed by the `apps` extra.)

# %%
from pathlib import Path

from numformer.cli import main

out = Path("runs/apps/vit")
print("exit", main(["app", "vit", "train", "--fast", "--steps", "200", "--out", str(out)]))

# %%
print("exit", main(["app", "vit", "eval", "--out", str(out)]))

# %%
print("exit", main(["app", "vit", "predict", "--out", str(out), "test:0", "test:1", "test:2"]))

# %% [markdown]
# `eval` also draws figures into the run folder; the class token's attention rollout (Abnar &
# Zuidema, 2020) shows which patches the prediction used:

# %%
from IPython.display import Image, display

for figure in sorted((out / "figures").glob("*.png")):
    print(figure.name)
    display(Image(filename=str(figure)))

# %% [markdown]
# A train into a folder that holds a run needs `--overwrite`, and replaces the old run only once
# the new one has completed. `numformer app vit export` writes the trained models as ONNX files
# (see [ONNX export](onnx_export.md)).
