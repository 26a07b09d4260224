"""The ``ppmodels`` command: ``demo``, ``train vae|cvae|bnn|np|ssvae``, ``sample``, ``compare``,
``compare-elbo``, ``sbc``.

One module per subcommand family (``images``: vae, cvae and the demo; ``bnn``; ``np``;
``ssvae``; ``compare``: compare and compare-elbo; ``sbc``; ``sample``); the options they share are in
``_options`` and the run folder, resume, device and error handling in ``_run``. Building the
parser imports nothing heavy: torch, Pyro and matplotlib load when a subcommand runs.
"""

from __future__ import annotations

import argparse
import sys

from . import _threads, bnn, compare, images, neural_process, sample, sbc, ssvae
from ._options import Formatter
from ._run import CommandError


def build_parser(explicit: bool = False):
    """The command's parser; with ``explicit`` every default is suppressed, so that a parse
    holds only the options given on the command line."""
    parser = argparse.ArgumentParser(
        prog="ppmodels", description="Deep generative models as Pyro model/guide pairs.", formatter_class=Formatter
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    images.add_demo_parser(sub, explicit)
    train = sub.add_parser(
        "train",
        help="train a model and write metrics, checkpoint and figures",
        description="Train a model/guide pair and write metrics.json (as the run goes), checkpoint.pt (after every "
        "epoch), model.pt and PNG figures; --resume RUN_DIR continues a run that was stopped.",
        formatter_class=Formatter,
    )
    models = train.add_subparsers(dest="model", required=True, metavar="MODEL")
    images.add_model_parsers(models, explicit)
    bnn.add_model_parser(models, explicit)
    neural_process.add_model_parser(models, explicit)
    ssvae.add_model_parser(models, explicit)
    sample.add_parser(sub, explicit)
    compare.add_parsers(sub, explicit)
    sbc.add_parser(sub, explicit)
    return parser


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)  # imports nothing heavy: torch is not loaded yet
    try:  # what OpenMP reads when torch loads (see _threads): sleeping threads for the convolutions
        _threads.configure(passive=args.command == "train" and args.model == "bnn")
    except ValueError as exc:
        print(f"ppmodels: error: {exc}", file=sys.stderr)
        return 2
    explicit = vars(build_parser(explicit=True).parse_args(argv))
    name = args.command + (f" {args.model}" if getattr(args, "model", None) else "")
    try:
        args.run(args, explicit)
    except CommandError as exc:
        print(f"ppmodels {name}: error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError) as exc:
        print(f"ppmodels {name}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        print(f"ppmodels {name}: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"ppmodels {name}: interrupted; the last epoch's checkpoint is kept (--resume continues)", file=sys.stderr
        )
        return 130
    return 0


def _one_line(exc) -> str:
    """An error's own sentence, without what Pyro appends to an error raised inside a model
    (its table of the trace's shapes, on the lines after it)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


__all__ = ["build_parser", "main"]
