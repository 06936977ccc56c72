"""Progress bars for the CLI: a rich bar on a terminal for transfers of a few MiB or more, nothing otherwise."""
from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

# Below this a transfer is over before a bar would help.
PROGRESS_MIN_BYTES = 32 * 2**20


@contextmanager
def terminal_progress(total: int, label: str) -> Iterator[Callable[[int], None] | None]:
    """A joey.transfer.ProgressFactory: a transient bar on stderr when it is a terminal."""
    if total < PROGRESS_MIN_BYTES or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    # On stderr, like the check above: stdout may be a pipe carrying the result.
    with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                  TransferSpeedColumn(), transient=True, console=Console(stderr=True)) as p:
        task = p.add_task(label, total=total)
        yield lambda n: p.advance(task, n)
