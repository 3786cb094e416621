"""Sample the resident memory of a process tree in a background thread."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import psutil

MB = 1024 * 1024


@dataclass
class RssSample:
    elapsed_s: float
    total_bytes: int
    """Sum of the RSS of the process and all its descendants (shared pages are counted per process)."""
    largest_bytes: int
    """RSS of the biggest single process of the tree."""
    processes: int


@dataclass
class RssSampler:
    """Samples a process tree (the gateway and, e.g., granian's worker processes) every ``interval_s``."""

    pid: int
    interval_s: float = 0.5
    samples: list[RssSample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _start: float = field(default_factory=time.monotonic)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def sample(self) -> RssSample | None:
        """Take one sample now (also recorded); None once the process is gone."""
        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return None
        sizes: list[int] = []
        for proc in procs:
            try:
                sizes.append(proc.memory_info().rss)
            except psutil.Error:
                continue
        if not sizes:
            return None
        found = RssSample(round(time.monotonic() - self._start, 2), sum(sizes), max(sizes), len(sizes))
        with self._lock:
            self.samples.append(found)
        return found

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def start(self) -> None:
        self._start = time.monotonic()
        self.sample()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    @property
    def peak(self) -> RssSample | None:
        with self._lock:
            return max(self.samples, key=lambda s: s.total_bytes, default=None)
