"""``ppmodels train bnn``: a Bayesian LeNet-5 with its uncertainty and calibration."""

from __future__ import annotations

import json

from ._options import (
    DATA_HELP,
    Formatter,
    Options,
    add_run_options,
    nonnegative_int,
    number,
    positive_float,
    positive_int,
)
from ._run import CommandError, TrainCommand


def add_model_parser(models, explicit):
    bnn = models.add_parser(
        "bnn",
        help="Bayesian LeNet-5 classifier with uncertainty and calibration",
        description="Train a Bayesian LeNet-5 (every weight random, N(0, 1) prior, mean-field Normal posterior, "
        "the full ELBO) and write metrics.json (accuracy, NLL, ECE, Brier, epistemic uncertainty on test vs "
        "out-of-distribution inputs), model.pt and figures.",
        formatter_class=Formatter,
    )
    o = Options(bnn, explicit)
    o.add("--data", default="digits", help=DATA_HELP)
    o.add("--download", action="store_true", default=False, help="download MNIST/Fashion-MNIST into the cache")
    o.add(
        "--convert",
        action="store_true",
        default=False,
        help="train a deterministic LeNet-5 first, then convert it (posterior means start at its weights)",
    )
    o.add("--pretrain-epochs", type=positive_int, default=5, help="deterministic epochs for --convert")
    o.add("--lr-decay", type=number, default=0.9, help="learning-rate factor per epoch, in (0, 1]")
    o.add("--init-scale", type=positive_float, default=1e-2, help="initial posterior sd")
    o.add("--eval-samples", type=positive_int, default=100, help="posterior draws for predictions")
    o.add(
        "--psis-samples",
        type=nonnegative_int,
        default=200,
        help="guide draws for PSIS's k-hat of the weight posterior on the training data (0: none)",
    )
    add_run_options(o, epochs=20, batch_size=64, lr=3e-3, out="runs/bnn-DATA")
    bnn.set_defaults(run=run)


