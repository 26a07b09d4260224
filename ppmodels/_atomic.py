"""Writing a file so that a failed write leaves nothing partial behind."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


@contextlib.contextmanager
def replaced_atomically(path, mode: str = "wb"):
    """Yield a file open for writing (``mode``), a temporary one beside ``path``; when the
    block ends cleanly it is closed and renamed onto ``path``, otherwise removed, so ``path``
    holds either the whole new file or what it held before."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
