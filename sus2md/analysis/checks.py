"""Checks that turn a run's numbers into warnings: run status, thermo stationarity, NPT stages.

Each function returns warning sentences (and, for NPT stages, the numbers behind them);
:mod:`sus2md.analysis.report` puts them in summary.json ``warnings``, at the top of report.md,
and logs them.

* **Run status** (provenance.json ``status``): anything but ``completed`` (``interrupted``,
  ``failed: ...``, ``running``, or none recorded) means the last stage may be cut short.
* **Thermo series**: the flags of :func:`sus2md.analysis.thermo.stationarity_flags` (most of a
  stage discarded as equilibration; a significant drift), grouped per stage.
* **NPT stages**:

  - *pressure off target*: |<P> - pressure_bar| > ``PRESSURE_SIGMAS`` = 3 standard errors of <P>
    (after equilibration).  A barostat that works samples the target pressure; 3 SE is the usual
    significance, and the SE already counts correlated samples.
  - *frozen box*: volume_A3 identical over every row of the stage (thermo.csv has 12 significant
    digits, so any accepted move shows).
  - *barostat acceptance*, from the optional thermo.csv columns ``<kind>_moves_accepted`` and
    ``<kind>_moves_attempted`` (kind = volume, axis, shear; counts since the start of the stage;
    empty where the stage's barostat does not make that kind of move): the last row of the stage
    gives accepted / attempted per kind.  A kind with attempts but acceptance below
    ``MIN_ACCEPTANCE`` = 10 % (0 accepted included) warns: OpenMM's Monte Carlo barostats tune
    their trial step towards 25-75 % acceptance, so a stage that stays below 10 % is stuck (the
    energy rises steeply on any box change, or the step cannot shrink fast enough).  Run
    directories written before these columns existed are analysed without this check.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from sus2md.analysis.plots import LABELS
from sus2md.analysis.rundir import Table

PRESSURE_SIGMAS = 3.0
MIN_ACCEPTANCE = 0.10
MOVE_KINDS = ("volume", "axis", "shear")


def run_status_warning(provenance: dict[str, Any]) -> str | None:
    """A sentence when provenance.json does not say the run completed, else None."""
    status = provenance.get("status")
    if status == "completed":
        return None
    if status is None:
        return "provenance.json records no status: cannot tell whether the run completed"
    return f"run status is '{status}', not 'completed': the last stage may be cut short"


def thermo_warnings(thermo_stages: list[dict]) -> list[str]:
    """One sentence per stage and kind of flag, naming the quantities (from ``stage_averages``)."""
    out = []
    for entry in thermo_stages:
        by_kind: dict[str, list[str]] = {}
        for q, avg in entry["averages"].items():
            for flag in avg.get("flags", []):
                kind = "drifting" if flag.startswith("drifting") else "equilibration"
                by_kind.setdefault(kind, []).append(f"{LABELS.get(q, q)} {flag}")
        if "drifting" in by_kind:
            out.append(f"{entry['stage']}: not stationary, its mean is not an equilibrium average: "
                       + "; ".join(by_kind["drifting"]))
        if "equilibration" in by_kind:
            out.append(f"{entry['stage']}: mostly discarded as equilibration (stage too short for its "
                       "correlation time, or never equilibrated): " + "; ".join(by_kind["equilibration"]))
    return out


def barostat_acceptance(thermo: Table, rows: np.ndarray) -> dict[str, dict] | None:
    """Per move kind: accepted, attempted, acceptance from the last row of ``rows`` (a boolean
    mask of one stage) with counts; None when thermo.csv has no move-count columns at all."""
    kinds = [k for k in MOVE_KINDS if f"{k}_moves_attempted" in thermo and f"{k}_moves_accepted" in thermo]
    if not kinds:
        return None
    out = {}
    for kind in kinds:
        acc, att = thermo[f"{kind}_moves_accepted"][rows], thermo[f"{kind}_moves_attempted"][rows]
        have = np.flatnonzero(np.isfinite(acc) & np.isfinite(att))
        if len(have) == 0:
            continue
        a, n = int(acc[have[-1]]), int(att[have[-1]])
        out[kind] = {"accepted": a, "attempted": n, "acceptance": a / n if n > 0 else None}
    return out


def npt_checks(stage: dict, thermo: Table, pressure: dict | None) -> tuple[dict[str, Any], list[str]]:
    """Checks of one NPT stage (``stage``: a summary["stages"] entry; ``pressure``: its
    mean_and_sem of pressure_bar, or None) -> (numbers for summary.json, warnings)."""
    name, target = stage["name"], stage["pressure_bar"]
    rows = thermo["stage_index"].astype(int) == stage["index"]
    info: dict[str, Any] = {"barostat": stage.get("barostat"), "target_pressure_bar": target}
    warnings = []
    if pressure is not None and pressure["n"] >= 2 and np.isfinite(pressure["sem"]) and pressure["sem"] > 0:
        z = (pressure["mean"] - target) / pressure["sem"]
        info.update(pressure_bar=pressure["mean"], pressure_sem_bar=pressure["sem"], pressure_off_sigmas=z)
        if abs(z) > PRESSURE_SIGMAS:
            warnings.append(f"{name}: mean pressure {pressure['mean']:.4g} ± {pressure['sem']:.2g} bar is off the "
                            f"target {target:g} bar by {abs(z):.1f} standard errors")
    volume = thermo["volume_A3"][rows]
    volume = volume[np.isfinite(volume)]
    if len(volume) >= 3:
        info["volume_range_A3"] = [float(volume.min()), float(volume.max())]
        if volume.max() == volume.min():
            warnings.append(f"{name}: the box never moved (volume {volume[0]:.6g} Å³ in all {len(volume)} rows) "
                            "although the stage is NPT")
    acceptance = barostat_acceptance(thermo, rows)
    info["acceptance"] = acceptance
    for kind, a in (acceptance or {}).items():
        if a["attempted"] > 0 and a["accepted"] < MIN_ACCEPTANCE * a["attempted"]:
            warnings.append(f"{name}: barostat {kind} moves: {a['accepted']} of {a['attempted']} accepted "
                            f"({100 * a['acceptance']:.1f}% < {100 * MIN_ACCEPTANCE:.0f}%)")
    return info, warnings
