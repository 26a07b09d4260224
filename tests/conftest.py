import os

import matplotlib
import pyro
import pytest

matplotlib.use("Agg")
os.environ.setdefault("PPMODELS_CACHE", os.path.join(os.path.dirname(__file__), ".cache-unused"))


@pytest.fixture(autouse=True)
def _fresh_pyro_state():
    """Seed before each test and clear Pyro's global state (as Pyro's own tests do)."""
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    yield
    pyro.clear_param_store()
