"""The two programs of the Bayesian-network seed (MindSpore's bnn_layers / transforms guide),
on ppmodels' facade: imports changed, torch modules and optimizers in place of MindSpore's.

1. A Bayesian LeNet-5 built from ``bnn_layers.ConvReparam``/``DenseReparam``, trained with
   ``WithBNNLossCell`` + ``TrainOneStepCell`` batch by batch, as the seed does.
2. A deterministic LeNet-5 turned Bayesian in one call with ``TransformToBNN``.

The digits (32x32) stand in for MNIST, so ``dnn_factor`` is the training-set size (1437)
where the seed has 60000. With the KL the right way round (KL(q||p); MindSpore computes
KL(p||q)), ``bnn_factor=1`` gives the full negative ELBO; the seed's ``1e-6`` would make
the network all but deterministic.

    python examples/bnn_seed_facade.py --epochs 10 --out runs/bnn-seed
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn

from ppmodels import plots
from ppmodels.data import digits
from ppmodels.infer.training.data import TensorBatches
from ppmodels.probability import TrainOneStepCell, WithLossCell, bnn_layers, transforms


class BNNLeNet5(nn.Module):
    """The seed's Bayesian LeNet-5 (MindSpore Cell -> torch Module; construct -> forward)."""

    def __init__(self, num_class=10):
        super().__init__()
        self.num_class = num_class
        self.conv1 = bnn_layers.ConvReparam(1, 6, 5, stride=1, padding=0, has_bias=False, pad_mode="valid")
        self.conv2 = bnn_layers.ConvReparam(6, 16, 5, stride=1, padding=0, has_bias=False, pad_mode="valid")
        self.fc1 = bnn_layers.DenseReparam(16 * 5 * 5, 120)
        self.fc2 = bnn_layers.DenseReparam(120, 84)
        self.fc3 = bnn_layers.DenseReparam(84, self.num_class)
        self.relu = nn.ReLU()
        self.max_pool2d = nn.MaxPool2d(kernel_size=2, stride=2)
        self.flatten = nn.Flatten()

    def forward(self, x):
        x = self.max_pool2d(self.relu(self.conv1(x)))
        x = self.max_pool2d(self.relu(self.conv2(x)))
        x = self.flatten(x)
        x = self.relu(self.fc1(x))
        x = self.relu(self.fc2(x))
        return self.fc3(x)


class LeNet5(nn.Module):
    """The seed's deterministic LeNet-5 for the one-call transform."""

    def __init__(self, num_class=10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, bias=False)
        self.conv2 = nn.Conv2d(6, 16, 5, bias=False)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_class)
        self.relu = nn.ReLU()
        self.max_pool2d = nn.MaxPool2d(kernel_size=2, stride=2)
        self.flatten = nn.Flatten()

    def forward(self, x):
        x = self.max_pool2d(self.relu(self.conv1(x)))
        x = self.max_pool2d(self.relu(self.conv2(x)))
        x = self.flatten(x)
        x = self.relu(self.fc1(x))
        x = self.relu(self.fc2(x))
        return self.fc3(x)


def train_model(train_network, network, dataset):
    """One epoch: the seed's train_model (loss and accuracy over the batches)."""
    losses, correct, seen = [], 0, 0
    for data, label in dataset:
        losses.append(float(train_network(data, label)))
        with torch.no_grad():
            correct += int((network(data).argmax(1) == label).sum())  # one posterior draw
        seen += len(label)
    return sum(losses) / len(losses), correct / seen


def validate_model(network, dataset, num_samples=20):
    """Accuracy of the posterior predictive: class probabilities averaged over weight draws."""
    correct = seen = 0
    with torch.no_grad():
        for data, label in dataset:
            probs = torch.stack([network(data).softmax(1) for _ in range(num_samples)]).mean(0)
            correct += int((probs.argmax(1) == label).sum())
            seen += len(label)
    return correct / seen


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/bnn-seed", help="folder for the figure")
    args = parser.parse_args(argv)
    history = {}
    torch.manual_seed(args.seed)
    data = digits(image_size=32)
    n = len(data.train_y)
    train_set = TensorBatches((data.train_x, data.train_y), 64, shuffle=True)
    test_set = TensorBatches((data.test_x, data.test_y), 64, shuffle=False)
    criterion = nn.CrossEntropyLoss(reduction="mean")  # SoftmaxCrossEntropyWithLogits(sparse=True, "mean")

    # 1. Bayesian LeNet-5 from bnn_layers.
    network = BNNLeNet5(num_class=10)
    optimizer = torch.optim.AdamW(network.parameters(), lr=args.lr, weight_decay=0.0)  # AdamWeightDecay
    net_with_loss = bnn_layers.WithBNNLossCell(network, criterion, dnn_factor=n, bnn_factor=1)
    train_bnn_network = TrainOneStepCell(net_with_loss, optimizer)
    train_bnn_network.train()
    history["1. bnn_layers LeNet-5"] = losses = []
    for i in range(args.epochs):
        train_loss, train_acc = train_model(train_bnn_network, network, train_set)
        valid_acc = validate_model(network, test_set)
        losses.append(train_loss / n)
        print(
            f"Epoch: {i} \tTraining Loss: {train_loss:.4f} \tTraining Accuracy: {train_acc:.4f} "
            f"\tvalidation Accuracy: {valid_acc:.4f}"
        )

    # 2. The one-call transform of a deterministic LeNet-5.
    network = LeNet5()
    optimizer = torch.optim.AdamW(network.parameters(), lr=args.lr, weight_decay=0.0)
    net_with_loss = WithLossCell(network, criterion)
    train_network = TrainOneStepCell(net_with_loss, optimizer)
    bnn_transformer = transforms.TransformToBNN(train_network, dnn_factor=n, bnn_factor=1)
    train_bnn_network = bnn_transformer.transform_to_bnn_model()
    print("transformed:", [type(m).__name__ for m in network.children()])
    history["2. TransformToBNN LeNet-5"] = losses = []
    for i in range(args.epochs):
        train_loss, train_acc = train_model(train_bnn_network, network, train_set)
        valid_acc = validate_model(network, test_set)
        losses.append(train_loss / n)
        print(
            f"Epoch: {i} \tTraining Loss: {train_loss:.4f} \tTraining Accuracy: {train_acc:.4f} "
            f"\tvalidation Accuracy: {valid_acc:.4f}"
        )
    out = Path(args.out)
    names = list(history)
    fig = plots.loss_curves(history[names[0]], ylabel="loss / N (nats per training digit)", title="seed programs")
    fig.axes[0].plot(range(1, len(history[names[1]]) + 1), history[names[1]], label=names[1])
    fig.axes[0].lines[0].set_label(names[0])
    fig.axes[0].legend()
    plots.save(fig, out / "seed_losses.png")
    print(f"wrote figures to {out.resolve()}")
    return valid_acc


if __name__ == "__main__":
    main()
