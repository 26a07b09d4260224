"""The MindSpore VAE program from the seed article, running on ppmodels.probability.

Changes from the MindSpore original, and only these: torch.nn modules for Cells
(``construct`` -> ``forward``, ``P.Reshape`` -> ``reshape``), a torch optimizer, the imports,
and data from scikit-learn's digits at 32x32 (MindSpore's example used MNIST at 32x32).

    python examples/vae_seed_facade.py            # 10 epochs, 9 s on a quiet 2-core machine
    python examples/vae_seed_facade.py --epochs 1 --out /tmp/vae
"""

import argparse
from pathlib import Path

import torch
import torch.nn as nn

from ppmodels import plots
from ppmodels.data import digits
from ppmodels.probability import WithLossCell
from ppmodels.probability.dpn import VAE
from ppmodels.probability.infer import ELBO, SVI

IMAGE_SHAPE = (-1, 1, 32, 32)


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(1024, 800)
        self.fc2 = nn.Linear(800, 400)
        self.relu = nn.ReLU()
        self.flatten = nn.Flatten()

    def forward(self, x):
        x = self.flatten(x)
        x = self.fc1(x)
        x = self.relu(x)
        x = self.fc2(x)
        x = self.relu(x)
        return x


class Decoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(400, 1024)
        self.sigmoid = nn.Sigmoid()

    def forward(self, z):
        z = self.fc1(z)
        z = z.reshape(IMAGE_SHAPE)
        z = self.sigmoid(z)
        return z


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--out", default="runs/example-vae-seed")
    args = parser.parse_args()
    torch.manual_seed(0)

    data = digits(image_size=32)
    ds_train = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(data.train_x, data.train_y), batch_size=128, shuffle=True
    )

    encoder = Encoder()
    decoder = Decoder()
    vae = VAE(encoder, decoder, hidden_size=400, latent_size=20)

    net_loss = ELBO(latent_prior="Normal", output_prior="Normal")
    net_with_loss = WithLossCell(vae, net_loss)
    optimizer = torch.optim.Adam(vae.trainable_params(), lr=0.001)
    vi = SVI(net_with_loss=net_with_loss, optimizer=optimizer)
    vae = vi.run(train_dataset=ds_train, epochs=args.epochs)
    trained_loss = vi.get_train_loss()
    print(f"get_train_loss() = {trained_loss:.2f} (squared error + KL per sample, MindSpore's convention)")

    generated_sample = vae.generate_sample(64, IMAGE_SHAPE)
    for x, _ in ds_train:
        reconstructed_sample = vae.reconstruct_sample(x)

    out = Path(args.out)
    plots.save(
        plots.image_grid(generated_sample.clamp(0, 1), nrow=8, title="generate_sample(64, ...)"), out / "generated.png"
    )
    plots.save(
        plots.image_grid(
            torch.cat([x[:8], reconstructed_sample[:8]]), nrow=2, title="inputs (top) and reconstruct_sample"
        ),
        out / "reconstructed.png",
    )
    print(f"wrote figures to {out.resolve()}")


if __name__ == "__main__":
    main()
