"""Datasets and batching as PyTorch's ``torch.utils.data``, with the same module paths:
``numformer.utils.data.dataset`` (``Dataset``, ``IterableDataset``, ``TensorDataset``,
``StackDataset``, ``ConcatDataset``, ``ChainDataset``, ``Subset``, ``random_split``),
``.sampler`` (``Sampler``, ``SequentialSampler``, ``RandomSampler``, ``SubsetRandomSampler``,
``WeightedRandomSampler``, ``BatchSampler``), ``.distributed`` (``DistributedSampler``) and
``.dataloader`` (``DataLoader`` with worker processes, ``default_collate``,
``default_convert``, ``get_worker_info``).

Batches are numformer tensors. Random draws come from numformer's generators
(``manual_seed``, ``numformer.Generator``), not PyTorch's, so shuffled orders differ from
PyTorch's; when and from where they are drawn is PyTorch's (see ``dataloader``).
"""

from numformer.utils.data._collate import default_collate, default_convert
from numformer.utils.data._worker import WorkerInfo, get_worker_info
from numformer.utils.data.dataloader import DataLoader
from numformer.utils.data.dataset import (
    ChainDataset,
    ConcatDataset,
    Dataset,
    IterableDataset,
    StackDataset,
    Subset,
    TensorDataset,
    random_split,
)
from numformer.utils.data.distributed import DistributedSampler
from numformer.utils.data.sampler import (
    BatchSampler,
    RandomSampler,
    Sampler,
    SequentialSampler,
    SubsetRandomSampler,
    WeightedRandomSampler,
)

__all__ = [
    "BatchSampler",
    "ChainDataset",
    "ConcatDataset",
    "DataLoader",
    "Dataset",
    "DistributedSampler",
    "IterableDataset",
    "RandomSampler",
    "Sampler",
    "SequentialSampler",
    "StackDataset",
    "Subset",
    "SubsetRandomSampler",
    "TensorDataset",
    "WeightedRandomSampler",
    "WorkerInfo",
    "default_collate",
    "default_convert",
    "get_worker_info",
    "random_split",
]
