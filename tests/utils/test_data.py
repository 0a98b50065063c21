"""numformer.utils.data in one process: datasets, samplers, collation and DataLoader, against
PyTorch's torch.utils.data where the behaviour involves no random generator, and by their
properties where it does (numformer's generator is not PyTorch's)."""

from __future__ import annotations

import collections
import math
import warnings

import numpy as np
import pytest
import torch
import torch.utils.data as tud
from hypothesis import given, settings
from hypothesis import strategies as st

import numformer as nf
from numformer.utils.data import (
    BatchSampler,
    ChainDataset,
    ConcatDataset,
    DataLoader,
    Dataset,
    DistributedSampler,
    IterableDataset,
    RandomSampler,
    SequentialSampler,
    StackDataset,
    Subset,
    SubsetRandomSampler,
    TensorDataset,
    WeightedRandomSampler,
    default_collate,
    default_convert,
    random_split,
)


def _data(n=10):
    return np.arange(n * 2, dtype=np.float32).reshape(n, 2), np.arange(n)


def _plain(value):
    """A batch as plain Python: tensors (numformer's or PyTorch's) as (dtype name, shape,
    values); containers keep their type's name."""
    if isinstance(value, (nf.Tensor, torch.Tensor)):
        array = value.numpy() if isinstance(value, nf.Tensor) else value.detach().numpy()
        return ("tensor", str(array.dtype), array.shape, array.tolist())
    if isinstance(value, np.ndarray):
        return ("ndarray", str(value.dtype), value.tolist())
    if isinstance(value, dict):
        return (type(value).__name__, {k: _plain(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [_plain(v) for v in value])
    return value


def _to_torch(value):
    """The same sample with numformer tensors as PyTorch's."""
    if isinstance(value, nf.Tensor):
        return torch.from_numpy(value.numpy().copy())
    if isinstance(value, dict):
        return type(value)((k, _to_torch(v)) for k, v in value.items())
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*(_to_torch(v) for v in value))
    if isinstance(value, (list, tuple)):
        return type(value)(_to_torch(v) for v in value)
    return value


Point = collections.namedtuple("Point", ["x", "y"])


def _sample(i: int):
    return {
        "tensor": nf.tensor(np.full((2, 3), i, dtype=np.float32)),
        "array": np.arange(3, dtype=np.int16) + i,
        "scalar32": np.float32(i / 2),
        "scalar_bool": np.bool_(i % 2),
        "float": i / 3,
        "int": i,
        "bool": i % 2 == 0,
        "str": f"item{i}",
        "bytes": b"x",
        "tuple": (i, np.float64(i)),
        "list": [i, [i + 1.5]],
        "point": Point(i, np.ones(1, dtype=np.float64) * i),
        "ordered": collections.OrderedDict(b=i, a=np.int64(i)),
        "strings": np.array(["a", "b"]),
    }


# --- collation, as PyTorch's -------------------------------------------------------------------


def test_default_collate_gives_pytorchs_structures_types_and_values():
    samples = [_sample(i) for i in range(3)]
    for sample in samples:
        sample.pop("strings")  # PyTorch refuses arrays of strings (below)
    ours = default_collate(samples)
    theirs = tud.default_collate([_to_torch(s) for s in samples])
    assert _plain(ours) == _plain(theirs)
    assert isinstance(ours["ordered"], collections.OrderedDict) and isinstance(ours["point"], Point)
    assert isinstance(ours["tuple"], list)  # a tuple collates to a list, as in PyTorch


def test_default_convert_gives_pytorchs_structures():
    sample = _sample(4)
    assert _plain(default_convert(sample)) == _plain(tud.default_convert(_to_torch(sample)))


@pytest.mark.parametrize(
    "batch",
    [
        [object(), object()],
        [np.array(["a"]), np.array(["b"])],
        [[1, 2], [1]],
        [nf.zeros(2), nf.zeros(3)],
    ],
)
def test_default_collate_refuses_what_pytorch_refuses_with_its_error_kind(batch):
    with pytest.raises(Exception) as theirs:
        tud.default_collate([_to_torch(b) for b in batch])
    with pytest.raises(type(theirs.value)):
        default_collate(batch)


def test_collate_keeps_the_graph_as_torch_stack():
    t = nf.tensor(np.ones((3, 2), dtype=np.float32), requires_grad=True)
    batch = default_collate([t[0], t[1]])
    batch.sum().backward()
    np.testing.assert_array_equal(t.grad.numpy(), [[1, 1], [1, 1], [0, 0]])


# --- datasets -----------------------------------------------------------------------------------


def test_datasets_index_as_pytorchs():
    a, b = list(range(5)), list(range(10, 13))

    class Listed(Dataset):
        def __init__(self, items):
            self.items = items

        def __getitem__(self, i):
            return self.items[i]

        def __len__(self):
            return len(self.items)

    class TorchListed(tud.Dataset):
        def __init__(self, items):
            self.items = items

        def __getitem__(self, i):
            return self.items[i]

        def __len__(self):
            return len(self.items)

    ours = Listed(a) + Listed(b)
    theirs = TorchListed(a) + TorchListed(b)
    assert isinstance(ours, ConcatDataset) and ours.cumulative_sizes == theirs.cumulative_sizes
    assert [ours[i] for i in range(-8, 8)] == [theirs[i] for i in range(-8, 8)]
    sub, t_sub = Subset(ours, [7, 0, 3]), tud.Subset(theirs, [7, 0, 3])
    assert [sub[i] for i in range(3)] == [t_sub[i] for i in range(3)] and sub.__getitems__([2, 0]) == [3, 12]
    stacked = StackDataset(x=Listed(a), y=Listed([v * 2 for v in a]))
    t_stacked = tud.StackDataset(x=TorchListed(a), y=TorchListed([v * 2 for v in a]))
    assert stacked.__getitems__([1, 4]) == t_stacked.__getitems__([1, 4]) and stacked[2] == t_stacked[2]
    with pytest.raises(ValueError, match="absolute value of index"):
        ours[-9]


def test_tensor_dataset_rows_and_errors():
    x, y = _data()
    ds = TensorDataset(x, nf.tensor(y))
    assert len(ds) == 10 and ds[3][0].tolist() == [6.0, 7.0] and ds[3][1].item() == 3
    with pytest.raises(AssertionError, match="Size mismatch between tensors"):
        TensorDataset(x, y[:3])
    with pytest.raises(IndexError, match="at least one tensor"):
        TensorDataset()


def test_chain_of_iterable_datasets_and_their_sum():
    class Stream(IterableDataset):
        def __init__(self, items):
            self.items = items

        def __iter__(self):
            return iter(self.items)

        def __len__(self):
            return len(self.items)

    chained = Stream([1, 2]) + Stream([3])
    assert isinstance(chained, ChainDataset) and list(chained) == [1, 2, 3] and len(chained) == 3
    with pytest.raises(AssertionError, match="only supports IterableDataset"):
        list(ChainDataset([Stream([1]), [2]]))
    with pytest.raises(AssertionError, match="does not support IterableDataset"):
        ConcatDataset([Stream([1])])


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 60),
    parts=st.lists(st.integers(1, 10), min_size=1, max_size=5),
    fractions=st.booleans(),
    seed=st.integers(0, 2**32),
)
def test_random_split_partitions_the_dataset_with_pytorchs_sizes(n, parts, fractions, seed):
    """Disjoint subsets covering every index, of the given lengths or of the lengths PyTorch
    makes of fractions (warning, as PyTorch, of an empty one); the same generator seed gives
    the same split."""
    dataset = list(range(n))
    if fractions:
        lengths = [p / sum(parts) for p in parts]
        if not math.isclose(sum(lengths), 1) or sum(lengths) > 1:
            return  # rounding left a sum that PyTorch takes for lengths
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = [len(s) for s in tud.random_split(dataset, lengths)]
    else:
        lengths = [n * p // sum(parts) for p in parts]
        lengths[0] += n - sum(lengths)
        expected = lengths
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        split = random_split(dataset, lengths, generator=nf.Generator().manual_seed(seed))
        again = random_split(dataset, lengths, generator=nf.Generator().manual_seed(seed))
    as_fractions = math.isclose(sum(lengths), 1) and sum(lengths) <= 1  # PyTorch's test ([1, 0] passes it)
    assert bool(caught) == (as_fractions and 0 in expected)
    assert [len(s) for s in split] == expected
    assert sorted(i for s in split for i in s.indices) == dataset
    assert [s.indices for s in again] == [s.indices for s in split]


def test_random_split_errors_and_the_global_generator():
    with pytest.raises(ValueError, match="does not equal the length"):
        random_split(range(5), [2, 2])
    with pytest.raises(ValueError, match="not between 0 and 1"):
        random_split(range(5), [1.5, -0.5])
    nf.manual_seed(3)
    first = [s.indices for s in random_split(range(9), [4, 5])]
    nf.manual_seed(3)
    assert [s.indices for s in random_split(range(9), [4, 5])] == first  # default: the global generator


# --- samplers -----------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(0, 40),
    batch_size=st.integers(1, 9),
    drop_last=st.booleans(),
)
def test_batch_and_sequential_samplers_equal_pytorchs(n, batch_size, drop_last):
    data = list(range(n))
    ours = BatchSampler(SequentialSampler(data), batch_size, drop_last)
    theirs = tud.BatchSampler(tud.SequentialSampler(data), batch_size, drop_last)
    assert list(ours) == list(theirs) and len(ours) == len(theirs)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 30), extra=st.integers(0, 70), replacement=st.booleans(), seed=st.integers(0, 2**32))
