"""``sus2md analyze``: one run directory (or several) -> plots, summary.json and report.md.

Per run: thermo averages per stage (equilibration discarded, error bars by blocking), lattice
parameters per stage, partial RDFs and their first peaks per dynamical stage, MSD and D per
element per dynamical stage (>= ``MIN_MSD_FRAMES`` frames), and Green-Kubo kappa per stage of
heat_flux.csv.  Across runs: D against T with an Arrhenius fit per element (each run's last
stage with a D), and kappa mean +- standard error over runs at the same target temperature.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from sus2md.analysis import diffusion, greenkubo, plots, structure
from sus2md.analysis.markdown import run_report, runs_report
from sus2md.analysis.rundir import RunData, load_run
from sus2md.analysis.thermo import QUANTITIES, mean_and_sem, stage_averages
from sus2md.errors import UsageError

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
    summary: dict[str, Any] = {
        "run_dir": str(run.run_dir.resolve()), "n_atoms": traj.n_atoms, "n_frames": traj.n_frames,
        "composition": {el: symbols.count(el) for el in dict.fromkeys(symbols)},
        "stages": _stage_info(run), "thermo": stage_averages(run.thermo),
        "lattice": {}, "rdf": {}, "diffusion": {}, "kappa": {}, "plots": [],
    }
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


def _stage_info(run: RunData) -> list[dict]:
    out = []
    for i, s in enumerate(run.protocol.stages):
        info = {"index": i, "name": s.name, "type": s.type, "steps": getattr(s, "steps", None),
                "timestep_fs": getattr(s, "timestep_fs", None), "temperature_K": getattr(s, "temperature_K", None),
                "temperature_ramp_K": getattr(s, "temperature_ramp_K", None),
                "pressure_bar": getattr(s, "pressure_bar", None)}
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
    summary["diffusion"][name] = {
        "n_frames": sub.n_frames, "temperature_K": _stage_temperature(info, summary), "elements": elements,
        "method": "MSD fit over 20-80% of max lag (1/5 of the stage); error = SEM over 5 segments"}
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
    summary: dict[str, Any] = {
        "runs": [{"run_dir": r["run_dir"], "analysis_dir": f"run{i:02d}_{Path(r['run_dir']).name}"}
                 for i, r in enumerate(runs)],
        "diffusion_vs_T": series, "kappa_vs_T": _kappa_groups(runs), "plots": [],
    }
    if series:
        summary["plots"].append(plots.plot_arrhenius(series, out / "arrhenius.png").name)
    summary = _plain(summary)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    (out / "report.md").write_text(runs_report(summary))
    return summary


def _diffusion_series(runs: list[dict]) -> dict[str, dict]:
    series: dict[str, dict] = {}
    for run in runs:
        stages = [s for s in run["diffusion"].values() if "elements" in s]
        if not stages:
            continue
        last = stages[-1]
        for el, d in last["elements"].items():
            s = series.setdefault(el, {"T_K": [], "D_cm2_s": [], "D_err_cm2_s": []})
            s["T_K"].append(last["temperature_K"])
            s["D_cm2_s"].append(d["D_cm2_s"])
            s["D_err_cm2_s"].append(np.nan if d["D_err_cm2_s"] is None else d["D_err_cm2_s"])
    for s in series.values():
        s["arrhenius"] = None
        positive = {t for t, d in zip(s["T_K"], s["D_cm2_s"]) if d is not None and d > 0}
        if len(positive) >= 2:
            fit = diffusion.fit_arrhenius(s["T_K"], np.array(s["D_cm2_s"], float), np.array(s["D_err_cm2_s"], float))
            s["arrhenius"] = {"Ea_eV": fit.Ea_eV, "Ea_err_eV": fit.Ea_err_eV, "D0_cm2_s": fit.D0,
                              "D0_err_cm2_s": fit.D0_err, "n_points": fit.n_points}
    return series


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
