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


def test_pytorch_style_arguments_and_clear_errors():
    x, y = _data()
    assert len(DataLoader(TensorDataset(x, y), 4, shuffle=True, num_workers=0, pin_memory=True)) == 3
    with pytest.raises(ValueError, match="num_workers must be 0"):
        DataLoader(TensorDataset(x), num_workers=2)
    with pytest.raises(TypeError, match="generator must be a numpy.random.Generator"):
        DataLoader(TensorDataset(x), shuffle=True, generator=0)
    with pytest.raises(TypeError, match="map-style"):
        DataLoader(i for i in range(3))
    t = nf.tensor(x, requires_grad=True)
    batch = default_collate([t[0], t[1]])
    assert batch.requires_grad  # in the graph, as torch.stack


def test_a_validation_dataloader_is_one_pass_weighted_by_batch_size(tmp_path):
    from numformer import nn, optim
    from numformer.nn import functional as F
    from numformer.train import TrainConfig, Trainer

    x, _ = _data()
    data = TensorDataset(x, x.sum(1, keepdims=True))
    model = nn.Linear(2, 1)
    trainer = Trainer(
        model,
        optim.SGD(model.parameters(), lr=0.1),
        lambda m, b: F.mse_loss(m(b[0]), b[1]),
        DataLoader(data, 4),
        DataLoader(data, 4),
        config=TrainConfig(max_steps=1, eval_batches=5, out_dir=str(tmp_path), progress=False),
    )
    whole = float(F.mse_loss(model(nf.Tensor(x)), nf.Tensor(x.sum(1, keepdims=True))).item())
    assert trainer.evaluate() == pytest.approx(whole, rel=1e-6)  # batches of 4, 4, 2; not 5 cycled batches


def test_dict_batches_count_their_samples(tmp_path):
    from numformer.train.trainer import _batch_size

    assert _batch_size({"x": np.zeros((7, 2)), "y": np.zeros(7)}) == 7 and _batch_size((np.zeros((3, 1)),)) == 3
