"""The Python blocks in docs/*.md run, in order, one namespace per page; so does the README's
example of a user's own model."""

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
BLOCK = re.compile(r"```python\n(.*?)```", re.S)


@pytest.mark.parametrize("page", sorted(p.name for p in DOCS.glob("*.md")))
def test_doc_code_runs(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blocks = BLOCK.findall((DOCS / page).read_text())
    namespace = {}
    for block in blocks:
        exec(compile(block, f"{page}", "exec"), namespace)


def test_the_readme_example_on_your_own_model_runs(tmp_path, monkeypatch):
    """The README's first code a user copies: fit, mcmc, compare and sbc on their own model."""
    monkeypatch.chdir(tmp_path)
    readme = (DOCS.parent / "README.md").read_text()
    block = re.search(r"## Your own Pyro model\n\n```python\n(.*?)```", readme, re.S)
    assert block is not None, "the README lost its section on a user's own model"
    exec(compile(block.group(1), "README.md", "exec"), {})
