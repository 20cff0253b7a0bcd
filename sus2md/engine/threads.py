"""How many threads a run uses: one setting for torch (the model) and OpenMM's CPU platform.

The default is the cores this process may use (``os.sched_getaffinity``: a SLURM or cgroup
allocation, not the whole node) less those another process keeps busy right now, measured from
``/proc/stat`` over :data:`SAMPLE_S` seconds: OpenMP threads that share a core with a busy
process wait for each other at every barrier, which costs far more than the thread gains (on a
2-core machine with one core busy, 2 threads ran the compiled model 7x slower than 1).  An
explicit count (``threads:`` in a protocol, ``--threads``) is used as given.
"""
from __future__ import annotations

import logging
import math
import os
import time

import torch

__all__ = ["usable_cores", "idle_cores", "default_threads", "apply_threads"]

log = logging.getLogger(__name__)

#: seconds over which idle cores are measured
SAMPLE_S = 0.25


def usable_cores() -> list[int]:
    """The CPUs this process may run on."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return list(range(os.cpu_count() or 1))


def _cpu_times(cpus: list[int]) -> dict[int, tuple[float, float]] | None:
    """(idle, total) jiffies per CPU from /proc/stat, or None where there is no /proc/stat."""
    try:
        lines = open("/proc/stat").read().splitlines()
    except OSError:
        return None
    out = {}
    for line in lines:
        head, _, rest = line.partition(" ")
        if head.startswith("cpu") and head[3:].isdigit() and int(head[3:]) in cpus:
            v = [float(x) for x in rest.split()]
            idle = v[3] + (v[4] if len(v) > 4 else 0.0)  # idle + iowait
            out[int(head[3:])] = (idle, sum(v[:8]))
    return out


def idle_cores(cpus: list[int] | None = None, sample_s: float = SAMPLE_S) -> float | None:
    """Idle capacity of ``cpus`` (default: :func:`usable_cores`) in cores, or None if unknown."""
    cpus = usable_cores() if cpus is None else cpus
    a = _cpu_times(cpus)
    if not a:
        return None
    time.sleep(sample_s)
    b = _cpu_times(cpus)
    if not b:
        return None
    idle = 0.0
    for c in a.keys() & b.keys():
        d_total = b[c][1] - a[c][1]
        if d_total > 0:
            idle += min(1.0, max(0.0, (b[c][0] - a[c][0]) / d_total))
    return idle


def default_threads() -> int:
    """The usable cores that are idle now (at least 1; module docstring)."""
    cpus = usable_cores()
    idle = idle_cores(cpus)
    if idle is None:
        return len(cpus)
    n = max(1, min(len(cpus), math.floor(idle + 0.5)))
    if n < len(cpus):
        log.info("threads: %d of the %d usable cores are busy; using %d thread(s) (set threads to override)",
                 len(cpus) - n, len(cpus), n)
    return n


def apply_threads(threads: int | None) -> int:
    """Set torch's intra-op threads to ``threads`` (None: :func:`default_threads`); returns the count."""
    n = default_threads() if threads is None else int(threads)
    if n < 1:
        from sus2md.errors import UsageError

        raise UsageError(f"threads must be >= 1, got {threads}")
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n
