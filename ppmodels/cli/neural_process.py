"""``ppmodels train np``: a neural process on GP or sine function families, against the exact GP."""

from __future__ import annotations

from ._options import NP_FAMILIES, Formatter, Options, add_run_options, positive_int
from ._run import CommandError, TrainCommand

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
    return NPCommand(args, explicit).run()


class NPCommand(TrainCommand):
    command, model = "train np", "np"
    one_process = True

    def default_out(self):
        return f"runs/np-{self.args.data}"

    def check(self):
        args = self.args
        if args.min_context > args.max_context or args.max_context > args.points:
            raise CommandError(
                f"--min-context ({args.min_context}) <= --max-context ({args.max_context}) <= --points "
                f"({args.points}) is required"
            )
        if args.eval_context >= args.points:
            raise CommandError(f"--eval-context ({args.eval_context}) must be fewer than --points ({args.points})")

    def load(self):
        args = self.args
        make = family(args.data)
        train = make(num_functions=args.functions, num_points=args.points, seed=args.seed)
        self.test = make(num_functions=args.eval_functions, num_points=args.points, seed=args.seed + 10_000)
        return train

    def build(self, device):
        from .. import models

        args = self.args
        return models.NeuralProcess(hidden=args.hidden, latent_dim=args.latent_dim, attention=args.attention)

    def describe(self):
        args = self.args
        return (
            f"{'an attentive' if args.attention else 'a'} neural process on {args.data} ({args.functions} functions "
            f"x {args.points} points, fresh ones every epoch) with {args.elbo} for {args.epochs} epochs"
        )

    def training(self, device):
        from .. import data as datasets
        from .. import toolbox

        args, make = self.args, family(self.args.data)
        regenerate = lambda seed: make(num_functions=args.functions, num_points=args.points, seed=seed)  # noqa: E731
        batches = datasets.ContextTargetBatches(
            self.data, args.batch_size, args.min_context, args.max_context, seed=args.seed, regenerate=regenerate
        )
        probe = [t.to(device) for t in toolbox.split_context(self.test, args.eval_context, seed=args.seed)]
        self.diagnostics = diagnostics = _diagnostics(self.pair, probe)
        return batches, {
            "batch_size": None,
            "callbacks": [diagnostics],
            "metrics": lambda: {"history": diagnostics.history},
        }

    def about(self):
        return {
            "model": "attentive neural process" if self.args.attention else "neural process",
            "data": self.args.data,
        }

    def evaluate(self, result, device):
        from .. import toolbox

        args = self.args
        self.evaluation = toolbox.evaluate_neural_process(
            self.pair, self.test, args.eval_context, args.eval_samples, seed=args.seed, device=device
        )
        return {
            "history": self.diagnostics.history,
            "evaluation": self.evaluation.to_dict(),
            "units": "log-likelihoods in nats per target point; the targets are all points of a function",
        }

    def metadata(self):
        return {"points": self.args.points}

    def figures(self, result, device, metrics):
        figures(self.run_dir, self.pair, self.test, self.diagnostics.history, device, self.args)

    def summary(self, metrics):
        e = self.evaluation
        oracle = (
            f", GP oracle {e.oracle_log_likelihood:.3f} (gap {e.oracle_gap:.3f})" if e.oracle_gap is not None else ""
        )
        return (
            f"test log-likelihood {e.log_likelihood:.3f} nats per target{oracle}; 90% coverage inside the context "
            f"range {e.coverage_inside:.3f}, outside {e.coverage_outside:.3f}"
        )


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
