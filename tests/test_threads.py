"""fit trains a small model on one torch thread (ppmodels.infer.threads), keeps the threads for
a large one and keeps a count the user chose; the count is restored after."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer.autoguide import AutoNormal

import ppmodels.infer.threads as threads
from ppmodels.infer import Callback, fit


class _Threads(Callback):
    def __init__(self):
        self.seen = set()

    def on_step_end(self, state):
        self.seen.add(torch.get_num_threads())


def _model(x, y):
    w = pyro.sample("w", dist.Normal(torch.zeros(x.shape[1]), 1.0).to_event(1))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("y", dist.Normal(x @ w, 1.0), obs=y)


@pytest.fixture
def two_threads(monkeypatch):
    """A process whose torch (as imported) runs two threads, no thread variable set (the test
    workers run one thread each)."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    monkeypatch.setattr(threads, "_AT_IMPORT", 2)
    for name in threads.USER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    yield
    torch.set_num_threads(before)


def _threads_during_fit(rows, **options):
    x = torch.randn(rows, 5)
    seen = _Threads()
    fit((_model, AutoNormal(_model)), (x, x.sum(-1)), epochs=2, callbacks=[seen], progress=False, **options)
    return seen.seen


def test_a_small_model_trains_on_one_thread_and_the_count_is_restored(two_threads):
    assert _threads_during_fit(200) == {1}
    assert torch.get_num_threads() == 2


def test_a_model_whose_data_reach_the_grain_size_keeps_every_thread(two_threads):
    rows = threads.GRAIN_SIZE // 5 + 1  # 5 columns: the data tensor reaches the grain size
    assert _threads_during_fit(rows) == {2}


def test_mini_batches_are_judged_by_one_batch(two_threads):
    rows = threads.GRAIN_SIZE // 5 + 1  # the whole data set reaches the grain size, a batch of 1,000 not

    def model(x, y, subsample=None):
        w = pyro.sample("w", dist.Normal(torch.zeros(5), 1.0).to_event(1))
        with pyro.plate("data", rows, subsample=subsample):
            pyro.sample("y", dist.Normal(x @ w, 1.0), obs=y)

    x = torch.randn(rows, 5)
    for batch_size, expected in ((1000, {1}), (rows, {2})):
        seen = _Threads()
        fit(
            (model, AutoNormal(model)),
            (x, x.sum(-1)),
            epochs=1,
            batch_size=batch_size,
            callbacks=[seen],
            progress=False,
        )
        assert seen.seen == expected, batch_size


def test_a_count_the_user_set_or_an_environment_variable_is_kept(two_threads, monkeypatch):
    torch.set_num_threads(3)  # set after ppmodels was imported: the user's
    assert _threads_during_fit(200) == {3}
    torch.set_num_threads(2)
    for name, value in (("PPMODELS_THREADS", "omp"), ("OMP_NUM_THREADS", "2")):
        monkeypatch.setenv(name, value)
        assert _threads_during_fit(200) == {2}, name
        monkeypatch.delenv(name)


def test_sizes_unknown_or_another_device_leave_the_threads_alone(two_threads):
    assert not threads.is_small(None)
    assert threads.is_small([10, threads.GRAIN_SIZE - 1]) and not threads.is_small([threads.GRAIN_SIZE])
    with threads.one_thread_if_small([10], device="cuda"):
        assert torch.get_num_threads() == 2
    with threads.one_thread_if_small(None):
        assert torch.get_num_threads() == 2
    with threads.one_thread_if_small([10], device="cpu"):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
