import os

import matplotlib
import pyro
import pytest
import torch

matplotlib.use("Agg")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # pytest -n N runs N worker processes: split the cores between them rather than oversubscribe
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))))
os.environ.setdefault("PPMODELS_CACHE", os.path.join(os.path.dirname(__file__), ".cache-unused"))


@pytest.fixture(autouse=True)
def _fresh_pyro_state():
    """Seed before each test and clear Pyro's global state (as Pyro's own tests do)."""
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    yield
    pyro.clear_param_store()
