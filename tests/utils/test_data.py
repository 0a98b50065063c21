"""numformer.utils.data: datasets, samplers and DataLoader, as PyTorch's."""

from __future__ import annotations

import numpy as np
import pytest

import numformer as nf
from numformer.utils.data import DataLoader, Dataset, RandomSampler, TensorDataset, default_collate


def _data(n=10):
    return np.arange(n * 2, dtype=np.float32).reshape(n, 2), np.arange(n)


def test_batches_in_order_with_a_short_last_batch():
    x, y = _data()
    batches = list(DataLoader(TensorDataset(x, y), batch_size=4))
    assert [b[0].shape for b in batches] == [(4, 2), (4, 2), (2, 2)]
    np.testing.assert_array_equal(np.concatenate([b[1].numpy() for b in batches]), y)
    assert len(DataLoader(TensorDataset(x, y), batch_size=4)) == 3
    dropped = DataLoader(TensorDataset(x, y), batch_size=4, drop_last=True)
    assert len(dropped) == 2 and [b[0].shape[0] for b in dropped] == [4, 4]


def test_shuffling_is_reproducible_under_manual_seed_and_covers_every_item():
    x, y = _data()

    def epoch():
        return np.concatenate([b[1].numpy() for b in DataLoader(TensorDataset(x, y), batch_size=3, shuffle=True)])

    nf.manual_seed(5)
    first, second = epoch(), epoch()
    nf.manual_seed(5)
    assert (epoch() == first).all()
    assert sorted(first) == list(range(10)) and (first != second).any()  # a new order each epoch
    g = np.random.default_rng(1)
    ours = np.concatenate([b[1].numpy() for b in DataLoader(TensorDataset(x, y), 4, shuffle=True, generator=g)])
    assert (ours == np.random.default_rng(1).permutation(10)).all()


class Squares(Dataset):
    def __len__(self):
        return 5

    def __getitem__(self, i):
        return {"x": np.full(3, i, dtype=np.float32), "y": i * i, "name": f"item{i}"}


def test_default_collate_stacks_fields_and_a_collate_fn_replaces_it():
    batch = next(iter(DataLoader(Squares(), batch_size=2)))
    assert batch["x"].shape == (2, 3) and batch["y"].tolist() == [0, 1] and batch["name"] == ["item0", "item1"]
    lengths = next(iter(DataLoader(Squares(), batch_size=3, collate_fn=lambda items: len(items))))
    assert lengths == 3
    # the batched fetch (TensorDataset.__getitems__) and the per-item collate agree
    x, y = _data()
    ds = TensorDataset(x, y)
    whole = next(iter(DataLoader(ds, batch_size=4, sampler=[3, 1, 4, 1])))
    items = next(iter(DataLoader(ds, batch_size=4, sampler=[3, 1, 4, 1], collate_fn=default_collate)))
    for a, b in zip(whole, items):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_bad_arguments_are_named():
    x, y = _data()
    with pytest.raises(ValueError, match="same first dimension"):
        TensorDataset(x, y[:3])
    with pytest.raises(ValueError, match="batch_size must be a positive int, got 0"):
        DataLoader(TensorDataset(x), batch_size=0)
    with pytest.raises(ValueError, match="shuffle=True and a sampler"):
        DataLoader(TensorDataset(x), shuffle=True, sampler=RandomSampler(x))
    with pytest.raises(TypeError, match="cannot batch samples of type object"):
        default_collate([object(), object()])
