# %% [markdown]
# # The debugging checklist, automated
#
# *The seed's section 7, last part.* The seed ends with a checklist for a run that goes wrong:
# NaN loss, exploding or vanishing gradients, dead ReLUs, a loss that will not fall or
# oscillates, overfitting, underfitting, collapsed predictions. numformer's
# `train.HealthMonitor` runs that checklist *while the model trains*: it watches the loss every
# step and, every `interval` steps, per-layer gradient norms, update-to-weight ratios and
# activation statistics (forward hooks that record only on those steps). Each problem becomes a
# `Diagnosis` whose message is the checklist's advice.
#
# This notebook plants four faults in small runs and reads what the monitor says.

# %%
import matplotlib.pyplot as plt
import numpy as np

import numformer as nf
from numformer import nn, optim
from numformer.nn import functional as F
from numformer.train import ADVICE, HealthMonitor, TrainConfig, Trainer

print("the checklist:", ", ".join(ADVICE))

# %% [markdown]
# ## The runs
#
# A small regression task and an MLP; the `Trainer` calls the monitor after each backward and
# step and at each evaluation (any hand-written loop can call `after_backward`, `after_step` and
# `record_validation` itself).


# %%
def regression(rng, n=32):
    x = rng.standard_normal((n, 2)).astype(np.float32)
    return x, (np.sin(2 * x[:, :1]) + 0.5 * x[:, 1:]).astype(np.float32)


def poisoned(rng):  # one NaN in every batch's input
    x, y = regression(rng)
    x[0, 0] = np.nan
    return x, y


tiny_x = np.random.default_rng(0).uniform(-3, 3, (8, 2)).astype(np.float32)
tiny_y = (np.sin(tiny_x[:, :1]) + np.random.default_rng(1).standard_normal((8, 1))).astype(np.float32)


def mlp(hidden=32, bias=None):
    nf.manual_seed(0)
    m = nn.Sequential(nn.Linear(2, hidden), nn.ReLU(), nn.Linear(hidden, 1))
    if bias is not None:
        with nf.no_grad():
            m[0].bias.fill_(bias)
    return m


def loss_fn(model, batch):
    return F.mse_loss(model(nf.tensor(batch[0])), nf.tensor(batch[1]))


faults = [  # what we plant, the model, its optimiser, its training data, steps
    ("learning rate far too high", mlp(), lambda m: optim.SGD(m.parameters(), lr=5.0), regression, 30),
    ("ReLU biases set to -10", mlp(bias=-10.0), lambda m: optim.SGD(m.parameters(), lr=0.01), regression, 20),
    ("a NaN in the input", mlp(), lambda m: optim.SGD(m.parameters(), lr=0.01), poisoned, 10),
    (
        "8 noisy points, 128 hidden units",
        mlp(hidden=128),
        lambda m: optim.Adam(m.parameters(), lr=1e-2),
        lambda rng: (tiny_x, tiny_y),
        300,
    ),
]

# %%
monitors = {}
with np.errstate(all="ignore"):  # the planted faults overflow on purpose
    for i, (fault, model, make_optimizer, train_data, steps) in enumerate(faults):
        monitor = HealthMonitor(model, interval=1 if steps < 100 else 5)
        config = TrainConfig(
            max_steps=steps,
            eval_every=25,
            eval_batches=2,
            progress=False,
            clip_grad_norm=None,
            checkpoint_every=10_000,
            out_dir=f"runs/fault{i}",
        )
        result = Trainer(
            model, make_optimizer(model), loss_fn, train_data, regression, config=config, monitor=monitor
        ).fit()
        monitor.close()
        monitors[fault] = monitor
        print(f"{fault}: run {result.status} at step {result.step}")
        for d in monitor.diagnoses[:2]:
            print("   ", d.message)
        print()

# %% [markdown]
# Each fault is named with its step (and layer, where it has one) and the checklist's advice: the
# explosion points to clipping and a smaller learning rate, the dead layer to the biases and the
# learning rate, the NaN stops the run (a fatal diagnosis keeps the last finite checkpoint), and
# the overfit run shows its validation loss rising while its training loss falls.
#
# ## What the monitor saw
#
# The monitor keeps its measurements: the loss at every step and the global gradient norm at
# each recorded step.

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
for fault, monitor in monitors.items():
    losses = np.array(monitor.losses, dtype=float)
    axes[0].semilogy(np.where(np.isfinite(losses), losses, np.nan), label=fault)
    axes[1].semilogy(monitor.grad_norms, label=fault)
axes[0].set_title("training loss")
axes[0].set_xlabel("step")
axes[1].set_title("gradient norm (recorded steps)")
axes[1].set_xlabel("recorded step")
axes[0].legend(fontsize=7)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## The report
#
# `monitor.report()` is what the `Trainer` writes to `health_report.txt` in the run folder:

# %%
print(monitors["ReLU biases set to -10"].report())

# %% [markdown]
# In your own runs, pass `monitor=HealthMonitor(model)` to the `Trainer` (the `numformer train`
# command does it for you) and read `health_report.txt` when a run misbehaves.
