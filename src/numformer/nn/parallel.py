"""``nn.parallel``: data parallelism as PyTorch's modules, on numformer's MPI.

``DistributedDataParallel(module)`` makes a module train data-parallel: rank 0's parameters and
buffers are broadcast at construction, and during each backward every parameter's gradient is
averaged over the ranks (``numformer.distributed.GradientReducer``: a
bucket's ``Iallreduce`` starts once its gradients are complete), so every rank takes the same
optimiser step.
``no_sync()`` (or ``require_backward_grad_sync = False``, as nanoGPT sets it) skips the average
for gradient-accumulation steps. ``DataParallel`` (one process, several GPUs) runs the module
as it is: numformer computes on one device.
"""

from __future__ import annotations

import contextlib

from numformer import autograd, distributed
from numformer.nn.module import Module


class DistributedDataParallel(Module):
    """``module`` trained data-parallel over this job's ranks (PyTorch's
    ``torch.nn.parallel.DistributedDataParallel``); the module is ``self.module``, so state-dict
    keys carry the ``module.`` prefix as PyTorch's do.

    Args:
        module: the model.
        device_ids, output_device, dim, process_group: accepted for PyTorch's programs; numformer
            runs one device per process.
        broadcast_buffers: broadcast the buffers too at construction (PyTorch's default).
        bucket_cap_mb: the most megabytes averaged in one collective.
        find_unused_parameters: accepted (parameters without a gradient keep None, as in one
            process).

    Shape:
        the module's own.
    """

    def __init__(
        self,
        module: Module,
        device_ids=None,
        output_device=None,
        dim: int = 0,
        broadcast_buffers: bool = True,
        process_group=None,
        bucket_cap_mb: float = 25,
        find_unused_parameters: bool = False,
        **kwargs,
    ):
        super().__init__()
        if not isinstance(module, Module):
            raise TypeError(f"DistributedDataParallel: expected a numformer Module, got {type(module).__name__}")
        self.module = module
        self.world = distributed.world()
        self.bucket_bytes = int(bucket_cap_mb * 2**20)
        self.require_backward_grad_sync = True
        distributed.broadcast_parameters(module, self.world)
        self.reducer = distributed.GradientReducer(module, self.world, self.bucket_bytes)

    def forward(self, *inputs, **kwargs):
        """The module's forward; when gradients are recorded and synchronisation is on, the
        next backward ends by averaging the gradients over the ranks."""
        if autograd.is_grad_enabled() and self.require_backward_grad_sync and self.world.size > 1:
            self.reducer.arm()
            autograd.after_backward(self.reducer.finish)
        return self.module(*inputs, **kwargs)

    @contextlib.contextmanager
    def no_sync(self):
        """Backward passes inside the block keep their gradients to this rank (accumulation)."""
        before, self.require_backward_grad_sync = self.require_backward_grad_sync, False
        try:
            yield
        finally:
            self.require_backward_grad_sync = before


class DataParallel(Module):
    """PyTorch's single-process ``DataParallel``: numformer computes on one device, so the
    module runs as it is (``self.module``).

    Shape:
        the module's own.

    Args:
        module: the model.
        device_ids: accepted for PyTorch's programs (numformer runs one device per process).
        output_device: accepted for PyTorch's programs.
        dim: accepted for PyTorch's programs.
    """

    def __init__(self, module: Module, device_ids=None, output_device=None, dim: int = 0):
        super().__init__()
        self.module = module

    def forward(self, *inputs, **kwargs):
        return self.module(*inputs, **kwargs)
