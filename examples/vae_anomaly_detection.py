"""Anomaly detection with a VAE: train on the digits 0-4, then score held-out digits of
the same classes (normal), digits 5-9 (novel classes) and corrupted digits (noise added)
by the negative ELBO and by the negative importance-weighted log-likelihood; ROC curves and
AUROCs for each. The facade's VAEAnomalyDetection scores the same sets per sample.

    python examples/vae_anomaly_detection.py --epochs 100 --out runs/anomaly
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ppmodels import plots
from ppmodels.data import digits
from ppmodels.infer import fit
from ppmodels.models import VAE
from ppmodels.nn import MLPDecoder, MLPEncoder
from ppmodels.toolbox import anomaly_scores, roc


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/anomaly")
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    data = digits(image_size=8)
    known = data.train_y < 5
    vae = VAE(MLPEncoder((1, 8, 8), 8), MLPDecoder(8, (1, 8, 8)), latent_dim=8)
    fit(vae, data.train_x[known], epochs=args.epochs, lr=3e-3, seed=args.seed, progress=False)

    test_known = data.test_x[data.test_y < 5]
    sets = {
        "digits 5-9 (unseen classes)": data.test_x[data.test_y >= 5],
        "corrupted digits 0-4": (test_known + 0.5 * torch.rand_like(test_known)).clamp(0, 1),
    }
    out = Path(args.out)
    for score in ("elbo", "log_likelihood"):
        normal = anomaly_scores(vae, test_known, score=score, num_samples=100, seed=args.seed)
        curves = {
            name: roc(normal, anomaly_scores(vae, x, score=score, num_samples=100, seed=args.seed))
            for name, x in sets.items()
        }
        for name, curve in curves.items():
            print(f"score -{score}: {name}: AUROC {curve.auroc:.3f}")
        plots.save(plots.roc_curve(curves, title=f"anomaly score: -{score}"), out / f"roc_{score}.png")
    print(f"wrote figures to {out.resolve()}")


if __name__ == "__main__":
    main()
