"""Progress bars, drawn only on a terminal: every command's bar comes from `progress_bar`.

A bar is drawn when the command asks for one (`progress`, off with -q) and its stream,
stderr, is a terminal; piped or redirected to a file (CI logs), a command prints only its
fixed-format lines, never a bar frame or a carriage return. `logs_above(bar)` prints log
lines above a drawn bar instead of through it.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Iterable

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm


def progress_bar(iterable: Iterable | None = None, *, progress: bool = True, **kwargs) -> tqdm:
    """A tqdm bar (kwargs: total, desc, unit, leave, ...) that draws only if `progress` and on a terminal."""
    return tqdm(iterable, disable=None if progress else True, **kwargs)  # None: tqdm asks stderr.isatty()


def logs_above(bar: tqdm) -> AbstractContextManager:
    """Route console log lines above `bar` while it is drawn; nothing without a bar (the redirect's
    handler would drop the console handler's level, i.e. -q)."""
    return nullcontext() if bar.disable else logging_redirect_tqdm()
