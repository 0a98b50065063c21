"""``distributed.GradientReducer`` without MPI: a stand-in world of two identical ranks records
when each bucket's collective starts, so the tests see the overlap with the backward pass and
the means written back."""

from __future__ import annotations

import numpy as np
import pytest

import numformer as nf
from numformer import distributed


class TwoIdenticalRanks:
    """A world whose other rank holds the same gradients: a sum doubles, a mean gives them back."""

    size, rank, is_main = 2, 0, True

    def __init__(self, watch):
        self.watch = watch  # the parameter whose gradient tells whether backward is still running
        self.started: list = []  # (buffer size, was the watched gradient still missing)

    def iallreduce_sum_(self, buffer):
        self.started.append((buffer.size, self.watch.grad is None))
        buffer *= 2
        return self

    def progress(self, requests):
        pass

    def broadcast_json(self, value):
        return value

    def Wait(self):  # the request
        pass


class OtherRankHasNothing(TwoIdenticalRanks):
    """A world whose other rank has no gradient at all: the mean is half of this rank's."""

    def iallreduce_sum_(self, buffer):
        self.started.append((buffer.size, self.watch.grad is None))
        return self


def _model():
    nf.manual_seed(0)
    return nf.nn.Sequential(nf.nn.Linear(4, 8), nf.nn.Tanh(), nf.nn.Linear(8, 8), nf.nn.Tanh(), nf.nn.Linear(8, 2))


def _grads(model):
    return {name: None if p.grad is None else p.grad.numpy().copy() for name, p in model.named_parameters()}


def test_buckets_start_while_backward_runs_in_order_and_the_means_equal_one_process():
    model = _model()
    x = nf.randn(5, 4)
    model(x).square().sum().backward()
    alone = _grads(model)
    model.zero_grad(set_to_none=True)
    world = TwoIdenticalRanks(watch=model[0].weight)
    reducer = distributed.GradientReducer(model.parameters(), world, bucket_bytes=1, first_bucket_bytes=1)
    assert all(b[0] is p for b, p in zip(reducer.buckets, list(model.parameters())[::-1]))  # last layer first
    reducer.arm()
    model(x).square().sum().backward()
    started_in_backward = len(world.started)
    assert reducer.finish() == 4 * sum(p.numel() for p in model.parameters())
    assert started_in_backward >= 4  # the last layers' buckets went out during the backward
    assert world.started[0] == (2 + 1, True)  # the output bias first (2 values + its flag), first weight still missing
    for name, grad in _grads(model).items():
        np.testing.assert_array_equal(grad, alone[name], err_msg=name)  # (2 g) / 2 is g exactly


class Shift(nf.nn.Module):
    def __init__(self):
        super().__init__()
        self.shift = nf.nn.Parameter(nf.zeros(4))

    def forward(self, x):
        return x + self.shift


class ShiftedInput(nf.nn.Module):
    """A parameter registered last but used first (as a GPT's positional embedding)."""

    def __init__(self):
        super().__init__()
        self.body = _model()
        self.first = Shift()

    def forward(self, x):
        return self.body(self.first(x))


def test_after_the_first_step_buckets_follow_the_order_gradients_complete_in():
    model, x = ShiftedInput(), nf.randn(5, 4)
    world = TwoIdenticalRanks(watch=model.first.shift)
    reducer = distributed.GradientReducer(model.parameters(), world, bucket_bytes=1, first_bucket_bytes=1)
    assert reducer.buckets[0][0] is model.first.shift  # the reverse of registration: the last registered first
    for step in range(2):
        model.zero_grad(set_to_none=True)
        world.started = []
        reducer.arm()
        model(x).square().sum().backward()
        reducer.finish()
        early = [missing for _, missing in world.started]  # started before the shift's gradient existed
        if step == 0:  # the shift completes last, and holds back every bucket after it
            assert not any(early)
            assert reducer.buckets[-1][0] is model.first.shift  # reordered as the gradients completed
            assert reducer.buckets[0][0] is model.body[4].weight
    assert sum(early) == len(reducer.buckets) - 1  # every bucket but the shift's went out early


def test_a_parameter_without_a_gradient_anywhere_keeps_none_and_an_unarmed_backward_sends_nothing():
    model = _model()
    model[0].weight.requires_grad_(False)
    unused = nf.nn.Linear(3, 3)
    params = [*model.parameters(), *unused.parameters()]
    world = TwoIdenticalRanks(watch=model[0].bias)
    reducer = distributed.GradientReducer(params, world, bucket_bytes=1, first_bucket_bytes=1)
    model(nf.randn(2, 4)).sum().backward()  # not armed: a micro-batch before the last one
    assert world.started == []
    reducer.arm()
    model(nf.randn(2, 4)).sum().backward()
    # the unused layer's buckets come first and never complete: buckets start in order only,
    # so every rank issues the same collectives whatever its timing, and all wait for finish
    assert world.started == []
    reducer.finish()
    assert len(world.started) == len(reducer.buckets) == 7
    assert unused.weight.grad is None and unused.bias.grad is None
    assert model[0].weight.grad is None and model[0].bias.grad is not None
    reducer.remove()
    model = _model()
    world = TwoIdenticalRanks(watch=model[0].weight)
    reducer = distributed.GradientReducer(model.parameters(), world, bucket_bytes=1, first_bucket_bytes=1)
    reducer.remove()
    reducer.arm()
    model(nf.randn(2, 4)).sum().backward()
    assert world.started == []  # without its hooks nothing starts during the backward


@pytest.mark.parametrize(
    ("first", "rest", "sizes"),
    [(None, 100, [[8, 8, 72], [96]]), (16, 100, [[8, 8], [72], [96]]), (4, 50, [[8], [8], [72], [96]])],
)
def test_gradient_buckets_fill_up_to_their_limits(first, rest, sizes):
    params = [nf.nn.Parameter(nf.zeros(n // 4)) for n in (8, 8, 72, 96)]
    buckets = distributed.gradient_buckets(params, rest, first)
    assert [[p.numel() * 4 for p in b] for b in buckets] == sizes


def test_given_a_module_parameters_unfrozen_or_replaced_later_are_averaged_too():
    model = _model()
    model[0].weight.requires_grad_(False)
    world = OtherRankHasNothing(watch=model[0].bias)
    reducer = distributed.GradientReducer(model, world)
    model[0].weight.requires_grad_(True)  # unfrozen after the reducer was built
    model[2].weight = nf.nn.Parameter(model[2].weight.detach().clone())  # replaced (as weight tying does)
    x = nf.randn(3, 4)
    model(x).sum().backward()
    alone = _grads(model)
    model.zero_grad(set_to_none=True)
    reducer.arm()
    model(x).sum().backward()
    reducer.finish()
    for name, grad in _grads(model).items():
        np.testing.assert_array_equal(grad, alone[name] / 2, err_msg=name)  # every one averaged
