"""The VAE-GAN program from the seed article (MindSpore), on ppmodels.probability.

``VaeGan`` wraps ``dpn.VAE`` and adds a discriminator; ``VaeGanLoss`` subclasses ``ELBO`` and
adds three squared-error GAN terms; ``SVI`` trains it. As in the seed, one optimizer
minimises the sum of all terms. Changes from the MindSpore original: torch modules, a torch
optimizer, the imports, the digits at 32x32 for MNIST.

    python examples/vaegan_seed_facade.py             # 11 s on a quiet 2-core machine
    python examples/vaegan_seed_facade.py --epochs 1 --out /tmp/vaegan
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
        return self.relu(self.fc2(self.relu(self.fc1(self.flatten(x)))))


class Decoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(400, 1024)
        self.sigmoid = nn.Sigmoid()

    def forward(self, z):
        return self.sigmoid(self.fc1(z).reshape(IMAGE_SHAPE))


class Discriminator(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(1024, 400)
        self.fc2 = nn.Linear(400, 1)
        self.relu = nn.ReLU()
        self.sigmoid = nn.Sigmoid()
        self.flatten = nn.Flatten()

    def forward(self, x):
        return self.sigmoid(self.fc2(self.relu(self.fc1(self.flatten(x)))))


class VaeGan(nn.Module):
    def __init__(self):
        super().__init__()
        self.E = Encoder()
        self.G = Decoder()
        self.D = Discriminator()
        self.dense = nn.Linear(20, 400)
        self.vae = VAE(self.E, self.G, 400, 20)

    def forward(self, x):
        recon_x, x, mu, std = self.vae(x)
        z_p = torch.normal(torch.zeros(mu.shape), torch.ones(mu.shape))
        z_p = self.dense(z_p)
        x_p = self.G(z_p)
        ld_real = self.D(x)
        ld_fake = self.D(recon_x)
        ld_p = self.D(x_p)
        return ld_real, ld_fake, ld_p, recon_x, x, mu, std


class VaeGanLoss(ELBO):
    def __init__(self):
        super().__init__()
        self.zeros = torch.zeros_like
        self.mse = nn.MSELoss(reduction="sum")

    def forward(self, data, label):
        ld_real, ld_fake, ld_p, recon_x, x, mu, std = data
        y_real = self.zeros(ld_real) + 1
        y_fake = self.zeros(ld_fake)
        loss_D = self.mse(ld_real, y_real)
        loss_GD = self.mse(ld_p, y_fake)
        loss_G = self.mse(ld_fake, y_real)
        reconstruct_loss = self.recon_loss(x, recon_x)
        kl_loss = self.posterior("kl_loss", "Normal", self.zeros(mu), self.zeros(mu) + 1, mu, std)
        elbo_loss = reconstruct_loss + self.sum(kl_loss)
        return loss_D + loss_G + loss_GD + elbo_loss


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--out", default="runs/example-vaegan-seed")
    args = parser.parse_args()
    torch.manual_seed(0)

    data = digits(image_size=32)
    ds_train = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(data.train_x, data.train_y), batch_size=128, shuffle=True
    )
    vae_gan = VaeGan()
    net_loss = VaeGanLoss()
    net_with_loss = WithLossCell(vae_gan, net_loss)
    optimizer = torch.optim.Adam(vae_gan.parameters(), lr=0.001)
    vi = SVI(net_with_loss=net_with_loss, optimizer=optimizer)
    vae_gan = vi.run(train_dataset=ds_train, epochs=args.epochs)
    print(f"get_train_loss() = {vi.get_train_loss():.2f} (the VaeGanLoss per sample)")

    samples = vae_gan.vae.generate_sample(64, IMAGE_SHAPE)
    out = Path(args.out)
    plots.save(plots.image_grid(samples, nrow=8, title="VAE-GAN (seed program) samples"), out / "samples.png")
    print(f"wrote figures to {out.resolve()}")


if __name__ == "__main__":
    main()
