"""This process's memory as Linux reports it in ``/proc/self/status``, in MiB.

The peak is ``VmHWM``, the high-water mark of this process's own address space. Not
``getrusage().ru_maxrss``: Linux carries that over from the parent across fork + exec, so a
child started by a large process (pytest late in a suite, a benchmark driver) reports at least
its parent's RSS at the fork. Measured here: the child of a 1.5 GB parent said ru_maxrss
1,513 MiB and VmHWM 13 MiB.
"""

from __future__ import annotations

from pathlib import Path


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"/proc/self/status has no {field} (these benchmarks measure memory on Linux only)")


def rss_mb() -> float:
    """Resident memory now."""
    return _status_mb("VmRSS")


def peak_mb() -> float:
    """The highest resident memory of this process since it started (or exec'd)."""
    return _status_mb("VmHWM")
