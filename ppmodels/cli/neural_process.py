"""``ppmodels train np``: a neural process on GP or sine function families, against the exact GP."""

from __future__ import annotations

from ._options import NP_FAMILIES, Formatter, Options, add_run_options, positive_int
from ._run import CommandError, RunDir, fit_run, launched_by_torchrun, resolve_device

KL = "KL(q(z|targets) || q(z|context))"
LOSS = "loss (negative ELBO, nats per function)"
SD = "mean sd of q(z|context)"


def add_model_parser(models, explicit):
    npr = models.add_parser(
        "np",
        help="neural process on GP or sine function families, checked against the exact GP",
        description="Train a latent neural process (Pyro model/guide pair) on random functions and write "
        "metrics.json (per-target log-likelihood, its gap to the exact GP predictive with the true "
        "hyperparameters, 90% interval coverage inside and outside the context range), model.pt and figures.",
        formatter_class=Formatter,
    )
    o = Options(npr, explicit)
    o.add("--data", choices=NP_FAMILIES, default="gp-rbf", help="function family")
    o.add("--functions", type=positive_int, default=8000, help="training functions (fresh ones every epoch)")
    o.add("--points", type=positive_int, default=50, help="points per function")
    o.add("--min-context", type=positive_int, default=3, help="fewest context points in a training batch")
    o.add("--max-context", type=positive_int, default=45, help="most context points in a training batch")
    o.add("--attention", action="store_true", default=False, help="attentive deterministic path (ANP)")
    o.add("--hidden", type=positive_int, default=64, help="hidden width")
    o.add("--latent-dim", type=positive_int, default=32, help="latent dimension")
    o.add("--eval-context", type=positive_int, default=10, help="context points when evaluating")
    o.add("--eval-functions", type=positive_int, default=500, help="held-out functions")
    o.add("--eval-samples", type=positive_int, default=200, help="draws of z when evaluating")
    add_run_options(o, epochs=40, batch_size=16, lr=1e-3, out="runs/np-DATA", batch_help="functions per step")
    npr.set_defaults(run=run)


def family(name):
    from .. import data as datasets

    if name.startswith("gp-"):
        kernel = name[3:]
        return lambda **kw: datasets.gp_functions(kernel, **kw)
    return lambda **kw: datasets.sine_functions(**kw)


def _diagnostics(pair, probe):
    """A callback recording, after each epoch, the KL between the latent given the targets
    and given the context, and the mean sd of the latent given the context, on fixed probe
    functions; its history is saved with the checkpoint."""
    import torch

    from ..infer import Callback

    class Diagnostics(Callback):
        def __init__(self):
            self.history = {LOSS: [], KL: [], SD: []}

        def on_epoch_end(self, state):
            with torch.no_grad():
                prior, posterior = pair.latent(probe[0], probe[1]), pair.latent(probe[2], probe[3])
                self.history[KL].append(float(torch.distributions.kl_divergence(posterior, prior).mean()))
                self.history[SD].append(float(prior.base_dist.scale.mean()))
            self.history[LOSS].append(state.result.train_loss[-1])

        def state_dict(self):
            return {"history": self.history}

        def load_state_dict(self, state):
            self.history = state["history"]

    return Diagnostics()


