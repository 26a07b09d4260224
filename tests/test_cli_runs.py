"""The command as a tool people leave running: resume after a kill, reproducible seeds,
progress lines in logs, sample on every run kind, help that tells the truth, one-line errors."""

import errno
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from ppmodels.cli import build_parser, main

TINY_VAE = ["--image-size", "8", "--hidden", "16", "--latent-dim", "2", "--eval-samples", "5", "--no-progress"]
#: what varies between two runs of the same command: wall-clock times
TIMES = {"epoch_seconds", "train_seconds", "samples_per_second", "seconds", "seconds_per_epoch", "min_ess_per_second"}


def results(path):
    """A metrics file without its timings."""

    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in TIMES}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return strip(json.loads(path.read_text()))


def run_command(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "ppmodels", *args], capture_output=True, text=True, **kwargs)


# -- resume ----------------------------------------------------------------------------------
def test_a_killed_run_resumes_to_the_uninterrupted_result(tmp_path):
    args = ["train", "vae", "--image-size", "28", "--hidden", "64", "--epochs", "8", "--eval-samples", "20"]
    straight = tmp_path / "straight"
    done = run_command(*args, "--out", str(straight), "--no-progress")
    assert done.returncode == 0, done.stderr
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "ppmodels", *args, "--out", str(killed), "--no-progress"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while time.time() < deadline:  # kill once two epochs are checkpointed
        try:
            if json.loads((killed / "metrics.json").read_text()).get("epochs_done", 0) >= 2:
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = json.loads((killed / "metrics.json").read_text())
    assert partial["status"] == "running" and 2 <= partial["epochs_done"] < 8
    assert not (killed / "model.pt").exists()
    resumed = run_command("train", "vae", "--resume", str(killed), "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming vae" in resumed.stdout
    assert results(killed / "metrics.json") == results(straight / "metrics.json")


def test_resume_refuses_to_change_the_run(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "vae", *TINY_VAE, "--epochs", "2", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["train", "vae", "--resume", str(out), "--lr", "0.01"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"ppmodels train vae: error: --resume {out}: resuming with other options would not continue the same run: "
        "--lr 0.01 (the run has 0.001). Give only --resume (and --epochs to train longer), or start a new run"
    )
    assert main(["train", "vae", "--resume", str(out), "--epochs", "1"]) == 2
    assert "--epochs 1 is fewer than the 2 epochs the run has done" in capsys.readouterr().err
    assert main(["train", "cvae", "--resume", str(out)]) == 2
    assert "that run is 'ppmodels train vae', not 'ppmodels train cvae'" in capsys.readouterr().err
    assert main(["train", "vae", "--resume", str(tmp_path)]) == 2
    assert "no run.json there" in capsys.readouterr().err
    assert main(["train", "vae", "--resume", str(out), "--epochs", "3"]) == 0  # training longer is allowed
    assert len(json.loads((out / "metrics.json").read_text())["train_loss"]) == 3


# -- seeds -------------------------------------------------------------------------------------
SEEDED = {
    "vae": (["train", "vae", *TINY_VAE, "--epochs", "2"], "metrics.json"),
    "cvae": (["train", "cvae", *TINY_VAE, "--epochs", "1"], "metrics.json"),
    "demo": (["demo", "--epochs", "1", "--eval-samples", "5", "--no-progress"], "metrics.json"),
    "bnn": (
        ["train", "bnn", "--epochs", "1", "--eval-samples", "3", "--psis-samples", "0", "--no-progress"],
        "metrics.json",
    ),
    "np": (
        ["train", "np", "--epochs", "1", "--functions", "32", "--eval-functions", "8", "--eval-samples", "4"]
        + ["--hidden", "8", "--latent-dim", "2", "--no-progress"],
        "metrics.json",
    ),
    "ssvae": (
        [
            "train",
            "ssvae",
            "--epochs",
            "1",
            "--labels",
            "20",
            "--hidden",
            "16",
            "--baseline-steps",
            "5",
            "--no-progress",
        ],
        "metrics.json",
    ),
    "compare-elbo": (
        ["compare-elbo", "--estimators", "trace,iwae", "--epochs", "1", *TINY_VAE],
        "elbo_comparison.json",
    ),
    "compare": (
        ["compare", "--problem", "gmm", "--guides", "meanfield", "--num-samples", "10", "--warmup", "5"]
        + ["--vi-epochs", "20", "--no-progress"],
        "comparison.json",
    ),
}


@pytest.mark.parametrize("command", sorted(SEEDED))
def test_the_same_seed_gives_the_same_results(command, tmp_path):
    argv, name = SEEDED[command]
    outs = [tmp_path / "a", tmp_path / "b"]
    for out in outs:
        assert main([*argv, "--seed", "3", "--out", str(out)]) == 0
    assert results(outs[0] / name) == results(outs[1] / name)


# -- progress in logs --------------------------------------------------------------------------
def test_without_a_terminal_the_run_logs_a_line_per_epoch(tmp_path):
    done = run_command("train", "vae", *TINY_VAE[:-1], "--epochs", "3", "--out", str(tmp_path / "r"))
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("epoch ")]
    assert [line.split(" loss ")[0] for line in lines] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert all(" val " in line for line in lines)


# -- sample on every run kind, and on broken files ---------------------------------------------
def test_sample_on_bnn_np_and_ssvae_runs(tmp_path):
    bnn, npr, ssvae = tmp_path / "bnn", tmp_path / "np", tmp_path / "ssvae"
    assert (
        main(
            [
                "train",
                "bnn",
                "--epochs",
                "1",
                "--eval-samples",
                "2",
                "--psis-samples",
                "0",
                "--no-progress",
                "--out",
                str(bnn),
            ]
        )
        == 0
    )
    assert main([*SEEDED["np"][0], "--out", str(npr)]) == 0
    assert main([*SEEDED["ssvae"][0], "--out", str(ssvae)]) == 0
    for run, text in [(bnn, "predictive draws for 6 test images"), (npr, "sampled functions for 6 new functions")]:
        done = run_command("sample", str(run), "--num", "6", "--draws", "5")
        assert done.returncode == 0, done.stderr
        assert text in done.stdout and (run / "samples-0.png").stat().st_size > 0
    done = run_command("sample", str(ssvae), "--labels", "1,2", "--num", "3")
    assert done.returncode == 0 and "wrote 6 samples" in done.stdout, done.stderr


@pytest.mark.parametrize(
    "content,message",
    [
        (b"", r"model.pt is empty: not a ppmodels checkpoint"),
        (b"PK\x03\x04 truncated zip", r"model.pt is not a readable ppmodels checkpoint: it is truncated, corrupt"),
        (None, r"model.pt is not a ppmodels checkpoint"),
    ],
    ids=["empty", "truncated", "other-kind"],
)
def test_sample_on_an_unreadable_checkpoint_is_one_line(tmp_path, content, message):
    path = tmp_path / "model.pt"
    if content is None:
        torch.save({101: "x"}, path)
    else:
        path.write_bytes(content)
    done = run_command("sample", str(tmp_path))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ppmodels sample: error: ")
    import re

    assert re.search(message, lines[0]), lines[0]


# -- help ----------------------------------------------------------------------------------------
def help_text(*argv, capsys=None):
    with pytest.raises(SystemExit):
        main([*argv, "--help"])
    return capsys.readouterr().out


def test_help_shows_the_real_defaults_and_the_usable_estimators(capsys):
    vae = help_text("train", "vae", capsys=capsys)
    for text in [
        "(default: 30)",
        "(default: 128)",
        "(default: 0.001)",
        "(default: 500)",
        "{trace,meanfield,tracegraph",
    ]:
        assert text in " ".join(vae.split()), text
    assert "jit-trace" not in vae and "tailadaptive" not in vae
    elbo = " ".join(help_text("compare-elbo", capsys=capsys).split())
    assert "importance samples K for the test log-likelihood (default: 1000)" in elbo
    assert "output folder (default: runs/MODEL-DATA)" not in elbo
    npr = " ".join(help_text("train", "np", capsys=capsys).split())
    assert "90% interval coverage" in npr and "90%%" not in npr
    ssvae = " ".join(help_text("train", "ssvae", capsys=capsys).split())
    assert "{enum}" in ssvae


def test_every_option_with_a_default_shows_it_in_help():
    """Walks every subcommand's parser: an option with a value default (0 included) says it."""
    import argparse

    from ppmodels.cli import build_parser

    def parsers(parser, path):
        yield path, parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from parsers(sub, path + [name])

    missing = []
    for path, parser in parsers(build_parser(), []):
        formatter = parser._get_formatter()
        for action in parser._actions:
            if action.default is None or action.default is False or action.default == argparse.SUPPRESS:
                continue
            if action.nargs == 0 or isinstance(action, argparse._SubParsersAction):
                continue
            if "(default" not in formatter._get_help_string(action):
                missing.append((" ".join(path), action.option_strings, action.default))
    assert not missing, missing


def test_bad_values_read_like_the_rest(capsys):
    with pytest.raises(SystemExit):
        main(["train", "vae", "--epochs", "ten"])
    assert "argument --epochs: must be a positive int, got 'ten'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "vae", "--device", "gpu"])
    assert "argument --device: must be cpu, cuda, cuda:N or mps, got 'gpu'" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a torch build without CUDA")
def test_a_device_this_build_lacks_is_one_line(tmp_path, capsys):
    assert main(["train", "vae", *TINY_VAE, "--device", "cuda", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ppmodels train vae: error: --device cuda: this torch build") and "\n" not in err


def test_the_parser_imports_nothing_heavy():
    code = (
        "import sys; from ppmodels.cli import build_parser; build_parser().format_help(); "
        "print(sorted(m for m in ('torch', 'pyro', 'matplotlib') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_the_cli_lists_only_estimators_and_likelihoods_the_library_has():
    from ppmodels.cli import _options
    from ppmodels.infer import ELBO_NAMES
    from ppmodels.models import LIKELIHOODS

    assert set(_options.MODEL_ESTIMATORS) <= set(ELBO_NAMES)
    assert _options.LIKELIHOODS == LIKELIHOODS
    assert build_parser()  # builds


# -- writing outputs that fail ----------------------------------------------------------------
def test_a_full_disk_while_writing_the_model_is_one_line_and_keeps_what_was_written(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    assert main(["train", "vae", *TINY_VAE, "--epochs", "1", "--out", str(out)]) == 0
    before = (out / "model.pt").read_bytes()
    capsys.readouterr()
    real_fdopen = os.fdopen

    class Full:
        def __init__(self, fh):
            self.fh = fh

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.fh, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

    def fdopen(fd, mode="r", *a, **k):
        fh = real_fdopen(fd, mode, *a, **k)
        return Full(fh) if "b" in mode else fh

    monkeypatch.setattr(os, "fdopen", fdopen)
    assert main(["train", "vae", "--resume", str(out), "--epochs", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"ppmodels train vae: error: could not write {out / 'checkpoint.pt'}") and "\n" not in err
    assert err.endswith("No space left on device"), err  # the system's words, not torch's zip writer's
    monkeypatch.undo()
    assert (out / "model.pt").read_bytes() == before
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("command", ["demo", "compare", "sample"])
def test_a_read_only_output_folder_is_one_line(command, tmp_path, capsys, monkeypatch):
    import tempfile

    run = tmp_path / "run"
    if command == "sample":
        assert main(["train", "vae", *TINY_VAE, "--epochs", "1", "--out", str(run)]) == 0
    capsys.readouterr()

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    argv = {
        "demo": ["demo", "--epochs", "1", "--eval-samples", "2", "--no-progress", "--out", str(tmp_path / "d")],
        "compare": SEEDED["compare"][0] + ["--out", str(tmp_path / "c")],
        "sample": ["sample", str(run), "--num", "2"],
    }[command]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "could not write" in err and "Permission denied" in err and "\n" not in err


# -- a damaged run folder ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "run"
    assert main(["train", "vae", *TINY_VAE, "--epochs", "1", "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda d: d["options"].update(epochs="6"), r"""option 'epochs' is "6": --epochs must be written as 6"""),
        (lambda d: d["options"].update(hidden=400), r"option 'hidden' is 400: --hidden must be written as \[400\]"),
        (lambda d: d.update(options=[]), r'must be an object with "command" and an "options" object'),
        (lambda d: [d], r"must be an object .* but holds list"),
        (lambda d: d["options"].update(lr=-1), r"option 'lr' is -1: --lr must be a positive finite number, got -1"),
        (lambda d: d["options"].update(elbo="elbow"), r"option 'elbo' is \"elbow\": --elbo must be one of trace,"),
        (lambda d: d["options"].update(hiden=[400]), r"unknown option 'hiden' for 'ppmodels train vae'"),
        (lambda d: d["options"].update(seed=None), r"option 'seed' is null: --seed needs a value"),
    ],
    ids=["string-epochs", "scalar-hidden", "options-list", "top-level-list", "bad-lr", "bad-choice", "unknown", "null"],
)
def test_a_damaged_run_file_is_one_line_naming_it(finished_run, tmp_path, capsys, edit, message):
    import re
    import shutil

    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    saved = json.loads((out / "run.json").read_text())
    replaced = edit(saved)
    (out / "run.json").write_text(
        json.dumps(replaced if replaced is not None and not isinstance(replaced, dict) else saved)
    )
    capsys.readouterr()
    assert main(["train", "vae", "--resume", str(out), "--epochs", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(f"ppmodels train vae: error: {out / 'run.json'}"), err
    assert re.search(message, err), err


def test_resume_removes_what_a_killed_write_left_behind(finished_run, tmp_path, capsys):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    left = [
        ".checkpoint.pt.ab12cd34.tmp",
        ".metrics.json.x_9y8z7w.tmp",
        ".model.pt.qwertyui.tmp",
        ".loss.png.a1b2c3d4.tmp",
    ]
    for name in left:
        (out / name).write_bytes(b"partial")
    (out / "notes.tmp").write_text("mine")  # not one of the command's temporary files: kept
    assert main(["train", "vae", "--resume", str(out), "--epochs", "2"]) == 0
    names = {p.name for p in out.iterdir()}
    assert not names & set(left) and "notes.tmp" in names


def test_metrics_never_claim_an_epoch_the_checkpoint_lacks(tmp_path, capsys, monkeypatch):
    """The checkpoint is written before metrics.json each epoch: when writing epoch 2's
    checkpoint fails (a full disk, a kill), metrics.json still says 1."""
    from ppmodels.infer.training import checkpoints as checkpoint

    out = tmp_path / "run"
    real = checkpoint.save
    calls = []

    def save(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(checkpoint, "save", save)
    assert main(["train", "vae", *TINY_VAE, "--epochs", "3", "--out", str(out)]) == 2
    assert json.loads((out / "metrics.json").read_text())["epochs_done"] == 1
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert len(state["fit"]["result"]["train_loss"]) == 1


# -- threads on a busy machine -------------------------------------------------------------------
THREADS_PROBE = (
    "import os, sys; from ppmodels.cli import _threads, main; code = main(sys.argv[1:]); import torch; "
    "print(code, _threads._per_phase, torch.get_num_threads(), os.environ.get('OMP_NUM_THREADS'), "
    "os.environ.get('OMP_WAIT_POLICY'))"
)


def _without_thread_settings():
    return {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "MKL_", "PPMODELS_THREADS"))}


@pytest.fixture(scope="module")
def torch_default_threads():
    """torch's own thread count in a process without any thread setting in its environment."""
    done = subprocess.run(
        [sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
        env=_without_thread_settings(),
        capture_output=True,
        text=True,
    )
    return int(done.stdout)


@pytest.mark.parametrize(
    "command,env,expected",
    [
        ("sample", {}, "2 True DEFAULT None None"),  # small networks train on one thread
        ("bnn", {}, "2 False DEFAULT None PASSIVE"),  # every thread, asleep while waiting
        ("sample", {"PPMODELS_THREADS": "1"}, "2 False 1 1 None"),
        ("bnn", {"OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "ACTIVE"}, "2 False 1 1 ACTIVE"),  # the user's, kept
        ("bnn", {"PPMODELS_THREADS": "omp"}, "2 False DEFAULT None None"),  # OpenMP's own defaults
    ],
    ids=["default", "bnn", "ppmodels-threads", "user-omp", "omp"],
)
def test_the_command_sets_its_threads_before_torch_loads(tmp_path, command, env, expected, torch_default_threads):
    argv = {
        "sample": ["sample", str(tmp_path)],  # fails at once (no run there), after the setting
        "bnn": ["train", "bnn", "--resume", str(tmp_path)],
    }[command]
    env = {**_without_thread_settings(), **env}
    done = subprocess.run([sys.executable, "-c", THREADS_PROBE, *argv], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == expected.replace("DEFAULT", str(torch_default_threads))


def test_a_bad_thread_setting_is_one_line():
    done = run_command("sample", ".", env={**os.environ, "PPMODELS_THREADS": "many"})
    assert done.returncode == 2
    assert done.stderr.strip() == "ppmodels: error: PPMODELS_THREADS must be a positive int or 'omp', but got 'many'"


def test_a_program_that_loaded_torch_keeps_its_threads(tmp_path):
    before = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS"), os.environ.get("OMP_WAIT_POLICY")
    assert main(["sample", str(tmp_path)]) == 2
    assert (torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS"), os.environ.get("OMP_WAIT_POLICY")) == before


def test_small_networks_train_on_one_thread_when_the_command_chose_the_threads(monkeypatch):
    from ppmodels.cli import _threads

    before = torch.get_num_threads()
    with _threads.training(small=True):  # this process loaded torch itself: its threads stay
        assert torch.get_num_threads() == before
    monkeypatch.setattr(_threads, "_per_phase", True)  # as configure() leaves a fresh command process
    with _threads.training(small=True):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with _threads.training(small=False):
        assert torch.get_num_threads() == before
