"""Smoke tests: every example runs end to end as a subprocess with tiny settings."""

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.parametrize("script", sorted(p.name for p in EXAMPLES.glob("*.py")))
def test_example_runs_smoke(script, tmp_path):
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script), "--epochs", "1", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "wrote figures to" in done.stdout
    assert list(tmp_path.glob("*.png"))
