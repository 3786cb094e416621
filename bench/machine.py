"""A one-line description of the machine a benchmark ran on, for the report's header."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import psutil


def cpu_model(cpuinfo: str) -> str | None:
    """The CPU model named in the text of /proc/cpuinfo (x86 ``model name``, some ARM ``Model``)."""
    for line in cpuinfo.splitlines():
        name, sep, value = line.partition(":")
        if sep and name.strip() in ("model name", "Model", "cpu model") and value.strip():
            return value.strip()
    return None


def describe_machine() -> str:
    try:
        model = cpu_model(Path("/proc/cpuinfo").read_text(errors="replace"))
    except OSError:
        model = None
    model = model or platform.processor() or platform.machine() or "unknown CPU"
    memory_gib = psutil.virtual_memory().total / 1024**3
    return (
        f"{model}, {os.cpu_count() or '?'} cores, {memory_gib:.0f} GiB RAM, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
    )
