"""Memory (sampled in a background thread) and CPU time of a process tree."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import psutil

MB = 1024 * 1024
_HAS_PSS = psutil.LINUX


def tree_cpu_seconds(pid: int) -> float | None:
    """User + system CPU time used so far by a process and its live descendants."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return None
    total = 0.0
    for proc in procs:
        try:
            times = proc.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def cpu_busy_seconds(cpu: int) -> float:
    """Non-idle time of one CPU so far, all processes together."""
    times = psutil.cpu_times(percpu=True)[cpu]
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


@dataclass
class RssSample:
    elapsed_s: float
    total_bytes: int
    """Sum of the RSS of the process and all its descendants (shared pages are counted per process)."""
    largest_bytes: int
    """RSS of the biggest single process of the tree."""
    processes: int
    pss_bytes: int | None
    """Sum of the PSS (shared pages split between their users: the tree's real footprint), Linux only."""
    per_process: dict[int, int]
    """RSS of each process, by pid."""


@dataclass
class RssSampler:
    """Samples a process tree (the gateway and any worker or helper processes it started) every ``interval_s``."""

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
        sizes: dict[int, int] = {}
        pss: int | None = 0
        for proc in procs:
            try:
                if pss is not None and _HAS_PSS:
                    full = proc.memory_full_info()
                    sizes[proc.pid] = full.rss
                    pss += full.pss
                else:
                    sizes[proc.pid] = proc.memory_info().rss
                    pss = None
            except psutil.Error:
                continue
        if not sizes:
            return None
        found = RssSample(
            elapsed_s=round(time.monotonic() - self._start, 2),
            total_bytes=sum(sizes.values()),
            largest_bytes=max(sizes.values()),
            processes=len(sizes),
            pss_bytes=pss if _HAS_PSS else None,
            per_process=sizes,
        )
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
