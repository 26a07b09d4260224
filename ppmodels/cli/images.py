"""``ppmodels train vae``, ``ppmodels train cvae`` and ``ppmodels demo``."""

from __future__ import annotations

import argparse

from ._options import Formatter, Options, add_image_options, integer, positive_int
from ._run import TrainCommand

#: the demo: a 2-D latent VAE on the embedded digits, sized to well under a minute on 2 cores (measured 19 s)
DEMO_EPOCHS = 100
DEMO_EVAL_SAMPLES = 500


def add_demo_parser(sub, explicit):
    demo = sub.add_parser(
        "demo",
        help="train a 2-D latent VAE on the embedded digits and write metrics and figures",
        description="Train a VAE with a 2-D latent space on scikit-learn's digits (about 30 s on 2 cores) "
        "and write metrics.json, model.pt and PNG figures.",
        formatter_class=Formatter,
    )
    o = Options(demo, explicit)
    o.add("--out", default="runs/demo", help="output folder")
    o.add("--epochs", type=positive_int, default=DEMO_EPOCHS, help="epochs")
    o.add("--eval-samples", type=positive_int, default=DEMO_EVAL_SAMPLES, help="importance samples K")
    o.add("--seed", type=integer, default=0, help="seed of initialisation, shuffling and draws")
    o.add("--resume", metavar="RUN_DIR", help="continue the demo run in RUN_DIR")
    o.add("--progress", action=argparse.BooleanOptionalAction, help="a progress bar (default: on a terminal)")
    demo.set_defaults(run=run_demo)


def add_model_parsers(models, explicit):
    vae = models.add_parser(
        "vae", help="variational auto-encoder", description="Train a VAE.", formatter_class=Formatter
    )
    add_image_options(Options(vae, explicit), latent=8, epochs=30)
    vae.set_defaults(run=lambda args, explicit: run_train("vae", args, explicit))
    cvae = models.add_parser(
        "cvae",
        help="conditional VAE (labels condition encoder, decoder and prior)",
        description="Train a conditional VAE.",
        formatter_class=Formatter,
    )
    o = Options(cvae, explicit)
    add_image_options(o, latent=8, epochs=30)
    o.add("--prior", choices=["learned", "standard"], default="learned", help="p(z|y)")
    cvae.set_defaults(run=lambda args, explicit: run_train("cvae", args, explicit))


def build(model, args, data):
    from .. import models, nn

    shape, latent = data.image_shape, args.latent_dim
    cond = data.num_classes if model == "cvae" else 0
    if args.arch == "mlp":
        encoder = nn.MLPEncoder(shape, latent, hidden_dims=tuple(args.hidden), cond_dim=cond)
        decoder = nn.MLPDecoder(latent, shape, hidden_dims=tuple(reversed(args.hidden)), cond_dim=cond)
    else:
        encoder = nn.ConvEncoder(shape, latent, cond_dim=cond)
        decoder = nn.ConvDecoder(latent, shape, cond_dim=cond)
    kwargs = {"likelihood": args.likelihood}
    if args.likelihood == "normal":
        kwargs["scale"] = "learned"
    if model == "cvae":
        return models.CVAE(encoder, decoder, latent, data.num_classes, prior=args.prior, **kwargs)
    return models.VAE(encoder, decoder, latent, **kwargs)


def data_name(args) -> str:
    return args.data.partition(":")[0]


def load_data(args):
    from .. import data as datasets

    image_size = args.image_size or (28 if args.data == "digits" else None)
    return datasets.load(args.data, image_size=image_size, download=args.download)


def run_train(model, args, explicit, command=None):
    return ImageCommand(model, args, explicit, command).run()


