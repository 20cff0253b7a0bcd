"""``sus2md analyze``: one run directory (or several) -> plots, summary.json and report.md.

Per run: thermo averages per stage (equilibration discarded, error bars by blocking, samples used
of the total, stationarity flags), lattice parameters per stage, partial RDFs and their first
peaks per dynamical stage, MSD per element per dynamical stage (>= ``MIN_MSD_FRAMES`` frames) with
a D only where the MSD is diffusive, NPT checks (pressure on target, box moving, barostat
acceptance), and Green-Kubo kappa per stage of heat_flux.csv.  Across runs: D against T with an
Arrhenius fit per element over the runs where it is diffusive (each run's last stage with an
MSD), and kappa mean +- standard error over runs at the same target temperature.

Whatever makes a number untrustworthy (:mod:`sus2md.analysis.checks`) becomes a sentence in
summary.json ``warnings``, in the Warnings section at the top of report.md, and a log record.
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from sus2md.analysis import checks, diffusion, greenkubo, plots, structure
from sus2md.analysis.markdown import run_report, runs_report
from sus2md.analysis.rundir import RunData, load_run
from sus2md.analysis.thermo import QUANTITIES, mean_and_sem, stage_averages
from sus2md.errors import UsageError

logger = logging.getLogger(__name__)

MIN_MSD_FRAMES = 20
LATTICE_KEYS = ("a_A", "b_A", "c_A", "alpha_deg", "beta_deg", "gamma_deg")


def analyze_run(run_dir: str | Path, out_dir: str | Path | None = None) -> dict[str, Any]:
    """Analyse one run directory; writes PNGs, summary.json, report.md into ``out_dir``
    (default ``RUN_DIR/analysis``) and returns the summary (plain data, NaN as None)."""
    run = load_run(run_dir)
    out = Path(out_dir) if out_dir is not None else run.run_dir / "analysis"
    out.mkdir(parents=True, exist_ok=True)
    traj = run.load_trajectory()
    symbols = [a.element.symbol for a in traj.topology.atoms]
    stages = _stage_info(run)
    ramps = [s["index"] for s in stages if s["temperature_ramp_K"] is not None]
    summary: dict[str, Any] = {
        "run_dir": str(run.run_dir.resolve()), "status": run.provenance.get("status"), "warnings": [],
        "n_atoms": traj.n_atoms, "n_frames": traj.n_frames,
        "composition": {el: symbols.count(el) for el in dict.fromkeys(symbols)},
        "stages": stages, "thermo": stage_averages(run.thermo, unchecked_stages=ramps),
        "npt": {}, "lattice": {}, "rdf": {}, "diffusion": {}, "kappa": {}, "plots": [],
    }
    _checks(run, summary)
    summary["plots"] += [plots.plot_thermo(run.thermo, q, out / f"thermo_{q}.png").name
                         for q in QUANTITIES if np.isfinite(run.thermo[q]).any()]
    frame_stage = run.frames["stage_index"].astype(int)
    for info in summary["stages"]:
        sub = traj[np.flatnonzero(frame_stage == info["index"])]
        if sub.n_frames == 0:
            continue
        summary["lattice"][info["name"]] = _lattice(sub, run.protocol.structure.supercell)
        if info["type"] != "minimize":
            _rdf(sub, info["name"], summary, out)
            _diffusion(sub, info, summary, out)
    if run.heat_flux is not None:
        _kappa(run, summary, out)
    summary = _plain(summary)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    (out / "report.md").write_text(run_report(summary))
    return summary


def _checks(run: RunData, summary: dict) -> None:
    """Run status, thermo stationarity and NPT checks -> summary["warnings"] (and the log)."""
    warnings = [w for w in [checks.run_status_warning(run.provenance)] if w]
    warnings += checks.thermo_warnings(summary["thermo"])
    for info in summary["stages"]:
        if info["type"] != "npt" or not (run.thermo["stage_index"].astype(int) == info["index"]).any():
            continue
        thermo = next((e for e in summary["thermo"] if e["stage_index"] == info["index"]), {"averages": {}})
        npt, found = checks.npt_checks(info, run.thermo, thermo["averages"].get("pressure_bar"))
        summary["npt"][info["name"]] = npt
        warnings += found
    for w in warnings:
        logger.warning("%s: %s", run.run_dir, w)
    summary["warnings"] += warnings


def _stage_info(run: RunData) -> list[dict]:
    out = []
    for i, s in enumerate(run.protocol.stages):
        info = {"index": i, "name": s.name, "type": s.type, "steps": getattr(s, "steps", None),
                "timestep_fs": getattr(s, "timestep_fs", None), "temperature_K": getattr(s, "temperature_K", None),
                "temperature_ramp_K": getattr(s, "temperature_ramp_K", None),
                "pressure_bar": getattr(s, "pressure_bar", None), "barostat": getattr(s, "barostat", None)}
        out.append(info)
    return out


def _lattice(sub, supercell: list[int]) -> dict[str, Any]:
    params = structure.compute_lattice_parameters(sub)
    out = {key: mean_and_sem(params[:, k]) for k, key in enumerate(LATTICE_KEYS)}
    out["volume_A3"] = mean_and_sem(structure.compute_volume_A3(sub))
    out["supercell"] = list(supercell)
    return out


def _rdf(sub, name: str, summary: dict, out: Path) -> None:
    r, rdfs = structure.compute_rdfs(sub)
    peaks = {pair: dict(zip(("r_A", "g"), structure.first_peak(r, g))) for pair, g in rdfs.items()}
    summary["rdf"][name] = {**peaks, "r_max_A": float(r[-1] + 0.5 * (r[1] - r[0])) if len(r) > 1 else None}
    path = plots.plot_rdfs(r, rdfs, f"RDF, {name} ({sub.n_frames} frames)", out / f"rdf_{name}.png")
    summary["plots"].append(path.name)


def _diffusion(sub, info: dict, summary: dict, out: Path) -> None:
    name = info["name"]
    if sub.n_frames < MIN_MSD_FRAMES:
        summary["diffusion"][name] = {"skipped": f"{sub.n_frames} frames (< {MIN_MSD_FRAMES})"}
        return
    try:
        fits = diffusion.diffusion_by_element(sub)
    except UsageError as exc:  # frames not evenly spaced
        summary["diffusion"][name] = {"skipped": str(exc)}
        return
    symbols = np.array([a.element.symbol for a in sub.topology.atoms])
    curves = {el: diffusion.compute_msd(sub, np.flatnonzero(symbols == el), d.max_lag_frames)
              for el, d in fits.items()}
    elements = {el: {**asdict(d), "D_cm2_s": d.D_cm2_s, "D_err_cm2_s": d.D_err_cm2_s} for el, d in fits.items()}
    lo, hi = diffusion.LOG_SLOPE_RANGE
    summary["diffusion"][name] = {
        "n_frames": sub.n_frames, "temperature_K": _stage_temperature(info, summary), "elements": elements,
        "method": "MSD fit over 20-80% of max lag (1/5 of the stage); error = SEM over 5 segments; "
                  f"D only where diffusive: log-log slope in [{lo:g}, {hi:g}], MSD at window end >= "
                  f"{diffusion.MIN_MSD_A2:g} Å²"}
    summary["plots"].append(plots.plot_msd(curves, elements, f"MSD, {name}", out / f"msd_{name}.png").name)


def _stage_temperature(info: dict, summary: dict) -> float:
    """Target temperature of a stage, else its measured mean temperature (NaN if neither)."""
    if info.get("temperature_K") is not None:
        return float(info["temperature_K"])
    for entry in summary["thermo"]:
        if entry["stage_index"] == info["index"] and "temperature_K" in entry["averages"]:
            return float(entry["averages"]["temperature_K"]["mean"])
    return float("nan")


def _equilibration_temperature(info: dict, summary: dict) -> float:
    """Target temperature of a stage; for one without (NVE) the target of the last earlier stage
    that has one (the temperature it was equilibrated at), so that seeds of one protocol group
    together in ``kappa_vs_T``; else the measured mean."""
    for s in reversed(summary["stages"][: info["index"] + 1]):
        if s.get("temperature_K") is not None:
            return float(s["temperature_K"])
        if s.get("temperature_ramp_K") is not None:
            return float(s["temperature_ramp_K"][-1])
    return _stage_temperature(info, summary)


def _kappa(run: RunData, summary: dict, out: Path) -> None:
    """Green-Kubo per stage of heat_flux.csv, with V and T averaged over the same stage's thermo rows."""
    hf, th = run.heat_flux, run.thermo
    hf_stage, th_stage = hf["stage_index"].astype(int), th["stage_index"].astype(int)
    for idx in dict.fromkeys(hf_stage.tolist()):
        rows, trows = hf_stage == idx, th_stage == idx
        info = summary["stages"][idx] if 0 <= idx < len(summary["stages"]) else {"index": idx, "name": f"stage{idx}"}
        dt = np.diff(hf["time_ps"][rows])
        if rows.sum() < 20 or not np.allclose(dt, dt[0], rtol=1e-3) or not trows.any():
            summary["kappa"][info["name"]] = {"skipped": "fewer than 20 evenly spaced samples or no thermo rows"}
            continue
        volume, temperature = float(np.nanmean(th["volume_A3"][trows])), float(np.nanmean(th["temperature_K"][trows]))
        J = np.column_stack([hf["Jx"][rows], hf["Jy"][rows], hf["Jz"][rows]])
        t, kappa = greenkubo.green_kubo_kappa(J, float(dt[0]), volume, temperature)
        value = greenkubo.kappa_plateau(t, kappa)
        summary["kappa"][info["name"]] = {
            "kappa_W_mK": value, "t_max_ps": float(t[-1]), "plateau_window_ps": [t[-1] / 2, t[-1]],
            "volume_A3": volume, "temperature_K": temperature, "n_samples": int(rows.sum()),
            "target_temperature_K": _equilibration_temperature(info, summary)}
        path = plots.plot_kappa(t, kappa, value, f"Green-Kubo, {info['name']}", out / f"kappa_{info['name']}.png")
        summary["plots"].append(path.name)


