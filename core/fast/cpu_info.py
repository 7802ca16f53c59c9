"""The CPU's model and feature flags, read from /proc/cpuinfo (standard library only: the
noxfile uses it too, outside any environment that has torch)."""

from __future__ import annotations

import platform
from pathlib import Path


def cpu_description() -> str:
    """The first `model name` and `flags` lines of /proc/cpuinfo (what -march=native and
    torch's kernel choice depend on); elsewhere the processor or machine name."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    found = {}
    for line in lines:
        key = line.split(":", 1)[0].strip()
        if key in ("model name", "flags") and key not in found:
            found[key] = line
    return "\n".join(found.values()) or platform.processor() or platform.machine()