def test_random_sampler_draws_what_pytorchs_draws(n, extra, replacement, seed):
    """``num_samples`` indices in range; without replacement whole permutations back to back
    (each complete block distinct), and a generator's seed fixes the order."""
    num_samples = n + extra
    sampler = RandomSampler(range(n), replacement, num_samples, generator=nf.Generator().manual_seed(seed))
    drawn = list(sampler)
    assert len(drawn) == len(sampler) == num_samples and all(0 <= i < n for i in drawn)
    if not replacement:
        for start in range(0, num_samples - num_samples % n, n):
            assert sorted(drawn[start : start + n]) == list(range(n))
        assert len(set(drawn[num_samples - num_samples % n :])) == num_samples % n
    assert list(RandomSampler(range(n), replacement, num_samples, generator=nf.Generator().manual_seed(seed))) == drawn


def test_random_sampler_without_a_generator_costs_the_global_stream_one_draw_a_pass():
    """As PyTorch's: each pass draws one seed from the global generator and permutes with a
    generator of that seed, whatever the dataset's size."""
    for n in (3, 1000):
        nf.manual_seed(11)
        order = list(RandomSampler(range(n)))
        after = nf.backend.generator().integers(2**63)
        rng = np.random.default_rng(11)
        seed = int(rng.integers(2**63))
        assert order == np.random.default_rng(seed).permutation(n).tolist()
        assert after == rng.integers(2**63)