def run(args, explicit):
    import torch

    from .. import data as datasets
    from .. import models, toolbox

    if launched_by_torchrun():
        raise CommandError("'ppmodels train np' runs in one process; launch it without torchrun")
    if args.min_context > args.max_context or args.max_context > args.points:
        raise CommandError(
            f"--min-context ({args.min_context}) <= --max-context ({args.max_context}) <= --points ({args.points}) "
            "is required"
        )
    if args.eval_context >= args.points:
        raise CommandError(f"--eval-context ({args.eval_context}) must be fewer than --points ({args.points})")
    run_dir = RunDir("train np", args, explicit, f"runs/np-{args.data}")
    device = resolve_device(args.device)
    make = family(args.data)
    train = make(num_functions=args.functions, num_points=args.points, seed=args.seed)
    test = make(num_functions=args.eval_functions, num_points=args.points, seed=args.seed + 10_000)
    regenerate = lambda seed: make(num_functions=args.functions, num_points=args.points, seed=seed)  # noqa: E731
    batches = datasets.ContextTargetBatches(
        train, args.batch_size, args.min_context, args.max_context, seed=args.seed, regenerate=regenerate
    )
    torch.manual_seed(args.seed)
    pair = models.NeuralProcess(hidden=args.hidden, latent_dim=args.latent_dim, attention=args.attention)
    print(
        f"{'resuming' if run_dir.resuming else 'training'} {'an attentive' if args.attention else 'a'} neural process "
        f"on {args.data} ({args.functions} functions x {args.points} points, fresh ones every epoch) with {args.elbo} "
        f"for {args.epochs} epochs",
        flush=True,
    )
    probe = [t.to(device) for t in toolbox.split_context(test, args.eval_context, seed=args.seed)]
    diagnostics = _diagnostics(pair, probe)
    result, train_seconds = fit_run(
        run_dir,
        pair,
        batches,
        args,
        device,
        batch_size=None,
        callbacks=[diagnostics],
        metrics=lambda: {"history": diagnostics.history},
    )
    history = diagnostics.history
    evaluation = toolbox.evaluate_neural_process(
        pair, test, args.eval_context, args.eval_samples, seed=args.seed, device=device
    )
    run_dir.save_model(pair, {"command": "train np", "model": "np", "data": args.data, "points": args.points})
    metrics = {
        "status": "done",
        "model": "attentive neural process" if args.attention else "neural process",
        "data": args.data,
        "epochs": args.epochs,
        "epochs_done": result.epochs,
        "steps": result.num_steps,
        "seed": args.seed,
        "train_loss": result.train_loss,
        "epoch_seconds": result.epoch_seconds,
        "train_seconds": train_seconds,
        "history": history,
        "evaluation": evaluation.to_dict(),
        "units": "log-likelihoods in nats per target point; the targets are all points of a function",
    }
    run_dir.write_json("metrics.json", metrics)
    figures(run_dir, pair, test, history, device, args)
    e = evaluation
    oracle = f", GP oracle {e.oracle_log_likelihood:.3f} (gap {e.oracle_gap:.3f})" if e.oracle_gap is not None else ""
    print(
        f"test log-likelihood {e.log_likelihood:.3f} nats per target{oracle}; 90% coverage inside the context "
        f"range {e.coverage_inside:.3f}, outside {e.coverage_outside:.3f}"
    )
    print(f"wrote metrics.json, model.pt and figures to {run_dir.path.resolve()}")
    return run_dir.path


def prediction_panels(pair, test, eval_context, seed, device, count=6, num_samples=100):
    """Panels for :func:`ppmodels.plots.function_predictions`: context, targets, the
    predictive mean and sd, sampled functions, and the exact GP where the family has one."""
    import torch

    from .. import toolbox

    xc, yc, xt, yt = (t[:count].to(device) for t in toolbox.split_context(test, eval_context, seed=seed))
    with torch.no_grad():
        pred = pair.predict(xc, yc, xt, num_samples, seed=seed)
    oracle = None
    if test.lengthscale is not None:
        mean, cov = test.gp_predictive(torch.arange(count), xc.cpu(), yc.cpu(), xt.cpu())
        oracle = (mean, cov.diagonal(dim1=-2, dim2=-1).sqrt())
    return [
        {
            "x_context": xc[i].cpu(),
            "y_context": yc[i].cpu(),
            "x": xt[i].cpu(),
            "mean": pred.mean[i].cpu(),
            "std": pred.std[i].cpu(),
            "truth": yt[i].cpu(),
            "samples": pred.mean_samples[:12, i, :, 0].cpu(),
            "oracle_mean": None if oracle is None else oracle[0][i],
            "oracle_std": None if oracle is None else oracle[1][i],
        }
        for i in range(count)
    ]


def figures(run_dir, pair, test, history, device, args):
    from .. import plots

    run_dir.figure(plots.training_curves(history, title="neural process training"), "training.png")
    panels = prediction_panels(pair, test, args.eval_context, args.seed, device)
    run_dir.figure(
        plots.function_predictions(panels, title=f"{args.data}, {args.eval_context} context points"),
        "predictions.png",
    )
