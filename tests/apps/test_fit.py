"""``apps.fit``: with validation batches the model ends with the weights of its lowest
validation loss (model selection on validation data), without them with its last step's."""

from __future__ import annotations

import numpy as np
import pytest

import numformer as nf
from numformer.apps.app import AppError, fit


class Scalar(nf.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nf.nn.Parameter(nf.zeros(1))


def _loss(model, target):
    return ((model.w - float(target)) ** 2).sum()


def _fit(model, tmp_path, steps, lr=0.45, loss=_loss, target=10.0, **options):
    """``fit`` of the scalar by plain SGD towards ``target``, one sample a step."""
    optimizer = nf.optim.SGD(model.parameters(), lr=lr)
    return fit(
        model, optimizer, loss, lambda rng: target, tmp_path, "scalar", steps, 0, False, count=lambda b: 1, **options
    )


@pytest.mark.parametrize("validate", [True, False])
def test_fit_keeps_the_weights_of_the_lowest_validation_loss(validate, tmp_path):
    # training pulls w towards 10; the gradient (-20 at first) is clipped to norm 1, so plain
    # SGD at lr 0.45 walks w up 0.45 a step: 2.70 after step 6, 3.15 after 7, 4.50 after 10.
    # The validation loss (w - 3)^2 is lowest after step 7.
    model = Scalar()
    fitted = _fit(model, tmp_path, 10, val_batches=(lambda rng: 3.0) if validate else None, eval_every=1)
    assert fitted.steps == 10
    if validate:
        assert fitted.kept_step == 7
        np.testing.assert_allclose(model.w.numpy(), [3.15], rtol=1e-6)
        assert fitted.val_loss == pytest.approx(0.15**2, rel=1e-4)
    else:
        assert fitted.kept_step == 10 and fitted.val_loss is None
        np.testing.assert_allclose(model.w.numpy(), [4.5], rtol=1e-6)


def test_fit_refuses_a_validation_that_never_gives_a_finite_loss(tmp_path):
    model = Scalar()
    with pytest.raises(AppError, match="no validation loss was finite"):
        loss = lambda m, batch: _loss(m, 1.0) * (np.inf if batch == "val" else 1.0)  # noqa: E731
        _fit(model, tmp_path, 3, lr=0.1, loss=loss, target=1.0, val_batches=lambda rng: "val")


def test_fit_refuses_eval_every_below_one(tmp_path):
    model = Scalar()
    with pytest.raises(ValueError, match="eval_every must be >= 1, got 0"):
        _fit(model, tmp_path, 3, eval_every=0)


def test_fit_with_patience_stops_once_validation_stops_improving(tmp_path):
    # the walk above: validation is lowest after step 7, worse after 8 and 9; patience 2 stops
    # training at step 9 of at most 50, and the model holds step 7's weights
    model = Scalar()
    fitted = _fit(model, tmp_path, 50, val_batches=lambda rng: 3.0, eval_every=1, patience=2)
    assert (fitted.steps, fitted.kept_step) == (9, 7)
    np.testing.assert_allclose(model.w.numpy(), [3.15], rtol=1e-6)
    for patience, val, message in (
        (2, None, "it needs val_batches"),
        (0, lambda rng: 3.0, "patience must be >= 1, got 0"),
    ):
        with pytest.raises(ValueError, match=message):
            _fit(model, tmp_path, 3, val_batches=val, patience=patience)


def test_a_ctrl_c_during_fit_is_a_keyboard_interrupt_after_the_step(tmp_path):
    """The trainer finishes the step and saves; fit then raises KeyboardInterrupt, which the
    CLI reports as its one "interrupted" line with exit 130 (not an error line, exit 2)."""
    import os
    import signal

    calls = []

    def batches(rng):
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C sends, while step 3 is prepared
        return 10.0

    model = Scalar()
    optimizer = nf.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(KeyboardInterrupt):
        fit(model, optimizer, _loss, batches, tmp_path, "scalar", 50, 0, False, count=lambda b: 1)
    assert len(calls) < 50