def test_subset_and_weighted_samplers():
    g = nf.Generator().manual_seed(0)
    assert sorted(SubsetRandomSampler([5, 9, 2], generator=g)) == [2, 5, 9]
    weighted = list(WeightedRandomSampler([0.0, 1.0, 3.0, 0.0], 200, generator=g))
    assert set(weighted) <= {1, 2} and 100 < weighted.count(2) < 190
    assert sorted(WeightedRandomSampler(nf.tensor([1.0, 2.0, 3.0]), 3, replacement=False, generator=g)) == [0, 1, 2]
    with pytest.raises(RuntimeError, match="without replacement"):
        list(WeightedRandomSampler([1.0, 0.0], 2, replacement=False))
    with pytest.raises(ValueError, match="num_samples should be a positive integer"):
        WeightedRandomSampler([1.0], 0)
    with pytest.raises(ValueError, match="num_samples should be a positive integer"):
        RandomSampler(range(3), num_samples=0)
    with pytest.raises(TypeError, match="replacement should be a boolean"):
        RandomSampler(range(3), replacement=1)
    with pytest.raises(TypeError, match="numformer.Generator"):
        list(RandomSampler(range(3), generator=3))


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 40), replicas=st.integers(1, 6), drop_last=st.booleans())
def test_distributed_sampler_in_order_equals_pytorchs(n, replicas, drop_last):
    for rank in range(replicas):
        ours = DistributedSampler(range(n), replicas, rank, shuffle=False, drop_last=drop_last)
        theirs = tud.DistributedSampler(range(n), replicas, rank, shuffle=False, drop_last=drop_last)
        assert list(ours) == list(theirs) and len(ours) == len(theirs)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 40), replicas=st.integers(1, 6), drop_last=st.booleans(), seed=st.integers(0, 1000))
