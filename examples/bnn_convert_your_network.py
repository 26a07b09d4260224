"""Convert your own network: a small CNN trained deterministically, then made Bayesian in
its last layer only (a cheap, popular choice) and in full, starting from its weights.

Shows the conversion report, that the converted network keeps the forward contract (the
posterior-mean network reproduces the deterministic one exactly before training), and what
the extra training buys: calibration (ECE) and epistemic uncertainty on inputs unlike the
training data.

    python examples/bnn_convert_your_network.py --epochs 10 --out runs/bnn-convert
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from ppmodels import plots
from ppmodels.data import digits
from ppmodels.infer import fit
from ppmodels.models import to_bayesian
from ppmodels.toolbox import accuracy, classification_uncertainty, expected_calibration_error


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1, padding_mode="reflect"),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(4),
        )
        self.head = nn.Linear(32 * 16, 10)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/bnn-convert")
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    data = digits(image_size=28)
    x, y, xt, yt = data.train_x, data.train_y, data.test_x, data.test_y

    net = SmallCNN()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(args.epochs):
        for i in torch.randperm(len(x)).split(64):
            opt.zero_grad()
            F.cross_entropy(net(x[i]), y[i]).backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        det_probs = net(xt).softmax(-1)
    print(f"deterministic: accuracy {accuracy(det_probs, yt):.4f}, ECE {expected_calibration_error(det_probs, yt):.4f}")

    noise = torch.rand(200, 1, 28, 28)
    results = {}
    for name, options in (("last layer", {"include": "head"}), ("all layers", {})):
        bnn = to_bayesian(net, **options)
        print(f"\n{name}:\n{bnn.report}")
        with torch.no_grad():
            assert torch.allclose(bnn.eval().posterior_mean_network()(xt), net(xt), atol=1e-5)
        fit(bnn, (x, y), epochs=args.epochs, batch_size=64, lr=3e-3, seed=args.seed, progress=False)
        probs = bnn.predict(xt, 50, seed=0).samples
        results[name] = {
            "test digits": classification_uncertainty(probs).epistemic,
            "uniform noise": classification_uncertainty(bnn.predict(noise, 50, seed=0).samples).epistemic,
        }
        print(
            f"{name}: accuracy {accuracy(probs, yt):.4f}, ECE {expected_calibration_error(probs, yt):.4f}, "
            f"mean epistemic on test {float(results[name]['test digits'].mean()):.4f} "
            f"vs noise {float(results[name]['uniform noise'].mean()):.4f} nats"
        )
        deploy = bnn.posterior_mean_network()
        print(f"{name}: posterior-mean network for deployment is a plain {type(deploy).__name__}")

    out = Path(args.out)
    for name, values in results.items():
        slug = name.replace(" ", "_")
        plots.save(plots.uncertainty_histogram(values, title=f"converted ({name})"), out / f"epistemic_{slug}.png")
    print(f"wrote figures to {out.resolve()}")


if __name__ == "__main__":
    main()