def analyze_runs(run_dirs: list[str | Path], out_dir: str | Path) -> dict[str, Any]:
    """Analyse several runs (each into ``out_dir/runNN_<name>``) and aggregate across them:
    D(T) per element with an Arrhenius fit, kappa mean +- sem per target temperature."""
    if not run_dirs:
        raise UsageError("analyze_runs: no run directories given")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    runs = [analyze_run(d, out / f"run{i:02d}_{Path(d).resolve().name}") for i, d in enumerate(run_dirs)]
    series = _diffusion_series(runs)
    warnings = [f"{Path(r['run_dir']).name}: {w}" for r in runs for w in r["warnings"]]
    for w in _series_warnings(series):
        logger.warning("%s", w)
        warnings.append(w)
    summary: dict[str, Any] = {
        "runs": [{"run_dir": r["run_dir"], "analysis_dir": f"run{i:02d}_{Path(r['run_dir']).name}",
                  "status": r["status"], "n_warnings": len(r["warnings"])} for i, r in enumerate(runs)],
        "warnings": warnings, "diffusion_vs_T": series, "kappa_vs_T": _kappa_groups(runs), "plots": [],
    }
    if series:
        summary["plots"].append(plots.plot_arrhenius(series, out / "arrhenius.png").name)
    summary = _plain(summary)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    (out / "report.md").write_text(runs_report(summary))
    return summary


