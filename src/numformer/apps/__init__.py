"""The seed's section 8 on real offline data: each application pairs a numformer model with a
data loader, a plain baseline on the same held-out split, and a score.

``numformer app list`` shows them; ``numformer app NAME train|eval|predict`` runs one, and
``numformer app NAME export`` writes its trained models as ONNX files (``App.onnx_models``).
Each app writes into its folder (default ``runs/apps/NAME``, see ``folder``): ``model/`` (and
``baseline/``), the trainer's ``train-*`` checkpoints and metrics, ``split.json``,
``train.json`` and ``eval.json`` (the scores ``eval`` printed). Data comes from pip packages
installed with the ``apps`` extra (pinned); nothing is downloaded.

The registry below is the one description of the applications: the CLI's help, ``app list``
and the README's table are made from it.

Needs ``pip install 'numformer[apps]'``.
"""

from __future__ import annotations

import json
from pathlib import Path

from numformer.apps.app import EVAL_KEYS, App, OnnxModel
from numformer.apps.folder import AppError, default_out

MEASURED = Path(__file__).with_name("measured.json")  # the project's last full runs (app list, tour, README)

__all__ = ["EVAL_KEYS", "App", "AppError", "OnnxModel", "default_out", "registry", "get"]


def registry() -> dict[str, App]:
    """Every application by name, in the order ``app list`` shows them (importing an app's
    module needs only numformer's core)."""
    from numformer.apps import classify, recommend, series, translate, vision

    apps = [*translate.APPS, *classify.APPS, *vision.APPS, *series.APPS, *recommend.APPS]
    measured = json.loads(MEASURED.read_text()) if MEASURED.is_file() else {}
    for app in apps:
        app.measured = measured.get(app.name, {})
    return {app.name: app for app in apps}


def get(name: str) -> App:
    """The application called ``name``.

    Raises:
        AppError: no such application (naming those there are)."""
    apps = registry()
    if name not in apps:
        raise AppError(f"no application {name!r}; choose from {', '.join(apps)} (numformer app list)")
    return apps[name]
