"""The semi-supervised VAE (M2) on the embedded digits with few labels: test accuracy of
q(y|x) with the auxiliary loss, without it, and the same classifier network trained on the
labels alone, for several label counts and seeds; the table docs/ssvae.md shows.

    python benchmarks/ssvae_labels.py --labels 50,100,300 --seeds 3

Each cell runs ``ppmodels train ssvae`` (its defaults unless given here) into a temporary
folder and reads its metrics.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from ppmodels.cli import main as ppmodels


def run(labels, aux, seed, epochs, out):
    argv = ["train", "ssvae", "--labels", str(labels), "--seed", str(seed), "--epochs", str(epochs), "--no-progress"]
    if aux is not None:
        argv += ["--aux-weight", str(aux)]
    if ppmodels([*argv, "--out", str(out)]) != 0:
        raise SystemExit(f"failed: {' '.join(argv)}")
    return json.loads((out / "metrics.json").read_text())


def cell(values):
    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) > 1 else float("nan")
    return f"{mean:.3f} ± {sd:.3f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--labels", default="50,100,300")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "ssvae_labels.json"))
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in [int(v) for v in args.labels.split(",")]:
            with_aux, without, baseline, elbo = [], [], [], []
            for seed in range(args.seeds):
                m = run(n, None, seed, args.epochs, Path(tmp) / f"aux-{n}-{seed}")
                with_aux.append(m["test_accuracy"])
                baseline.append(m["supervised_baseline_accuracy"])
                elbo.append(m["test_elbo"])
                without.append(run(n, 0.0, seed, args.epochs, Path(tmp) / f"noaux-{n}-{seed}")["test_accuracy"])
            rows.append(
                {"labels": n, "m2_aux": with_aux, "m2_no_aux": without, "supervised": baseline, "test_elbo": elbo}
            )
    print(
        f"\nM2 on the digits (1,437 training images, 360 test), {args.epochs} epochs, mean ± sd over {args.seeds} "
        "seeds (labels drawn anew per seed)\n"
    )
    print(
        "| labels | M2 + auxiliary loss (α = 0.1 N) | M2 without it | classifier on the labels alone | M2 test ELBO |"
    )
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['labels']} | {cell(r['m2_aux'])} | {cell(r['m2_no_aux'])} | {cell(r['supervised'])} | "
            f"{statistics.fmean(r['test_elbo']):.2f} |"
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
