"""The conv VAE with a 2-D latent space from the seed article (Keras, MNIST), on ppmodels.

Two stride-2 convolutions, a dense layer, latent dimension 2; then the two figures of the
article: the test set's latent means coloured by label, and a decoded walk over a grid of
the latent space. Batch normalisation is left out (so evaluation needs no mode switch) and
the digits stand in for MNIST (pass --data mnist:DIR for the real thing).

    python examples/conv_vae_latent2.py            # 42 s on a quiet 2-core machine
    python examples/conv_vae_latent2.py --epochs 1 --out /tmp/conv
"""

import argparse
from pathlib import Path

import torch

from ppmodels import plots
from ppmodels.data import load
from ppmodels.infer import fit, log_likelihood
from ppmodels.models import VAE
from ppmodels.nn import ConvDecoder, ConvEncoder


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=150)
    parser.add_argument("--data", default="digits")
    parser.add_argument("--out", default="runs/example-conv-vae")
    args = parser.parse_args()

    data = load(args.data, image_size=28)
    shape = data.image_shape
    vae = VAE(
        ConvEncoder(shape, 2, channels=(8, 16), hidden_dim=20),
        ConvDecoder(2, shape, channels=(16, 8), hidden_dim=20),
        latent_dim=2,
        likelihood="bernoulli",
    )
    result = fit(vae, data.train_x, epochs=args.epochs, val_data=data.test_x, seed=0)
    ll = log_likelihood(vae, data.test_x, num_samples=200, seed=0)
    print(f"final train loss {result.train_loss[-1]:.2f}, test log p(x) (K=200) {ll.mean():.2f} nats per image")

    out = Path(args.out)
    with torch.no_grad():
        loc = vae.encode(data.test_x)[0]
    plots.save(plots.latent_scatter(loc, data.test_y), out / "latent_scatter.png")
    plots.save(plots.latent_walk(vae.decode, grid_size=15, limit=3.0), out / "latent_walk.png")
    plots.save(plots.loss_curves(result.train_loss, result.val_loss, title="conv VAE, latent 2"), out / "loss.png")
    print(f"wrote figures to {out.resolve()}")


if __name__ == "__main__":
    main()