def test_distributed_sampler_shuffled_splits_as_pytorchs(n, replicas, drop_last, seed):
    """The ranks' shares interleaved are one permutation of the indices, padded by repeating
    its head (or cut, with drop_last) to a multiple of the ranks: disjoint apart from the
    padding, covering, of PyTorch's sizes, the same on every call for an epoch."""
    samplers = [DistributedSampler(range(n), replicas, r, seed=seed, drop_last=drop_last) for r in range(replicas)]
    shares = [list(s) for s in samplers]
    sizes = [len(tud.DistributedSampler(range(n), replicas, r, drop_last=drop_last)) for r in range(replicas)]
    assert [len(s) for s in shares] == [len(s) for s in samplers] == sizes
    merged = [shares[r][k] for k in range(sizes[0]) for r in range(replicas)]
    head = merged[: min(n, len(merged))]
    assert len(set(head)) == len(head)
    if drop_last:
        assert len(merged) == n - n % replicas
    else:
        assert sorted(head) == list(range(n))
        assert merged[n:] == [merged[j % n] for j in range(len(merged) - n)]
    assert [list(s) for s in samplers] == shares  # deterministic for an epoch


def test_distributed_sampler_reshuffles_per_epoch_and_reads_the_world():
    sampler = DistributedSampler(range(20))  # numformer.distributed.world(): one process here
    assert (sampler.num_replicas, sampler.rank) == (1, 0)
    first = list(sampler)
    sampler.set_epoch(1)
    second = list(sampler)
    assert sorted(first) == sorted(second) == list(range(20)) and first != second
    sampler.set_epoch(0)
    assert list(sampler) == first
    with pytest.raises(ValueError, match="Invalid rank 3"):
        DistributedSampler(range(4), num_replicas=3, rank=3)


# --- DataLoader in one process ------------------------------------------------------------------


def test_batches_in_order_with_a_short_last_batch():
    x, y = _data()
    batches = list(DataLoader(TensorDataset(x, y), batch_size=4))
    assert [b[0].shape for b in batches] == [(4, 2), (4, 2), (2, 2)]
    np.testing.assert_array_equal(np.concatenate([b[1].numpy() for b in batches]), y)
    assert len(DataLoader(TensorDataset(x, y), batch_size=4)) == 3
    dropped = DataLoader(TensorDataset(x, y), batch_size=4, drop_last=True)
    assert len(dropped) == 2 and [b[0].shape[0] for b in dropped] == [4, 4]


def test_shuffling_draws_from_the_global_generator_as_pytorch():
    """Each epoch draws the iterator's base seed, then the sampler's seed: two draws from the
    global generator, so a seeded script sees the same batches every run; a new order each epoch."""
    x, y = _data()
    loader = DataLoader(TensorDataset(x, y), batch_size=3, shuffle=True)

    def epoch():
        return np.concatenate([b[1].numpy() for b in loader])

    nf.manual_seed(5)
    first, second = epoch(), epoch()
    after = nf.backend.generator().integers(2**63)
    rng = np.random.default_rng(5)
    for _ in range(4):
        rng.integers(2**63)
    assert after == rng.integers(2**63)
    nf.manual_seed(5)
    assert (epoch() == first).all()
    assert sorted(first) == list(range(10)) and (first != second).any()
    g = nf.Generator().manual_seed(1)
    ours = [b[1].tolist() for b in DataLoader(TensorDataset(x, y), 4, shuffle=True, generator=g)]
    g.manual_seed(1)
    assert ours == [b[1].tolist() for b in DataLoader(TensorDataset(x, y), 4, shuffle=True, generator=g)]


class Squares(Dataset):
    def __len__(self):
        return 5

    def __getitem__(self, i):
        return {"x": np.full(3, i, dtype=np.float32), "y": i * i, "name": f"item{i}"}


def test_collate_fn_batch_sampler_and_unbatched_loading():
    batch = next(iter(DataLoader(Squares(), batch_size=2)))
    assert batch["x"].shape == (2, 3) and batch["y"].tolist() == [0, 1] and batch["name"] == ["item0", "item1"]
    assert next(iter(DataLoader(Squares(), batch_size=3, collate_fn=len))) == 3
    by_sampler = [b["y"].tolist() for b in DataLoader(Squares(), batch_sampler=[[4, 0], [2]])]
    assert by_sampler == [[16, 0], [4]]
    unbatched = list(DataLoader(Squares(), batch_size=None))
    assert len(unbatched) == 5 and unbatched[2]["x"].shape == (3,) and unbatched[2]["y"] == 4  # default_convert


