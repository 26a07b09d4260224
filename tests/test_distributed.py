"""Training across processes: fit(distributed=True) under torchrun (2 CPU processes, gloo)."""

import json
import socket
import subprocess
import sys
import textwrap

import pytest
import torch

from ppmodels.infer import fit, load
from ppmodels.models import VAE
from ppmodels.nn import MLPDecoder, MLPEncoder

from tolerances import DDP_RTOL

MAP_PAIR = textwrap.dedent(
    """
    import json, os, sys
    import pyro, pyro.distributions as dist, torch
    from torch import nn
    from ppmodels.infer import fit

    class MAPRegression(nn.Module):
        '''Linear regression with a point-mass guide: its loss has no Monte Carlo noise.'''
        num_data = None
        scales_by_num_data = True  # fit sets num_data and this pair scales its batches by it

        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(3))

        def set_num_data(self, n):
            self.num_data = n

        def model(self, x, y):
            w = pyro.sample("w", dist.Normal(torch.zeros(3), 1.0).to_event(1))
            with pyro.plate("data", size=self.num_data, subsample=torch.arange(len(x))):
                pyro.sample("y", dist.Normal(x @ w, 0.5), obs=y)

        def guide(self, x, y):
            pyro.sample("w", dist.Delta(self.w).to_event(1))

    torch.manual_seed(0)
    x = torch.randn(64, 3)
    y = x @ torch.tensor([1.0, -2.0, 0.5]) + 0.5 * torch.randn(64)
    pair = MAPRegression()
    distributed = sys.argv[1] == "ddp"
    result = fit(pair, (x, y), epochs=5, batch_size=int(sys.argv[2]), lr=0.05, seed=0, distributed=distributed,
                 progress=False)
    if int(os.environ.get("RANK", 0)) == 0:
        print(json.dumps({"loss": result.train_loss, "w": pair.w.tolist()}))
    """
)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(args, cwd):
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}"]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=300, cwd=cwd)


def test_two_processes_follow_the_single_process_trajectory_with_the_same_global_batch(tmp_path):
    script = tmp_path / "map_pair.py"
    script.write_text(MAP_PAIR)
    single = subprocess.run([sys.executable, str(script), "single", "16"], capture_output=True, text=True, timeout=120)
    assert single.returncode == 0, single.stderr[-2000:]
    ddp = _torchrun([str(script), "ddp", "8"], tmp_path)  # 2 processes x 8 = the global batch of 16
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    expected, got = json.loads(single.stdout), json.loads(ddp.stdout.strip().splitlines()[-1])
    # The same arithmetic up to the order of floating-point sums.
    assert got["loss"] == pytest.approx(expected["loss"], rel=DDP_RTOL)
    assert got["w"] == pytest.approx(expected["w"], rel=DDP_RTOL, abs=1e-6)
    assert expected["loss"][-1] < 0.5 * expected["loss"][0]


def test_torchrun_cli_checkpoint_loads_in_a_single_process(tmp_path):
    out = tmp_path / "run"
    args = ["-m", "ppmodels", "train", "vae", "--epochs", "2", "--latent-dim", "2", "--hidden", "32"]
    done = _torchrun([*args, "--eval-samples", "5", "--out", str(out), "--no-progress"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("wrote metrics.json") == 1  # rank 0 alone writes
    pair = load(out / "model.pt")
    assert isinstance(pair, VAE) and pair.num_data == 1437
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 2


def test_distributed_without_torchrun_environment_is_a_clear_error(monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    vae = VAE(MLPEncoder((4,), 2), MLPDecoder(2, (4,)), latent_dim=2)
    with pytest.raises(RuntimeError, match=r"needs the environment torchrun sets, but RANK, WORLD_SIZE, MASTER_ADDR"):
        fit(vae, torch.rand(8, 4), epochs=1, distributed=True)
    with pytest.raises(TypeError, match="needs the pair to be a torch.nn.Module"):
        fit(type("P", (), {"model": lambda *a: None, "guide": lambda *a: None})(), torch.rand(8, 4), distributed=True)