class ImageCommand(TrainCommand):
    """``train vae``, ``train cvae`` and ``demo``: a VAE on images."""

    def __init__(self, model, args, explicit, command=None):
        super().__init__(args, explicit)
        self.model, self.command = model, command or f"train {model}"
        self.small = args.arch == "mlp"  # convolutions use every thread
        self.labelled = model == "cvae"

    def default_out(self):
        return f"runs/{self.model}-{data_name(self.args)}"

    def load(self):
        return load_data(self.args)

    def build(self, device):
        return build(self.model, self.args, self.data)

    def describe(self):
        a, data = self.args, self.data
        return (
            f"{self.model} ({a.arch}, latent {a.latent_dim}, {a.likelihood}) on {data.name} "
            f"{tuple(data.train_x.shape)} with {a.elbo} for {a.epochs} epochs"
        )

    def training(self, device):
        a, data = self.args, self.data
        train = (data.train_x, data.train_y) if self.labelled else (data.train_x,)
        test = (data.test_x, data.test_y) if self.labelled else (data.test_x,)
        return train, {
            "val_data": test,
            "num_particles": a.num_particles,
            "vectorize_particles": a.vectorize_particles,
        }

    def about(self):
        a, data = self.args, self.data
        return {
            "model": self.model,
            "data": data.name,
            "arch": a.arch,
            "latent_dim": a.latent_dim,
            "likelihood": a.likelihood,
            "elbo": a.elbo,
            "num_train": int(data.train_x.shape[0]),
            "num_test": int(data.test_x.shape[0]),
            "num_parameters": sum(p.numel() for p in self.pair.parameters()),
        }

    def evaluate(self, result, device):
        from .. import infer

        a, data = self.args, self.data
        test = (data.test_x, data.test_y) if self.labelled else (data.test_x,)
        test_elbo = infer.elbo(self.pair, test, seed=a.seed, device=device)
        # the importance-weighted log-likelihood and, from the same draws, PSIS's k-hat per test datum
        weighed = infer.psis_per_datum(self.pair, test, num_samples=a.eval_samples, seed=a.seed, device=device)
        test_ll = weighed.log_likelihood
        return {
            "test_elbo": float(test_elbo.mean()),
            "test_log_likelihood": float(test_ll.mean()),
            "test_log_likelihood_stderr": float(test_ll.std() / len(test_ll) ** 0.5),
            "eval_samples": a.eval_samples,
            "test_psis": weighed.summary(),
            "units": "nats per sample (losses are negative ELBOs); test_psis: PSIS k-hat of the encoder per test "
            "datum (below 0.7: its importance-weighted estimate is reliable)",
        }

    def metadata(self):
        data = self.data
        return {"image_size": data.image_shape[-1], "class_names": list(data.class_names)}

    def figures(self, result, device, metrics):
        figures(self.run_dir, self.pair, self.model, self.data, result, device, self.args.seed)

    def summary(self, metrics):
        return (
            f"test ELBO {metrics['test_elbo']:.2f}, test log-likelihood (K={self.args.eval_samples}) "
            f"{metrics['test_log_likelihood']:.2f} nats per sample"
        )


def run_demo(args, explicit):
    demo = argparse.Namespace(
        data="digits",
        download=False,
        image_size=28,
        arch="mlp",
        hidden=(400,),
        latent_dim=2,
        likelihood="bernoulli",
        elbo="trace",
        num_particles=None,
        vectorize_particles=None,
        epochs=args.epochs,
        batch_size=128,
        lr=1e-3,
        seed=args.seed,
        eval_samples=args.eval_samples,
        device=None,
        out=args.out,
        resume=args.resume,
        progress=args.progress,
    )
    return run_train("vae", demo, explicit, command="demo")


def figures(run, pair, model, data, result, device, seed):
    import torch

    from .. import plots

    with torch.no_grad():
        run.figure(plots.loss_curves(result.train_loss, result.val_loss, title=f"{model} on {data.name}"), "loss.png")
        n = 16
        x = data.test_x[:n].to(device)
        y = data.test_y[:n].to(device)
        recon = pair.reconstruct(x, y) if model == "cvae" else pair.reconstruct(x)
        run.figure(
            plots.image_grid(torch.cat([x, recon]).cpu(), nrow=2, title="test images (top), reconstructions"),
            "reconstructions.png",
        )
        if model == "cvae":
            per = 10
            labels = torch.arange(data.num_classes).repeat_interleave(per)
            samples = pair.generate(labels.to(device), seed=seed).cpu()
            rows = samples.reshape(data.num_classes, per, *samples.shape[1:])
            run.figure(plots.class_rows(rows, data.class_names, title="samples per class"), "class_samples.png")
            run.figure(plots.image_grid(samples, nrow=data.num_classes, title="samples"), "samples.png")
        else:
            run.figure(plots.image_grid(pair.generate(64, seed=seed).cpu(), nrow=8, title="samples"), "samples.png")
        if pair.latent_dim == 2:
            loc = torch.cat(
                [
                    pair.encode(
                        data.test_x[i : i + 256].to(device),
                        data.test_y[i : i + 256].to(device) if model == "cvae" else None,
                    )[0]
                    for i in range(0, len(data.test_x), 256)
                ]
            )
            run.figure(plots.latent_scatter(loc.cpu(), data.test_y), "latent_scatter.png")
            if model == "vae":
                run.figure(plots.latent_walk(pair.decode, device=device), "latent_walk.png")
