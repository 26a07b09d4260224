"""``ppmodels train ssvae``: the semi-supervised VAE (M2) with few labels."""

from __future__ import annotations

from ._options import DATA_HELP, Formatter, Options, add_run_options, dims, nonnegative_float, positive_int
from ._run import CommandError, TrainCommand


def add_model_parser(models, explicit):
    p = models.add_parser(
        "ssvae",
        help="semi-supervised VAE (M2): a classifier and a generative model from few labels",
        description="Train the semi-supervised VAE M2 (Kingma et al. 2014) on --labels labelled images (the "
        "same number per class) and the rest of the training set unlabelled; the label is enumerated where it "
        "is unknown. Writes metrics.json (test accuracy of q(y|x), test ELBO, and the accuracy of the same "
        "classifier network trained on the labels alone), model.pt and figures.",
        formatter_class=Formatter,
    )
    o = Options(p, explicit)
    o.add("--labels", type=positive_int, default=100, help="labelled training images (balanced over classes)")
    o.add("--data", default="digits", help=DATA_HELP)
    o.add("--download", action="store_true", default=False, help="download MNIST/Fashion-MNIST into the cache")
    o.add("--image-size", type=positive_int, help="resize images to this square size (default: the data's own)")
    o.add("--hidden", type=dims, default=(256,), help="hidden widths of the three networks")
    o.add("--latent-dim", type=positive_int, default=8, help="dimension of z")
    o.add(
        "--aux-weight",
        type=nonnegative_float,
        help="weight α of the auxiliary loss α·log q(y|x) on labelled data; 0 turns it off "
        "(default: 0.1 x the training set's size, as Kingma et al.)",
    )
    o.add("--baseline-steps", type=positive_int, default=500, help="full-batch steps of the supervised baseline")
    o.add(
        "--labelled-batch-size", type=positive_int, help="labelled images per step (default: min(labels, batch size))"
    )
    add_run_options(o, epochs=60, batch_size=128, lr=3e-3, out="runs/ssvae-DATA-LABELS", estimators=("enum",))
    p.set_defaults(run=run)


def build(args, shape, num_classes, num_data):
    from .. import models, nn

    hidden = tuple(args.hidden)
    aux = 0.1 * num_data if args.aux_weight is None else args.aux_weight
    return models.SSVAE(
        nn.MLPClassifier(shape, num_classes, hidden),
        nn.MLPEncoder(shape, args.latent_dim, hidden, cond_dim=num_classes),
        nn.MLPDecoder(args.latent_dim, shape, tuple(reversed(hidden)), cond_dim=num_classes),
        args.latent_dim,
        num_classes,
        aux_weight=aux,
    )


def supervised_baseline(x, y, x_test, y_test, shape, num_classes, hidden, steps, seed):
    """The classifier network alone, trained on the labelled images by cross-entropy
    (full batch, Adam 1e-3, weight decay 1e-4): the accuracy M2 must beat."""
    import torch

    from .. import nn

    torch.manual_seed(seed)
    net = nn.MLPClassifier(shape, num_classes, hidden)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=1e-4)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    with torch.no_grad():
        return float((net(x_test).argmax(-1) == y_test).float().mean())


def run(args, explicit):
    return SSVAECommand(args, explicit).run()


class SSVAECommand(TrainCommand):
    command, model = "train ssvae", "ssvae"

    def default_out(self):
        return f"runs/ssvae-{self.args.data.partition(':')[0]}-{self.args.labels}"

    def load(self):
        from .. import data as datasets

        args = self.args
        data = datasets.load(args.data, image_size=args.image_size, download=args.download)
        if args.labels < data.num_classes or args.labels >= len(data.train_y):
            raise CommandError(
                f"--labels must be between the {data.num_classes} classes and the {len(data.train_y)} training "
                f"images, got {args.labels}"
            )
        self.split = datasets.split_labelled(data.train_x, data.train_y, args.labels, data.num_classes, seed=args.seed)
        return data

    def build(self, device):
        return build(self.args, self.data.image_shape, self.data.num_classes, len(self.data.train_y))

    def describe(self):
        args, x_u = self.args, self.split[2]
        return (
            f"M2 on {self.data.name}: {args.labels} labelled and {len(x_u)} unlabelled images, "
            f"α = {self.pair.aux_weight:g}, for {args.epochs} epochs"
        )

    def training(self, device):
        from .. import data as datasets

        x_l, y_l, x_u = self.split
        args = self.args
        batches = datasets.SemiSupervisedBatches(
            (x_l, y_l), x_u, args.batch_size, labelled_batch_size=args.labelled_batch_size, seed=args.seed
        )
        return batches, {"batch_size": None}

    def about(self):
        return {
            "model": "ssvae (M2)",
            "data": self.data.name,
            "labels": self.args.labels,
            "num_unlabelled": len(self.split[2]),
            "aux_weight": self.pair.aux_weight,
            "elbo": self.args.elbo,
        }

    def evaluate(self, result, device):
        import torch

        args, data, pair = self.args, self.data, self.pair
        x_l, y_l, _ = self.split
        test_x, test_y = data.test_x.to(device), data.test_y.to(device)
        with torch.no_grad():
            accuracy = float((pair.classify(test_x) == test_y).float().mean())
        test_elbo = float(pair.elbo(test_x, seed=args.seed).mean())
        baseline = supervised_baseline(
            x_l.to(device),
            y_l.to(device),
            test_x,
            test_y,
            data.image_shape,
            data.num_classes,
            tuple(args.hidden),
            args.baseline_steps,
            args.seed,
        )
        return {
            "test_accuracy": accuracy,
            "test_elbo": test_elbo,
            "supervised_baseline_accuracy": baseline,
            "units": "losses: negative ELBO in nats per training image (labelled and unlabelled); test ELBO in "
            "nats per test image, the label summed out",
        }

    def metadata(self):
        return {"class_names": list(self.data.class_names)}

    def figures(self, result, device, metrics):
        import torch

        from .. import plots

        args, data = self.args, self.data
        self.run_dir.figure(
            plots.loss_curves(result.train_loss, title=f"M2 on {data.name}, {args.labels} labels"), "loss.png"
        )
        per = 10
        with torch.no_grad():
            labels = torch.arange(data.num_classes, device=device).repeat_interleave(per)
            samples = self.pair.generate(labels, seed=args.seed)
        rows = samples.cpu().reshape(data.num_classes, per, *samples.shape[1:])
        self.run_dir.figure(plots.class_rows(rows, data.class_names, title="samples per class"), "class_samples.png")

    def summary(self, metrics):
        return (
            f"test accuracy {metrics['test_accuracy']:.4f} (the classifier trained on the {self.args.labels} labels "
            f"alone: {metrics['supervised_baseline_accuracy']:.4f}); test ELBO {metrics['test_elbo']:.2f} nats per "
            "image"
        )