def _diffusion_series(runs: list[dict]) -> dict[str, dict]:
    """Per element: T, D (None where not diffusive), its error and the verdict of each run's last
    stage with an MSD; an Arrhenius fit over the diffusive runs, or ``arrhenius_skipped`` saying why not."""
    series: dict[str, dict] = {}
    for run in runs:
        stages = [s for s in run["diffusion"].values() if "elements" in s]
        if not stages:
            continue
        last = stages[-1]
        for el, d in last["elements"].items():
            s = series.setdefault(el, {"T_K": [], "D_cm2_s": [], "D_err_cm2_s": [], "diffusive": [], "run_dir": []})
            s["T_K"].append(last["temperature_K"])
            s["D_cm2_s"].append(d["D_cm2_s"] if d["diffusive"] else None)
            s["D_err_cm2_s"].append(d["D_err_cm2_s"] if d["diffusive"] else None)
            s["diffusive"].append(bool(d["diffusive"]))
            s["run_dir"].append(run["run_dir"])
    for s in series.values():
        s["arrhenius"], s["arrhenius_skipped"] = _arrhenius(s)
    return series


def _arrhenius(s: dict) -> tuple[dict | None, str | None]:
    use = [i for i, ok in enumerate(s["diffusive"]) if ok and s["T_K"][i] is not None and s["D_cm2_s"][i] > 0]
    temps = {s["T_K"][i] for i in use}
    if len(temps) < 2:
        return None, (f"diffusive in {len(use)} of {len(s['T_K'])} runs"
                      + (f" (all at {temps.pop():g} K)" if temps else "") + "; an Arrhenius fit needs two temperatures")
    fit = diffusion.fit_arrhenius(*(np.array([np.nan if s[key][i] is None else s[key][i] for i in use], float)
                                    for key in ("T_K", "D_cm2_s", "D_err_cm2_s")))
    return {"Ea_eV": fit.Ea_eV, "Ea_err_eV": fit.Ea_err_eV, "D0_cm2_s": fit.D0, "D0_err_cm2_s": fit.D0_err,
            "n_points": fit.n_points, "T_K": sorted(temps)}, None


def _series_warnings(series: dict[str, dict]) -> list[str]:
    """A fit that leaves some runs out says so (a fit over none is only a note in the report)."""
    out = []
    for el, s in series.items():
        left_out = [f"{t:g} K" for t, ok in zip(s["T_K"], s["diffusive"], strict=True) if not ok and t is not None]
        if s["arrhenius"] and left_out:
            out.append(f"{el}: Arrhenius fit over {s['arrhenius']['n_points']} of {len(s['T_K'])} runs; "
                       f"not diffusive at {', '.join(left_out)}")
    return out


def _kappa_groups(runs: list[dict]) -> list[dict]:
    groups: dict[float, list[float]] = {}
    for run in runs:
        stages = [k for k in run["kappa"].values() if "kappa_W_mK" in k]
        if stages:
            k = stages[-1]
            t = k["target_temperature_K"] if k.get("target_temperature_K") is not None else k["temperature_K"]
            groups.setdefault(round(t, 1), []).append(k["kappa_W_mK"])
    return [{"T_K": t, "n_runs": len(v), "values_W_mK": v,
             **dict(zip(("kappa_W_mK", "sem_W_mK"), greenkubo.mean_and_sem_over_runs(v)))}
            for t, v in sorted(groups.items())]


def _plain(x: Any) -> Any:
    """JSON-ready copy: numpy scalars -> Python, tuples -> lists, NaN/inf -> None."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, np.ndarray)):
        return [_plain(v) for v in x]
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    return x
