"""Build the file of reference posteriors this package ships, from a local clone of
posteriordb (github.com/stan-dev/posteriordb, BSD-3-Clause):

    git clone https://github.com/stan-dev/posteriordb /path/to/posteriordb
    python -m ppmodels.posteriordb.extract /path/to/posteriordb

For each posterior that has a port here it keeps the data (as posteriordb gives them) and,
per parameter of the reference draws (10 chains x 1,000 validated Stan NUTS draws), the
mean, the standard deviation and 100 quantiles (at 0.005, 0.015, ..., 0.995): enough to score
a method's mean and sd and its Wasserstein-1 distance, in a few kilobytes per posterior
(the data are most of the file). posteriordb's licence notice ships beside it,
``LICENCE-posteriordb.md``.
"""

from __future__ import annotations

import gzip
import json
import sys
import zipfile
from pathlib import Path

import numpy as np

#: the quantile levels kept per parameter
LEVELS = (np.arange(100) + 0.5) / 100
SHIPPED = Path(__file__).with_name("posteriors.json.gz")


def database_folder(path) -> Path:
    """``path``'s ``posterior_database`` folder; a ``ValueError`` naming ``path`` when it is
    missing or not a posteriordb clone."""
    root = Path(path)
    if not root.exists():
        raise ValueError(f"posteriordb path {str(path)!r} does not exist")
    folder = root if root.name == "posterior_database" else root / "posterior_database"
    if not (folder / "posteriors").is_dir() or not (folder / "reference_posteriors").is_dir():
        raise ValueError(
            f"posteriordb path {str(path)!r} is not a posteriordb clone: it has no posterior_database/posteriors "
            "and posterior_database/reference_posteriors folders"
        )
    return folder


def _zipped_json(path: Path):
    if not path.is_file():
        raise ValueError(f"posteriordb file {path} is missing")
    with zipfile.ZipFile(path) as archive:
        return json.loads(archive.read(archive.namelist()[0]))


def read_posterior(folder: Path, name: str) -> dict:
    """One posterior from the clone: its data and its reference summaries."""
    info = json.loads((folder / "posteriors" / f"{name}.json").read_text())
    data = _zipped_json(folder / "data" / "data" / f"{info['data_name']}.json.zip")
    chains = _zipped_json(folder / "reference_posteriors" / "draws" / "draws" / f"{name}.json.zip")
    parameters = list(chains[0])
    summaries = {}
    for p in parameters:
        draws = np.concatenate([np.asarray(chain[p], dtype=float) for chain in chains])
        summaries[p] = {
            "mean": float(draws.mean()),
            "sd": float(draws.std(ddof=1)),
            "quantiles": [float(q) for q in np.quantile(draws, LEVELS)],
        }
    return {
        "name": name,
        "model_name": info["model_name"],
        "data_name": info["data_name"],
        "data": data,
        "parameters": parameters,
        "reference": summaries,
        "draws": len(chains) * len(chains[0][parameters[0]]),
    }


def main(argv=None):
    from .ports import PORTS

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit("usage: python -m ppmodels.posteriordb.extract /path/to/posteriordb")
    folder = database_folder(args[0])
    posteriors = {name: read_posterior(folder, name) for name in PORTS}
    with gzip.open(SHIPPED, "wt") as fh:
        json.dump({"source": "github.com/stan-dev/posteriordb (BSD-3-Clause)", "posteriors": posteriors}, fh)
    print(f"wrote {len(posteriors)} posteriors to {SHIPPED} ({SHIPPED.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
