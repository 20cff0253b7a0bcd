"""Analysis of run directories: thermo statistics, structure, diffusion, Green-Kubo, reports.

No openmm, no torch model code.  ``analyze_run`` / ``analyze_runs`` load lazily, so importing a
single module (e.g. :mod:`sus2md.analysis.thermo`) does not pull in matplotlib.
"""
from __future__ import annotations

from typing import Any

__all__ = ["analyze_run", "analyze_runs", "load_run"]


def __getattr__(name: str) -> Any:
    if name in ("analyze_run", "analyze_runs"):
        from sus2md.analysis import report

        return getattr(report, name)
    if name == "load_run":
        from sus2md.analysis.rundir import load_run

        return load_run
    raise AttributeError(f"module 'sus2md.analysis' has no attribute {name!r}")
