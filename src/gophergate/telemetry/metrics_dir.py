"""The directory where the worker processes of one ``gophergate serve`` keep their metrics (prometheus_client's
multiprocess mode): made ready by the main process before the workers start, found by each worker at its start.

This module does not import prometheus_client: the library chooses its value store (in-process or the mmap'd
files) when first imported, from ``PROMETHEUS_MULTIPROC_DIR``, so the main process sets the variable first.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str | None:
    """The directory this process's metrics go to beside its sibling workers', or None (one process alone)."""
    path = os.environ.get(MULTIPROC_ENV)
    return path if path and os.path.isdir(path) else None


class MetricsDir:
    """The main process's side: the operator's ``PROMETHEUS_MULTIPROC_DIR`` emptied at start (the values of the
    previous run), or a temporary directory made and removed at the end; a worker that exits marked dead (its
    gauges removed, its counters kept)."""

    def __init__(self) -> None:
        given = os.environ.get(MULTIPROC_ENV)
        self.temporary = not given
        if given:
            self.path = Path(given)
            self.path.mkdir(parents=True, exist_ok=True)
            for stale in self.path.glob("*.db"):
                stale.unlink()
        else:
            self.path = Path(tempfile.mkdtemp(prefix="gophergate-metrics-"))
            os.environ[MULTIPROC_ENV] = str(self.path)  # inherited by the workers

    def worker_exited(self, pid: int | None) -> None:
        if pid is None:
            return
        from prometheus_client.multiprocess import mark_process_dead

        try:
            mark_process_dead(pid, str(self.path))  # type: ignore[no-untyped-call]
        except OSError:
            log.warning("could not remove the metrics gauges of worker process %d", pid, exc_info=True)

    def close(self) -> None:
        if self.temporary:
            shutil.rmtree(self.path, ignore_errors=True)
            os.environ.pop(MULTIPROC_ENV, None)
