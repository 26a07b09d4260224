import subprocess
import sys

import pytest
import torch

from ppmodels import infer
from ppmodels.data import digits
from ppmodels.models import CVAE, VAE
from ppmodels.nn import ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder


@pytest.fixture(scope="module")
def data():
    return digits()


def make_vae():
    torch.manual_seed(0)
    return VAE(MLPEncoder((1, 8, 8), 3, (32,)), MLPDecoder(3, (1, 8, 8), (32,)), 3)


def test_checkpoint_loads_in_a_fresh_process_and_reproduces_predictions(tmp_path, data):
    pair = CVAE(
        ConvEncoder((1, 8, 8), 2, (4, 8), 16, cond_dim=10), ConvDecoder(2, (1, 8, 8), (8, 4), 16, cond_dim=10), 2, 10
    )
    infer.fit(pair, (data.train_x, data.train_y), epochs=1, seed=0)
    path = infer.save(tmp_path / "m.pt", pair)
    x, y = data.test_x[:5], data.test_y[:5]
    torch.save({"x": x, "y": y}, tmp_path / "inputs.pt")
    expected = pair.reconstruct(x, y)
    script = (
        "import torch, sys\n"
        "from ppmodels.infer import load\n"
        f"pair = load({str(path)!r})\n"
        f"inp = torch.load({str(tmp_path / 'inputs.pt')!r}, weights_only=True)\n"
        f"torch.save(pair.reconstruct(inp['x'], inp['y']), {str(tmp_path / 'out.pt')!r})\n"
        "print(type(pair).__name__, pair.num_data)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["CVAE", "1437"]
    assert torch.equal(torch.load(tmp_path / "out.pt", weights_only=True), expected)


def test_resume_continues_exactly_where_training_stopped(tmp_path, data):
    straight = make_vae()
    full = infer.fit(straight, data.train_x, epochs=4, seed=3)
    first = make_vae()
    infer.fit(first, data.train_x, epochs=2, seed=3, checkpoint=tmp_path / "ck.pt")
    resumed = make_vae()
    result = infer.fit(resumed, data.train_x, epochs=4, seed=3, resume=tmp_path / "ck.pt")
    assert result.train_loss == full.train_loss
    for a, b in zip(straight.parameters(), resumed.parameters()):
        assert torch.equal(a, b)


def test_save_is_atomic_when_writing_fails(tmp_path, monkeypatch):
    pair = make_vae()
    path = infer.save(tmp_path / "m.pt", pair)
    before = path.read_bytes()

    def broken_save(obj, fh, *a, **k):
        fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        infer.save(path, pair)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]


class OwnEncoder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = MLPEncoder((1, 8, 8), 3)

    def forward(self, x):
        return self.inner(x)


def test_pairs_with_user_networks_load_into_a_pair_you_build(tmp_path):
    pair = VAE(OwnEncoder(), MLPDecoder(3, (1, 8, 8)), 3)
    path = infer.save(tmp_path / "own.pt", pair)
    with pytest.raises(ValueError, match=r"build the same pair and pass it as load\(path, into=pair\)"):
        infer.load(path)
    twin = VAE(OwnEncoder(), MLPDecoder(3, (1, 8, 8)), 3)
    infer.load(path, into=twin)
    x = torch.rand(2, 1, 8, 8)
    assert torch.equal(twin.reconstruct(x), pair.reconstruct(x))
    wrong = VAE(OwnEncoder(), MLPDecoder(3, (1, 8, 8), hidden_dims=(7,)), 3)
    with pytest.raises(ValueError, match="the checkpoint does not fit VAE"):
        infer.load(path, into=wrong)


def test_bad_checkpoint_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        infer.load(tmp_path / "missing.pt")
    torch.save({"hello": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="is not a ppmodels checkpoint"):
        infer.load(tmp_path / "other.pt")
    infer.save(tmp_path / "plain.pt", make_vae())
    with pytest.raises(ValueError, match="holds no training state"):
        infer.fit(make_vae(), torch.rand(8, 1, 8, 8), epochs=1, resume=tmp_path / "plain.pt")
