"""What every training subcommand shares: the run folder (options, checkpoint, metrics,
figures), resuming a run, the device, the progress display, one-line errors, a training
result as metrics, and :class:`TrainCommand`, the skeleton each ``ppmodels train`` command
fills in with only what differs."""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
from pathlib import Path

from .._atomic import replaced_atomically

RUN_FILE = "run.json"
CHECKPOINT = "checkpoint.pt"
#: options that do not change a run's results: they may differ on --resume
_FREE = {"resume", "progress", "out", "command", "model", "run"}


class CommandError(Exception):
    """A one-line error for the user (the command exits with status 2)."""


@contextlib.contextmanager
def writing(path):
    """An ``OSError`` in the block (a read-only folder, a full disk) becomes one line naming
    ``path``."""
    try:
        yield
    except OSError as exc:
        raise CommandError(f"could not write {path}: {exc.strerror or exc}") from None


def launched_by_torchrun() -> bool:
    """True when this process is one of several that torchrun started (WORLD_SIZE > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def resolve_device(text):
    """The device to run on: ``text``, or cuda when this torch build has it and cpu
    otherwise; a device this build lacks is a :class:`CommandError`."""
    import torch

    if text is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    from .._validate import device_unavailable

    reason = device_unavailable(torch.device(text))  # the option's parser has checked the spelling
    if reason is not None:
        raise CommandError(f"--device {text}: {reason}; use --device cpu")
    return text


def progress_mode(flag):
    """``--progress``: a bar; ``--no-progress``: nothing; neither: the bar on a terminal and a
    plain line per epoch otherwise (so a log file shows the run moving)."""
    if flag is None:
        return True if sys.stderr.isatty() else "log"
    return bool(flag)


def _plain(value):
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def write_text_atomic(path: Path, text: str):
    """Write ``text`` to ``path`` through a temporary file renamed into place; an OSError
    (read-only folder, full disk) becomes a one-line error naming the path, and the file
    already there (if any) stays as it was."""
    with writing(path), replaced_atomically(path, "w") as fh:
        fh.write(text)


class RunDir:
    """A run's folder: ``run.json`` (the command and its options), ``checkpoint.pt`` (the
    training state after each epoch), ``metrics.json`` (written as the run goes), the final
    ``model.pt`` and the figures.

    With ``--resume RUN_DIR`` the options come from ``run.json``; any option given again
    must have the run's value (``--epochs`` may grow, and may not fall below the epochs
    done), so the resumed run ends where the uninterrupted one would.
    """

    def __init__(self, command: str, args, explicit: dict, default_out: str, writer: bool = True):
        self.command, self.writer = command, writer
        if getattr(args, "resume", None):
            self.path = Path(args.resume)
            if explicit.get("out") not in (None, args.resume) and Path(explicit["out"]) != self.path:
                raise CommandError(f"--out {explicit['out']} and --resume {args.resume} name different folders")
            self._load(args, explicit)
            self.resuming = (self.path / CHECKPOINT).is_file()
        else:
            self.path = Path(args.out or default_out)
            self.resuming = False
            if writer:
                self._make()
                options = {k: _plain(v) for k, v in vars(args).items() if k not in _FREE}
                write_text_atomic(self.path / RUN_FILE, json.dumps({"command": command, "options": options}, indent=2))

    def _make(self):
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CommandError(f"could not create the output folder {self.path}: {exc.strerror or exc}") from None
        if not os.access(self.path, os.W_OK):
            raise CommandError(f"the output folder {self.path} is not writable")

    def _load(self, args, explicit):
        run_file = self.path / RUN_FILE
        try:
            saved = json.loads(run_file.read_text())
        except FileNotFoundError:
            raise CommandError(
                f"--resume {self.path}: no {RUN_FILE} there; RUN_DIR must be a folder written by this command"
            ) from None
        except (OSError, ValueError) as exc:
            raise CommandError(f"--resume {self.path}: {run_file} is unreadable ({exc})") from None
        options = _check_run_file(saved, run_file, self.command)
        if saved.get("command") != self.command:
            raise CommandError(
                f"--resume {self.path}: that run is 'ppmodels {saved.get('command')}', not 'ppmodels {self.command}'"
            )
        changed = []
        for key, value in explicit.items():
            if key in _FREE or key not in options or key == "epochs":
                continue
            if _plain(value) != options[key]:
                changed.append(f"--{key.replace('_', '-')} {_show(value)} (the run has {_show(options[key])})")
        if changed:
            raise CommandError(
                f"--resume {self.path}: resuming with other options would not continue the same run: "
                + "; ".join(changed)
                + ". Give only --resume (and --epochs to train longer), or start a new run"
            )
        for key, value in options.items():
            if key not in explicit and hasattr(args, key):
                setattr(args, key, tuple(value) if isinstance(value, list) else value)
        done = self.epochs_done()
        if done is not None and args.epochs < done:
            raise CommandError(
                f"--resume {self.path}: --epochs {args.epochs} is fewer than the {done} epochs the run has done"
            )
        self._make()
        remove_partial_writes(self.path)

    def epochs_done(self):
        try:
            return json.loads((self.path / "metrics.json").read_text()).get("epochs_done")
        except (OSError, ValueError):
            return None

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT

    def write_json(self, name: str, data: dict):
        if self.writer:
            write_text_atomic(self.path / name, json.dumps(data, indent=2))

    def write_text(self, name: str, text: str):
        if self.writer:
            write_text_atomic(self.path / name, text)

    def save_model(self, pair, metadata: dict):
        from .. import infer

        if not self.writer:
            return
        path = self.path / "model.pt"
        with writing(path):
            infer.save(path, pair, metadata=metadata)

    def figure(self, fig, name: str):
        from .. import plots

        if not self.writer:
            import matplotlib.pyplot as plt

            plt.close(fig)
            return
        path = self.path / name
        with writing(path):
            plots.save(fig, path)

    def metrics_callback(self, extra=None):
        """A callback writing ``metrics.json`` after every epoch (``"status": "running"``)."""
        from ..infer import Callback

        run = self

        class WriteMetrics(Callback):
            after_checkpoint = True  # metrics.json never claims an epoch that checkpoint.pt does not hold

            def on_epoch_end(self, state):
                data = {"status": "running", **fit_metrics(state.result)}
                if extra is not None:
                    data.update(extra())
                run.write_json("metrics.json", data)

        return WriteMetrics()


#: what :func:`ppmodels._atomic.replaced_atomically` names its temporary files: ``.NAME.XXXXXXXX.tmp``
_PARTIAL = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp$")


def remove_partial_writes(folder: Path) -> list:
    """Remove the temporary files that a run killed while writing left in its folder (a file
    being replaced atomically is written beside it first); returns their names."""
    removed = []
    for path in folder.iterdir():
        if _PARTIAL.match(path.name) and path.is_file():
            with contextlib.suppress(OSError):
                path.unlink()
                removed.append(path.name)
    return removed


def _subparser(command: str):
    """The parser of ``command`` (e.g. ``"train vae"``), to read a run's options as the
    command line would."""
    import argparse

    from . import build_parser

    parser = build_parser()
    for word in command.split():
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[word]
    return parser


def _check_run_file(saved, run_file: Path, command: str) -> dict:
    """``run.json``'s options, each checked as the command line checks it (its type, its
    choices) and against what the command writes there; anything else is a
    :class:`CommandError` naming ``run.json``, the option and the value."""
    if not isinstance(saved, dict) or not isinstance(saved.get("options", {}), dict):
        got = type(saved).__name__ if not isinstance(saved, dict) else f'"options" as {type(saved["options"]).__name__}'
        raise CommandError(
            f'{run_file} is not a run file of this command: it must be an object with "command" and an "options" '
            f"object, but holds {got}"
        )
    if not isinstance(saved.get("command"), str) or saved["command"] != command:
        return saved.get("options", {})  # the caller names the other command
    actions = {a.dest: a for a in _subparser(command)._actions if a.option_strings and a.dest not in _FREE}
    options = saved.get("options", {})
    for key, value in options.items():
        action = actions.get(key)
        if action is None:
            raise CommandError(
                f"{run_file}: unknown option {key!r} for 'ppmodels {command}' (its options are "
                f"{', '.join(sorted(actions))})"
            )
        flag = action.option_strings[-1 if action.nargs == 0 else 0]
        problem = _option_problem(action, value)
        if problem is not None:
            raise CommandError(f"{run_file}: option {key!r} is {json.dumps(value)}: {flag} {problem}")
    return options


def _option_problem(action, value):
    """Why ``value`` (from JSON) is not what the command writes for ``action``, or ``None``."""
    import argparse

    if value is None:
        return None if action.default is None else f"needs a value (default {_show(action.default)})"
    if action.nargs == 0:  # a flag: true or false
        return None if isinstance(value, bool) else "is a flag: true or false"
    if isinstance(value, bool) or not isinstance(value, (str, int, float, list)):
        return f"takes {'a text' if action.type is None else 'a value'} as on the command line"
    text = _show(value) if isinstance(value, list) else str(value)
    try:
        parsed = action.type(text) if action.type is not None else text
    except (argparse.ArgumentTypeError, TypeError, ValueError) as exc:
        return str(exc)
    if action.choices is not None and parsed not in action.choices:
        return f"must be one of {', '.join(map(str, action.choices))}"
    if _plain(parsed) != value or isinstance(value, str) != isinstance(parsed, str):
        return f"must be written as {json.dumps(_plain(parsed))}, as the command writes it"
    return None


def _show(value):
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return value


def fit_run(run: RunDir, pair, train, args, device, *, callbacks=(), small=True, **options):
    """``fit`` with the command's options: the run's checkpoint after every epoch, resume from
    it, the progress display, metrics as the run goes, across processes under torchrun.
    ``small``: a network whose steps run on one thread when the command chose the threads
    (see :mod:`ppmodels.cli._threads`).
    Returns ``(result, seconds)``; ``result`` is ``None`` on processes other than rank 0."""
    import time

    from .. import infer
    from . import _threads

    distributed = launched_by_torchrun()
    metrics = options.pop("metrics", None)
    t0 = time.perf_counter()
    # an OSError from fit: the checkpoint could not be written
    with writing(run.checkpoint), _threads.training(small and str(device).startswith("cpu")):
        result = infer.fit(
            pair,
            train,
            epochs=args.epochs,
            batch_size=options.pop("batch_size", args.batch_size),
            elbo=args.elbo,
            lr=args.lr,
            seed=args.seed,
            device=None if distributed else device,
            progress=progress_mode(args.progress),
            checkpoint=run.checkpoint if run.writer else None,
            resume=run.checkpoint if run.resuming else None,
            callbacks=[*callbacks, run.metrics_callback(metrics)] if run.writer else list(callbacks),
            distributed=distributed,
            compile=getattr(args, "compile", None),
            **options,
        )
    seconds = time.perf_counter() - t0
    return (None if distributed and rank() != 0 else result), seconds


def fit_metrics(result, train_seconds=None) -> dict:
    """A :class:`~ppmodels.infer.FitResult` as metrics.json's training entries, the same in
    every command (``test_loss`` when the run had validation data)."""
    out = {
        "epochs_done": result.epochs,
        "steps": result.num_steps,
        "train_loss": result.train_loss,
    }
    if any(v is not None for v in result.val_loss):
        out["test_loss"] = result.val_loss
    out["epoch_seconds"] = result.epoch_seconds
    if train_seconds is not None:
        out["train_seconds"] = train_seconds
        out["samples_per_second"] = result.samples_per_second
    out["loss_per"] = result.per
    return out


class TrainCommand:
    """A ``ppmodels train`` command: :meth:`run` is the skeleton every command shares — check
    the options, open the run folder, load the data, build the pair (after seeding torch),
    fit it with the folder's checkpoint and metrics, evaluate it, write ``metrics.json``,
    ``model.pt`` and the figures, and print a summary. A command overrides only the steps
    that differ; the attributes ``args``, ``run_dir``, ``data`` and ``pair`` are set as
    :meth:`run` goes.
    """

    #: the command's words, e.g. ``"train bnn"``
    command = ""
    #: the model's name in model.pt's metadata
    model = ""
    #: refuse to run under torchrun (the command trains in one process)
    one_process = False
    #: a small network, trained on one thread when the command chose the threads
    small = True

    def __init__(self, args, explicit):
        self.args, self.explicit = args, explicit
        self.run_dir = self.data = self.pair = None

    # -- what a command says ---------------------------------------------------------------
    def default_out(self) -> str:
        raise NotImplementedError

    def check(self) -> None:
        """Rules between options (a :class:`CommandError`); run on the command line's options
        and again on a resumed run's."""

    def load(self):
        """The data (checks that need them raise :class:`CommandError`)."""
        raise NotImplementedError

    def build(self, device):
        """The pair, on a seeded torch."""
        raise NotImplementedError

    def describe(self) -> str:
        """What is trained, for the line printed before training ("training ...")."""
        raise NotImplementedError

    def training(self, device) -> tuple:
        """``(data, fit keywords)`` for :func:`fit_run`."""
        raise NotImplementedError

    def about(self) -> dict:
        """metrics.json's first entries: the model, the data and the settings."""
        return {}

    def evaluate(self, result, device) -> dict:
        """metrics.json's entries after the training's."""
        return {}

    def metadata(self) -> dict:
        """model.pt's metadata beyond the command, the model and the data."""
        return {}

    def figures(self, result, device, metrics) -> None:
        pass

    def summary(self, metrics) -> str:
        """The result in one line."""
        return ""

    # -- the skeleton ----------------------------------------------------------------------
    def run(self):
        import torch

        args = self.args
        if self.one_process and launched_by_torchrun():
            raise CommandError(f"'ppmodels {self.command}' runs in one process; launch it without torchrun")
        self.check()
        self.run_dir = run_dir = RunDir(self.command, args, self.explicit, self.default_out(), writer=rank() == 0)
        if getattr(args, "resume", None):
            self.check()  # the run's own options
        self.data = self.load()  # after RunDir: a resumed run's options are the run's own
        device = resolve_device(args.device)
        torch.manual_seed(args.seed)  # the networks' initial weights
        self.pair = self.build(device)
        print(f"{'resuming' if run_dir.resuming else 'training'} {self.describe()}", flush=True)
        train, options = self.training(device)
        result, train_seconds = fit_run(run_dir, self.pair, train, args, device, small=self.small, **options)
        if result is None:  # another process than rank 0 under torchrun
            return run_dir.path
        evaluated = self.evaluate(result, device)
        run_dir.save_model(
            self.pair, {"command": self.command, "model": self.model, "data": args.data, **self.metadata()}
        )
        metrics = {
            "status": "done",
            **self.about(),
            "epochs": args.epochs,
            "seed": args.seed,
            **fit_metrics(result, train_seconds),
            **evaluated,
        }
        run_dir.write_json("metrics.json", metrics)
        self.figures(result, device, metrics)
        line = self.summary(metrics)
        if line:
            print(line)
        print(f"wrote metrics.json, model.pt and figures to {run_dir.path.resolve()}")
        return run_dir.path
