"""The command's options: value types with clear messages, and the option groups that every
training subcommand shares. Nothing here imports torch, Pyro or matplotlib, so that
``ppmodels --help`` answers at once; the names below are checked against the library's
in the tests."""

from __future__ import annotations

import argparse
import re

#: estimators the command's image, BNN and neural-process models can use (the others need a
#: full batch, discrete sites or parameters registered with Pyro)
MODEL_ESTIMATORS = ("trace", "meanfield", "tracegraph", "renyi", "iwae")
LIKELIHOODS = ("bernoulli", "continuous_bernoulli", "normal")
NP_FAMILIES = ("gp-matern", "gp-periodic", "gp-rbf", "sine")
PROBLEMS = ("gmm", "linreg", "logreg", "mlp1d")
DATA_HELP = "digits (embedded), mnist:DIR or fashion-mnist:DIR (a folder of IDX files)"
_DEVICE = re.compile(r"^(cpu|cuda(:\d+)?|mps)$")


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive int, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive int, got {value}")
    return value


def nonnegative_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a non-negative int, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative int, got {value}")
    return value


def integer(text):
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an int, got {text!r}") from None


def number(text):
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None


def positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text}")
    return value


def nonnegative_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def dims(text):
    try:
        values = tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated ints such as 400 or 512,256, got {text!r}") from None
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"must be comma-separated positive ints, got {text!r}")
    return values


def labels(text):
    try:
        values = tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated ints, got {text!r}") from None
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError(f"must be comma-separated non-negative ints, got {text!r}")
    return values


def problem_name(text):
    """``--problem``: one of :data:`PROBLEMS`, or ``posteriordb:NAME[,NAME...]`` or
    ``posteriordb:all`` (the posteriordb ports)."""
    import argparse

    if text in PROBLEMS:
        return text
    kind, _, listed = text.partition(":")
    if kind != "posteriordb" or not listed.strip():
        raise argparse.ArgumentTypeError(
            f"invalid choice: {text!r} (choose from {', '.join(PROBLEMS)}, posteriordb:NAME[,NAME...] or "
            "posteriordb:all)"
        )
    from ..posteriordb import names as ported

    unknown = [n for n in posteriordb_names(text) if n not in ported()]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"no posteriordb port named {', '.join(map(repr, unknown))}; the ports are {', '.join(ported())}"
        )
    return text


def posteriordb_names(text) -> list:
    """The posteriors a ``posteriordb:NAME[,NAME...]`` or ``posteriordb:all`` problem names."""
    from ..posteriordb import names as ported

    listed = text.partition(":")[2].strip()
    return ported() if listed == "all" else [n.strip() for n in listed.split(",") if n.strip()]


def names(text):
    out = tuple(t.strip() for t in text.split(",") if t.strip())
    return out if text.strip().lower() != "none" else ()


def device(text):
    """``cpu``, ``cuda``, ``cuda:N`` or ``mps``; whether this torch build has it is checked when
    the command runs (see :func:`ppmodels.cli._run.resolve_device`)."""
    if not _DEVICE.match(text):
        raise argparse.ArgumentTypeError(f"must be cpu, cuda, cuda:N or mps, got {text!r}")
    return text


class Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Every option's help ends with its default."""

    def _get_help_string(self, action):
        text = action.help or ""
        hidden = action.default is None or action.default is False or action.default == argparse.SUPPRESS
        if hidden or "(default" in text or action.nargs == 0:  # (identity: a default of 0 is shown)
            return text
        default = action.default
        if isinstance(default, tuple):
            default = ",".join(map(str, default)) if default else "none"
        return f"{text} (default: {str(default).replace('%', '%%')})"


class Options:
    """Adds options to a parser, with their defaults suppressed when ``explicit`` is set: the
    parse then holds only what the user typed (what a resume compares with the run's)."""

    def __init__(self, parser, explicit=False):
        self.parser, self.explicit = parser, explicit

    def add(self, *flags, default=None, **kwargs):
        if self.explicit:
            default = argparse.SUPPRESS
        return self.parser.add_argument(*flags, default=default, **kwargs)


def add_run_options(o: Options, *, epochs, batch_size, lr, out, estimators=MODEL_ESTIMATORS, batch_help=None):
    """What every training subcommand has: estimator, budget, optimiser, seed, device, output
    folder, resume and progress."""
    if estimators:
        o.add("--elbo", choices=estimators, default=estimators[0], help="ELBO estimator")
    o.add("--epochs", type=positive_int, default=epochs, help="epochs")
    o.add("--batch-size", type=positive_int, default=batch_size, help=batch_help or "mini-batch size")
    o.add("--lr", type=positive_float, default=lr, help="Adam learning rate")
    o.add("--seed", type=integer, default=0, help="seed of initialisation, data split, shuffling and draws")
    o.add("--device", type=device, help="cpu, cuda, cuda:N or mps (default: cuda when available, else cpu)")
    o.add(
        "--compile",
        choices=("graph", "inductor"),
        help="run each training step as one traced graph: graph (seconds to trace) or inductor (compiled: a "
        "minute or more the first time, faster steps) (default: eager Pyro)",
    )
    o.add("--out", help=f"output folder (default: {out})")
    o.add(
        "--resume",
        metavar="RUN_DIR",
        help="continue the run in RUN_DIR from its last epoch, with its options (the ones you give must match)",
    )
    o.add(
        "--progress",
        action=argparse.BooleanOptionalAction,
        help="a progress bar (default: on a terminal; otherwise a plain line per epoch on stderr)",
    )


def add_image_options(o: Options, *, latent, epochs, estimators=MODEL_ESTIMATORS, out="runs/MODEL-DATA"):
    o.add("--data", default="digits", help=DATA_HELP)
    o.add("--download", action="store_true", default=False, help="download MNIST/Fashion-MNIST into the cache")
    o.add(
        "--image-size",
        type=positive_int,
        help="resize images to this square size (default: 28 for digits, the files' own size otherwise)",
    )
    o.add("--arch", choices=["mlp", "conv"], default="mlp", help="encoder/decoder architecture")
    o.add("--hidden", type=dims, default=(400,), help="MLP hidden widths, e.g. 512,256")
    o.add("--latent-dim", type=positive_int, default=latent, help="latent dimension (2 adds the latent figures)")
    o.add("--likelihood", choices=LIKELIHOODS, default="bernoulli", help="p(x|z)")
    o.add(
        "--num-particles",
        type=positive_int,
        help="particles per step (default: the estimator's own: 1, or 5 for iwae and renyi)",
    )
    o.add(
        "--vectorize-particles",
        action=argparse.BooleanOptionalAction,
        help="draw the particles in one vectorised pass (default: sequential)",
    )
    o.add("--eval-samples", type=positive_int, default=500, help="importance samples K for the test log-likelihood")
    add_run_options(o, epochs=epochs, batch_size=128, lr=1e-3, out=out, estimators=estimators)
