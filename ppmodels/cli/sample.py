"""``ppmodels sample RUN_DIR``: new draws from a saved run, for every kind of run the command writes."""

from __future__ import annotations

from pathlib import Path

from ._options import Formatter, Options, integer, labels, positive_int
from ._run import CommandError, writing

KINDS = "vae, cvae and ssvae runs (images), bnn runs (predictive draws) and np runs (sampled functions)"


def add_parser(sub, explicit):
    p = sub.add_parser(
        "sample",
        help="draw new samples from a saved run",
        description=f"Draw from the model saved in RUN_DIR and save a PNG: {KINDS}.",
        formatter_class=Formatter,
    )
    o = Options(p, explicit)
    p.add_argument("run_dir", metavar="RUN_DIR", help="a folder written by 'ppmodels train' or 'ppmodels demo'")
    o.add("--num", type=positive_int, default=64, help="samples (per label for a cvae or ssvae; inputs for bnn, np)")
    o.add("--labels", type=labels, help="labels to draw for a cvae or ssvae, e.g. 0,3,7 (default: all)")
    o.add("--draws", type=positive_int, default=100, help="posterior draws per input (bnn, np)")
    o.add("--seed", type=integer, default=0, help="seed of the draws")
    o.add("--out", help="PNG path (default: RUN_DIR/samples-SEED.png)")
    p.set_defaults(run=run)


def run(args, explicit):
    from .. import infer
    from ..infer.training.checkpoints import metadata as checkpoint_metadata

    run_dir = Path(args.run_dir)
    path = run_dir / "model.pt"
    if not path.is_file():
        raise CommandError(
            f"no checkpoint at {path}; RUN_DIR must be a folder written by 'ppmodels train' or 'ppmodels demo'"
            + (" (the run has not finished: --resume it first)" if (run_dir / "checkpoint.pt").is_file() else "")
        )
    try:
        pair = infer.load(path)
        meta = checkpoint_metadata(path)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    out = Path(args.out or run_dir / f"samples-{args.seed}.png")
    kind = meta.get("model") or type(pair).__name__.lower()
    if kind == "bnn":
        return _bnn(pair, meta, args, out)
    if kind == "np":
        return _np(pair, meta, args, out)
    if not callable(getattr(pair, "generate", None)):
        raise CommandError(f"{path} holds a {type(pair).__name__}; sample supports {KINDS}")
    return _images(pair, meta, args, out)


def _save(fig, out):
    from .. import plots

    with writing(out):
        plots.save(fig, out)


def _images(pair, meta, args, out):
    import torch

    from .. import plots

    if hasattr(pair, "num_classes"):
        chosen = args.labels if args.labels is not None else tuple(range(pair.num_classes))
        bad = [v for v in chosen if v >= pair.num_classes]
        if bad:
            raise CommandError(f"--labels {bad} outside [0, {pair.num_classes})")
        y = torch.tensor(chosen).repeat_interleave(args.num)
        images = pair.generate(y, seed=args.seed)
        names = meta.get("class_names")
        rows = images.reshape(len(chosen), args.num, *images.shape[1:])
        _save(plots.class_rows(rows, [names[v] for v in chosen] if names else None), out)
    else:
        if args.labels is not None:
            raise CommandError("--labels applies to cvae and ssvae runs only")
        images = pair.generate(args.num, seed=args.seed)
        _save(plots.image_grid(images, title=f"{args.num} samples"), out)
    print(f"wrote {len(images)} samples to {out.resolve()}")
    return out


def _bnn(pair, meta, args, out):
    from .. import data as datasets
    from .. import plots

    if args.labels is not None:
        raise CommandError("--labels applies to cvae and ssvae runs only")
    data = datasets.load(meta.get("data", "digits"), image_size=32 if meta.get("data", "digits") == "digits" else None)
    x = data.test_x[: min(args.num, len(data.test_x))]
    pred = pair.predict(x, args.draws, seed=args.seed)
    names = meta.get("class_names") or [str(i) for i in range(pred.samples.shape[-1])]
    _save(plots.predictive_draws(x, pred.samples, names, title=f"{args.draws} posterior draws per test image"), out)
    print(f"wrote the predictive draws for {len(x)} test images to {out.resolve()}")
    return out


def _np(pair, meta, args, out):
    from .. import plots
    from .neural_process import family, prediction_panels

    if args.labels is not None:
        raise CommandError("--labels applies to cvae and ssvae runs only")
    name = meta.get("data", "gp-rbf")
    functions = family(name)(
        num_functions=min(args.num, 12), num_points=meta.get("points", 50), seed=args.seed + 20_000
    )
    panels = prediction_panels(pair, functions, 10, args.seed, "cpu", count=len(functions), num_samples=args.draws)
    _save(plots.function_predictions(panels, title=f"{name}: sampled functions given 10 context points"), out)
    print(f"wrote sampled functions for {len(panels)} new functions to {out.resolve()}")
    return out
