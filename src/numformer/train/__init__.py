"""Training toolkit: the loop, checkpoints, the LR finder and the health monitor.

Needs the ``train`` extra (safetensors, tqdm, matplotlib): ``pip install 'numformer[train]'``.
"""

from numformer.train.checkpoint import (
    CheckpointError,
    list_checkpoints,
    load_checkpoint,
    read_pointer,
    resolve_checkpoint,
    save_checkpoint,
)
from numformer.train.lr_finder import LRFinderResult, lr_find
from numformer.train.monitor import ADVICE, Diagnosis, HealthMonitor
from numformer.train.trainer import Callback, EarlyStopping, FitResult, LoaderBatches, TrainConfig, Trainer

__all__ = [
    "Trainer",
    "TrainConfig",
    "Callback",
    "EarlyStopping",
    "FitResult",
    "list_checkpoints",
    "read_pointer",
    "LoaderBatches",
    "save_checkpoint",
    "load_checkpoint",
    "resolve_checkpoint",
    "CheckpointError",
    "lr_find",
    "LRFinderResult",
    "HealthMonitor",
    "Diagnosis",
    "ADVICE",
]