def _ood_inputs(x, seed):
    """Out-of-distribution inputs for a digit classifier: the test digits rotated by 90
    degrees, and uniform noise images with the test images' mean brightness."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    noise = torch.rand(x.shape, generator=generator) * (2 * float(x.mean()))
    return {"rotated 90°": torch.rot90(x, 1, dims=(-2, -1)), "uniform noise": noise.clamp(0, 1)}


def _pretrain(net, train, args, device):
    import torch

    from ..infer.training.data import make_batches

    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    batches = make_batches(train, args.batch_size, shuffle=True, generator=torch.Generator().manual_seed(args.seed))
    for _ in range(args.pretrain_epochs):
        for xb, yb in batches:
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(xb.to(device)), yb.to(device)).backward()
            opt.step()


def run(args, explicit):
    return BNNCommand(args, explicit).run()


class BNNCommand(TrainCommand):
    command, model = "train bnn", "bnn"
    small = False  # LeNet-5's convolutions use every thread

    def default_out(self):
        return f"runs/bnn-{self.args.data.partition(':')[0]}"

    def check(self):
        if not 0 < self.args.lr_decay <= 1:
            raise CommandError(f"--lr-decay must be in (0, 1], got {self.args.lr_decay}")

    def load(self):
        from .. import data as datasets

        args = self.args
        data = datasets.load(args.data, image_size=32 if args.data == "digits" else None, download=args.download)
        size = data.image_shape[-1]
        if data.image_shape[0] != 1 or size not in (28, 32) or data.image_shape[-2] != size:
            raise CommandError(f"LeNet-5 takes 1x28x28 or 1x32x32 images, but {data.name} has {data.image_shape}")
        return data

    def build(self, device):
        import torch

        from .. import models, nn, toolbox

        args, data = self.args, self.data
        size, mean, std = data.image_shape[-1], float(data.train_x.mean()), float(data.train_x.std())
        self.pretrain = None
        if not args.convert:
            return models.BayesianLeNet5(data.num_classes, 1, size, mean, std, init_scale=args.init_scale)
        net = nn.LeNet5(data.num_classes, 1, size, mean, std).to(device)
        if self.run_dir.resuming:  # the checkpoint holds the converted weights; keep the pretraining's figures
            self.pretrain = _saved_pretrain(self.run_dir)
        else:
            _pretrain(net, (data.train_x, data.train_y), args, device)
            with torch.no_grad():
                probs = torch.cat(
                    [
                        net.eval()(data.test_x[i : i + 1000].to(device)).softmax(-1)
                        for i in range(0, len(data.test_x), 1000)
                    ]
                )
            self.pretrain = {
                "epochs": args.pretrain_epochs,
                "test_accuracy": toolbox.accuracy(probs.cpu(), data.test_y),
            }
        return models.to_bayesian(net, init_scale=args.init_scale)

    def describe(self):
        args, data = self.args, self.data
        return (
            f"a Bayesian LeNet-5{' (converted)' if args.convert else ''} on {data.name} {tuple(data.train_x.shape)} "
            f"with {args.elbo} for {args.epochs} epochs"
        )

    def training(self, device):
        import torch

        data, decay = self.data, self.args.lr_decay
        return (data.train_x, data.train_y), {
            "val_data": (data.test_x, data.test_y),
            "scheduler": lambda opt: torch.optim.lr_scheduler.ExponentialLR(opt, decay),
            "metrics": lambda: {"pretrain": self.pretrain},
        }

    def about(self):
        data = self.data
        return {
            "model": "bnn (converted LeNet-5)" if self.args.convert else "bnn (BayesianLeNet5)",
            "data": data.name,
            "elbo": self.args.elbo,
            "num_train": len(data.train_y),
            "num_test": len(data.test_y),
            "num_random_weights": self.pair.report.num_random,
            "pretrain": self.pretrain,
        }

    def evaluate(self, result, device):
        import torch

        from .. import infer, toolbox

        args, data, pair = self.args, self.data, self.pair

        def predict(x):
            return pair.predict(x.to(device), args.eval_samples, seed=args.seed, batch_size=500).samples.cpu()

        probs = predict(data.test_x)
        self.reliability = rel = toolbox.reliability(probs, data.test_y)
        self.epistemic = epistemic = {"test digits": toolbox.classification_uncertainty(probs).epistemic}
        for name, x in _ood_inputs(data.test_x, args.seed).items():
            epistemic[name] = toolbox.classification_uncertainty(predict(x)).epistemic
        test_mi = epistemic["test digits"]
        psis = None
        if args.psis_samples:  # the guide against the whole posterior: every training datum, one draw at a time
            x, y = data.train_x.to(device), data.train_y.to(device)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(args.seed)
                found = infer.psis(pair.model, pair.guide, x, y, num_samples=args.psis_samples)
            psis = {"k_hat": found.k_hat, "ess": found.ess, "draws": args.psis_samples, "verdict": found.verdict}
        return {
            "eval_samples": args.eval_samples,
            "test_accuracy": toolbox.accuracy(probs, data.test_y),
            "test_nll": toolbox.negative_log_likelihood(probs, data.test_y),
            "test_ece": rel.ece,
            "test_brier": toolbox.brier_score(probs, data.test_y),
            "mean_epistemic": {name: float(v.mean()) for name, v in epistemic.items()},
            "ood_auroc_by_epistemic": {
                name: toolbox.roc(test_mi, v).auroc for name, v in epistemic.items() if name != "test digits"
            },
            "train_psis": psis,
            "units": "losses: negative ELBO in nats per training sample; NLL in nats per test sample; "
            "epistemic: mutual information in nats; train_psis: PSIS of the weight guide against the posterior "
            "given the training data (k-hat of 0.7 or more: the guide misses posterior mass)",
        }

    def metadata(self):
        return {"class_names": list(self.data.class_names)}

    def figures(self, result, device, metrics):
        from .. import plots

        run_dir = self.run_dir
        run_dir.figure(
            plots.loss_curves(result.train_loss, result.val_loss, title=f"Bayesian LeNet-5 on {self.data.name}"),
            "loss.png",
        )
        run_dir.figure(plots.reliability_diagram(self.reliability), "reliability.png")
        run_dir.figure(
            plots.uncertainty_histogram(self.epistemic, title="test digits vs out-of-distribution inputs"),
            "epistemic_ood.png",
        )

    def summary(self, metrics):
        auroc = metrics["ood_auroc_by_epistemic"]
        return (
            f"test accuracy {metrics['test_accuracy']:.4f}, NLL {metrics['test_nll']:.4f}, "
            f"ECE {metrics['test_ece']:.4f}; OOD AUROC by epistemic uncertainty: "
            + ", ".join(f"{k} {v:.3f}" for k, v in auroc.items())
            + (
                f"; PSIS k-hat of the weight guide {metrics['train_psis']['k_hat']:.2f}"
                if metrics["train_psis"]
                else ""
            )
        )


def _saved_pretrain(run_dir):
    try:
        return json.loads((run_dir.path / "metrics.json").read_text()).get("pretrain")
    except (OSError, ValueError):
        return None
