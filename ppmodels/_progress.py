"""A progress bar over a loop of known length, or nothing: one helper for every loop that shows one."""

from __future__ import annotations

import contextlib


@contextlib.contextmanager
def progress_bar(enabled: bool, total: int, desc: str, position: int | None = None):
    """Yield ``update(n=1)`` of a tqdm bar of ``total`` steps named ``desc`` (at ``position`` among
    several bars), closed when the block ends; ``None`` when not ``enabled``."""
    if not enabled:
        yield None
        return
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, position=position, leave=True)
    try:
        yield bar.update
    finally:
        bar.close()