def test_a_dataset_with_getitems_gets_whole_batches_then_collate():
    """PyTorch's protocol: ``__getitems__(indices)`` returns the batch's samples; collate_fn
    still makes the batch."""
    asked = []

    class Batched(Squares):
        def __getitems__(self, indices):
            asked.append(list(indices))
            return [self[i] for i in indices]

    batches = list(DataLoader(Batched(), batch_size=2, collate_fn=lambda samples: [s["y"] for s in samples]))
    assert asked == [[0, 1], [2, 3], [4]] and batches == [[0, 1], [4, 9], [16]]


def test_the_tensor_dataset_fast_path_gives_the_batches_of_default_collate():
    x, y = _data()
    ds = TensorDataset(x, y)
    for dataset in (ds, Subset(ds, [9, 2, 5, 1, 0, 7]), Subset(Subset(ds, [3, 4, 5, 6]), [3, 1])):
        fast = list(DataLoader(dataset, batch_size=4))
        slow = list(DataLoader(dataset, batch_size=4, collate_fn=lambda samples: default_collate(samples)))
        assert _plain(fast) == _plain(slow)
    assert isinstance(fast[0], list)


def test_fetch_gives_the_batch_that_iteration_gives():
    """``DataLoader.fetch`` (the Trainer's hook) makes a batch from indices as iteration does."""
    x, y = _data()
    loader = DataLoader(TensorDataset(x, y), batch_size=3, sampler=[4, 1, 7, 7, 0])
    assert _plain(list(loader)) == _plain([loader.fetch([4, 1, 7]), loader.fetch([7, 0])])
    assert _plain(DataLoader(Squares(), 2).fetch([3, 1])) == _plain(default_collate([Squares()[3], Squares()[1]]))


def test_iterable_datasets_in_one_process():
    class Stream(IterableDataset):
        def __iter__(self):
            return iter(range(7))

        def __len__(self):
            return 7

    assert [b.tolist() for b in DataLoader(Stream(), batch_size=3)] == [[0, 1, 2], [3, 4, 5], [6]]
    assert [b.tolist() for b in DataLoader(Stream(), batch_size=3, drop_last=True)] == [[0, 1, 2], [3, 4, 5]]
    assert len(DataLoader(Stream(), batch_size=3)) == 3 and len(DataLoader(Stream(), 3, drop_last=True)) == 2


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_workers": -1},
        {"timeout": -1},
        {"prefetch_factor": 2},
        {"persistent_workers": True},
        {"multiprocessing_context": "fork"},
        {"shuffle": True, "sampler": [0, 1]},
        {"batch_sampler": [[0]], "batch_size": 2},
        {"batch_sampler": [[0]], "drop_last": True},
        {"batch_size": None, "drop_last": True},
        {"batch_size": 0},
        {"num_workers": 1, "multiprocessing_context": "teleport"},
        {"num_workers": 1, "prefetch_factor": -1},
    ],
)
def test_bad_loader_arguments_raise_pytorchs_errors(kwargs):
    x, _ = _data()
    with pytest.raises(Exception) as theirs:
        tud.DataLoader(tud.TensorDataset(torch.from_numpy(x)), **kwargs)
    with pytest.raises(type(theirs.value)):
        DataLoader(TensorDataset(x), **kwargs)


def test_loader_errors_of_its_own():
    x, _ = _data()
    loader = DataLoader(TensorDataset(x), batch_size=2)
    with pytest.raises(ValueError, match="batch_size attribute should not be set"):
        loader.batch_size = 3
    with pytest.raises(TypeError, match="map-style"):
        DataLoader(5)
    with pytest.raises(TypeError, match="numformer.Generator"):
        DataLoader(TensorDataset(x), shuffle=True, generator=0)
    with pytest.raises(AssertionError, match="timeout applies to worker processes"):
        iter(DataLoader(TensorDataset(x), timeout=1))
    assert len(DataLoader(TensorDataset(x), 4, shuffle=True, pin_memory=True)) == 3  # accepted, nothing to pin


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


def test_dict_batches_count_their_samples():
    from numformer.train.trainer import _batch_size

    assert _batch_size({"x": np.zeros((7, 2)), "y": np.zeros(7)}) == 7 and _batch_size((np.zeros((3, 1)),)) == 3
