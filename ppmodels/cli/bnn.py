"""``ppmodels train bnn``: a Bayesian LeNet-5 with its uncertainty and calibration."""

from __future__ import annotations

import json

from ._options import DATA_HELP, Formatter, Options, add_run_options, number, positive_float, positive_int
from ._run import CommandError, RunDir, fit_run, resolve_device


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

    from .. import infer

    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    batches = infer.data.make_batches(
        train, args.batch_size, shuffle=True, generator=torch.Generator().manual_seed(args.seed)
    )
    for _ in range(args.pretrain_epochs):
        for xb, yb in batches:
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(xb.to(device)), yb.to(device)).backward()
            opt.step()


def run(args, explicit):
    import torch

    from .. import data as datasets
    from .. import models, nn, plots, toolbox
    from ._run import rank

    run_dir = RunDir("train bnn", args, explicit, f"runs/bnn-{args.data.partition(':')[0]}", writer=rank() == 0)
    if not 0 < args.lr_decay <= 1:
        raise CommandError(f"--lr-decay must be in (0, 1], got {args.lr_decay}")
    data = datasets.load(args.data, image_size=32 if args.data == "digits" else None, download=args.download)
    size = data.image_shape[-1]
    if data.image_shape[0] != 1 or size not in (28, 32) or data.image_shape[-2] != size:
        raise CommandError(f"LeNet-5 takes 1x28x28 or 1x32x32 images, but {data.name} has {data.image_shape}")
    device = resolve_device(args.device)
    mean, std = float(data.train_x.mean()), float(data.train_x.std())
    train, test = (data.train_x, data.train_y), (data.test_x, data.test_y)
    torch.manual_seed(args.seed)
    pretrain = None
    if args.convert:
        net = nn.LeNet5(data.num_classes, 1, size, mean, std).to(device)
        if run_dir.resuming:  # the checkpoint holds the converted weights; keep the pretraining's figures
            pretrain = _saved_pretrain(run_dir)
        else:
            _pretrain(net, train, args, device)
            with torch.no_grad():
                probs = torch.cat(
                    [
                        net.eval()(data.test_x[i : i + 1000].to(device)).softmax(-1)
                        for i in range(0, len(data.test_x), 1000)
                    ]
                )
            pretrain = {"epochs": args.pretrain_epochs, "test_accuracy": toolbox.accuracy(probs.cpu(), data.test_y)}
        pair = models.to_bayesian(net, init_scale=args.init_scale)
    else:
        pair = models.BayesianLeNet5(data.num_classes, 1, size, mean, std, init_scale=args.init_scale)
    print(
        f"{'resuming' if run_dir.resuming else 'training'} a Bayesian LeNet-5{' (converted)' if args.convert else ''} "
        f"on {data.name} {tuple(data.train_x.shape)} with {args.elbo} for {args.epochs} epochs",
        flush=True,
    )
    decay = args.lr_decay
    result, train_seconds = fit_run(
        run_dir,
        pair,
        train,
        args,
        device,
        val_data=test,
        scheduler=lambda opt: torch.optim.lr_scheduler.ExponentialLR(opt, decay),
        metrics=lambda: {"pretrain": pretrain},
        small=False,  # LeNet-5's convolutions use every thread
    )
    if result is None:  # another process than rank 0 under torchrun
        return run_dir.path

    def predict(x):
        return pair.predict(x.to(device), args.eval_samples, seed=args.seed, batch_size=500).samples.cpu()

    probs = predict(data.test_x)
    rel = toolbox.reliability(probs, data.test_y)
    epistemic = {"test digits": toolbox.classification_uncertainty(probs).epistemic}
    for name, x in _ood_inputs(data.test_x, args.seed).items():
        epistemic[name] = toolbox.classification_uncertainty(predict(x)).epistemic
    test_mi = epistemic["test digits"]
    auroc = {name: toolbox.roc(test_mi, v).auroc for name, v in epistemic.items() if name != "test digits"}
    run_dir.save_model(
        pair, {"command": "train bnn", "model": "bnn", "data": args.data, "class_names": list(data.class_names)}
    )
    metrics = {
        "status": "done",
        "model": "bnn (converted LeNet-5)" if args.convert else "bnn (BayesianLeNet5)",
        "data": data.name,
        "elbo": args.elbo,
        "epochs": args.epochs,
        "epochs_done": result.epochs,
        "seed": args.seed,
        "num_train": len(data.train_y),
        "num_test": len(data.test_y),
        "num_random_weights": pair.report.num_random,
        "pretrain": pretrain,
        "train_loss": result.train_loss,
        "test_loss": result.val_loss,
        "epoch_seconds": result.epoch_seconds,
        "train_seconds": train_seconds,
        "samples_per_second": result.samples_per_second,
        "eval_samples": args.eval_samples,
        "test_accuracy": toolbox.accuracy(probs, data.test_y),
        "test_nll": toolbox.negative_log_likelihood(probs, data.test_y),
        "test_ece": rel.ece,
        "test_brier": toolbox.brier_score(probs, data.test_y),
        "mean_epistemic": {name: float(v.mean()) for name, v in epistemic.items()},
        "ood_auroc_by_epistemic": auroc,
        "units": "losses: negative ELBO in nats per training sample; NLL in nats per test sample; "
        "epistemic: mutual information in nats",
    }
    run_dir.write_json("metrics.json", metrics)
    run_dir.figure(
        plots.loss_curves(result.train_loss, result.val_loss, title=f"Bayesian LeNet-5 on {data.name}"), "loss.png"
    )
    run_dir.figure(plots.reliability_diagram(rel), "reliability.png")
    run_dir.figure(
        plots.uncertainty_histogram(epistemic, title="test digits vs out-of-distribution inputs"), "epistemic_ood.png"
    )
    print(
        f"test accuracy {metrics['test_accuracy']:.4f}, NLL {metrics['test_nll']:.4f}, ECE {rel.ece:.4f}; "
        f"OOD AUROC by epistemic uncertainty: " + ", ".join(f"{k} {v:.3f}" for k, v in auroc.items())
    )
    print(f"wrote metrics.json, model.pt and figures to {run_dir.path.resolve()}")
    return run_dir.path


def _saved_pretrain(run_dir):
    try:
        return json.loads((run_dir.path / "metrics.json").read_text()).get("pretrain")
    except (OSError, ValueError):
        return None
