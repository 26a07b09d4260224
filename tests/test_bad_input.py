"""Bad input across the public API: the right exception type, naming the argument, what was
received and what is accepted."""

import pytest
import torch

from ppmodels import data, infer, nn
from ppmodels.models import VAE


def vae():
    return VAE(nn.MLPEncoder((4,), 2, (8,)), nn.MLPDecoder(2, (4,), (8,)), 2)


X = torch.rand(16, 4)

CASES = [
    (lambda: infer.fit(vae(), X, lr=-1.0), ValueError, r"`lr` must be a positive finite number, but got -1.0"),
    (lambda: infer.fit(vae(), X, lr="fast"), TypeError, r"`lr` must be a positive number, but got 'fast'"),
    (lambda: infer.fit(vae(), X, batch_size=0), ValueError, r"`batch_size` must be a positive int, but got 0"),
    (lambda: infer.fit(vae(), X, seed=-3), ValueError, r"`seed` must be a non-negative int, but got -3"),
    (lambda: infer.fit(vae(), X, num_particles=0), ValueError, r"`num_particles` must be a positive int, but got 0"),
    (lambda: infer.fit(vae(), X, elbo=3), TypeError, r"`elbo` must be a name in \['enum', 'iwae', .*but got int"),
    (lambda: infer.get_elbo("iwae", alpha=0.5), ValueError, r"`alpha` does not apply to 'iwae'"),
    (lambda: infer.get_elbo("renyi", alpha=1.0), ValueError, r"`alpha` for 'renyi' must be >= 0 and != 1"),
    (
        lambda: infer.save("x.pt", "not a module"),
        TypeError,
        r"`pair` must be a torch.nn.Module to be saved, but got str",
    ),
    (
        lambda: infer.elbo(vae(), "data"),
        TypeError,
        r"`data` must be a tensor, a tuple or dict of the model.s arguments",
    ),
    (lambda: vae().generate(0), ValueError, r"`num_samples` must be a positive int, but got 0"),
    (lambda: vae().generate(2.5), TypeError, r"`num_samples` must be a positive int, but got 2.5"),
    (lambda: vae().encode([1, 2]), TypeError, r"`x` must be a torch.Tensor, but got list"),
    (lambda: vae().encode(torch.rand(4)), ValueError, r"`x` must be a batch of shape \(B, ...\), but got shape \(4,\)"),
    (
        lambda: nn.MLPEncoder((4,), 2)(torch.rand(3, 5)),
        ValueError,
        r"MLPEncoder expects inputs of shape \(..., 4\), got \(3, 5\)",
    ),
    (lambda: nn.MLPDecoder(2, (), (8,)), TypeError, r"`output_shape` must be a non-empty tuple of positive ints"),
    (
        lambda: nn.MLPEncoder((4,), 2, cond_dim=3)(torch.rand(2, 4)),
        ValueError,
        r"MLPEncoder was built with cond_dim=3 and needs a condition tensor",
    ),
    (
        lambda: nn.MLPDecoder(2, (4,))(torch.rand(2, 2), torch.rand(2, 3)),
        ValueError,
        r"MLPDecoder was built with cond_dim=0 but received a condition",
    ),
    (
        lambda: nn.GaussianHead(4, 2, parameterization="exp"),
        ValueError,
        r"`parameterization` must be one of \['softplus', 'log_var'\], but got 'exp'",
    ),
    (lambda: data.digits(test_fraction=1.5), ValueError, r"`test_fraction` must be a float in \(0, 1\), but got 1.5"),
    (lambda: data.load(42), TypeError, r"`data` must be a string such as 'digits' or 'mnist:DIR', but got 42"),
    (lambda: data.mnist(), ValueError, r"mnist: give the folder holding the IDX files, or pass download=True"),
]


@pytest.mark.parametrize("call,error,match", CASES, ids=[f"case{i}" for i in range(len(CASES))])
def test_bad_input_message(call, error, match, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(error, match=match):
        call()
