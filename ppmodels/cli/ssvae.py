"""``ppmodels train ssvae``: the semi-supervised VAE (M2) with few labels."""

from __future__ import annotations

from ._options import DATA_HELP, Formatter, Options, add_run_options, dims, nonnegative_float, positive_int
from ._run import CommandError, RunDir, fit_run, resolve_device


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
    import torch

    from .. import data as datasets
    from .. import plots

    run_dir = RunDir("train ssvae", args, explicit, f"runs/ssvae-{args.data.partition(':')[0]}-{args.labels}")
    data = datasets.load(args.data, image_size=args.image_size, download=args.download)
    if args.labels < data.num_classes or args.labels >= len(data.train_y):
        raise CommandError(
            f"--labels must be between the {data.num_classes} classes and the {len(data.train_y)} training images, "
            f"got {args.labels}"
        )
    device = resolve_device(args.device)
    x_l, y_l, x_u = datasets.split_labelled(data.train_x, data.train_y, args.labels, data.num_classes, seed=args.seed)
    batches = datasets.SemiSupervisedBatches(
        (x_l, y_l), x_u, args.batch_size, labelled_batch_size=args.labelled_batch_size, seed=args.seed
    )
    torch.manual_seed(args.seed)
    pair = build(args, data.image_shape, data.num_classes, len(data.train_y))
    print(
        f"{'resuming' if run_dir.resuming else 'training'} M2 on {data.name}: {args.labels} labelled and "
        f"{len(x_u)} unlabelled images, α = {pair.aux_weight:g}, for {args.epochs} epochs",
        flush=True,
    )
    result, train_seconds = fit_run(run_dir, pair, batches, args, device, batch_size=None)
    test_x, test_y = data.test_x.to(device), data.test_y.to(device)
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
    run_dir.save_model(
        pair, {"command": "train ssvae", "model": "ssvae", "data": args.data, "class_names": list(data.class_names)}
    )
    metrics = {
        "status": "done",
        "model": "ssvae (M2)",
        "data": data.name,
        "labels": args.labels,
        "num_unlabelled": len(x_u),
        "aux_weight": pair.aux_weight,
        "elbo": args.elbo,
        "epochs": args.epochs,
        "epochs_done": result.epochs,
        "seed": args.seed,
        "train_loss": result.train_loss,
        "epoch_seconds": result.epoch_seconds,
        "train_seconds": train_seconds,
        "test_accuracy": accuracy,
        "test_elbo": test_elbo,
        "supervised_baseline_accuracy": baseline,
        "units": "losses: negative ELBO in nats per training image (labelled and unlabelled); test ELBO in "
        "nats per test image, the label summed out",
    }
    run_dir.write_json("metrics.json", metrics)
    run_dir.figure(plots.loss_curves(result.train_loss, title=f"M2 on {data.name}, {args.labels} labels"), "loss.png")
    per = 10
    with torch.no_grad():
        samples = pair.generate(torch.arange(data.num_classes, device=device).repeat_interleave(per), seed=args.seed)
    rows = samples.cpu().reshape(data.num_classes, per, *samples.shape[1:])
    run_dir.figure(plots.class_rows(rows, data.class_names, title="samples per class"), "class_samples.png")
    print(
        f"test accuracy {accuracy:.4f} (the classifier trained on the {args.labels} labels alone: {baseline:.4f}); "
        f"test ELBO {test_elbo:.2f} nats per image"
    )
    print(f"wrote metrics.json, model.pt and figures to {run_dir.path.resolve()}")
    return run_dir.path
