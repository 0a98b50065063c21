import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

import numformer as nf

settings.register_profile(
    "default",
    max_examples=int(os.environ.get("NUMFORMER_EXAMPLES", "50")),
    deadline=None,
    # CI replays the same examples every run (reproducible); locally each run explores anew.
    derandomize=bool(os.environ.get("CI")),
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("default")


@pytest.fixture(autouse=True)
def _reset_numformer_state():
    """Every test starts from float32, a fixed seed and serial kernels, whatever the previous
    one changed (the CLI's ``main`` turns kernel threads on)."""
    nf.set_default_dtype(np.float32)
    nf.manual_seed(0)
    nf.set_num_threads(1)
    yield
    nf.set_default_dtype(np.float32)
    nf.set_num_threads(1)
