"""PNG plots for the report.

``matplotlib.figure.Figure`` is used directly instead of pyplot: it renders with the Agg canvas,
needs no display, and selects no global backend (library code must not change global state).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from sus2md.analysis.rundir import Table
from sus2md.units import KB_EV

LABELS = {
    "temperature_K": "temperature (K)", "potential_energy_eV": "potential energy (eV)",
    "kinetic_energy_eV": "kinetic energy (eV)", "total_energy_eV": "total energy (eV)",
    "volume_A3": "volume (Å³)", "density_g_cm3": "density (g/cm³)", "pressure_bar": "pressure (bar)",
    "atom_steps_per_s": "speed (atom-steps/s)",
}


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def plot_thermo(thermo: Table, quantity: str, path: Path) -> Path:
    """One quantity against time, one colour per stage."""
    fig = Figure(figsize=(6.4, 3.6))
    ax = fig.add_subplot()
    stage_index = thermo["stage_index"].astype(int)
    for idx in dict.fromkeys(stage_index.tolist()):
        rows = stage_index == idx
        ax.plot(thermo["time_ps"][rows], thermo[quantity][rows], lw=0.9, label=str(thermo["stage"][rows][0]),
                marker="o" if rows.sum() < 3 else None)
    ax.set_xlabel("time (ps)")
    ax.set_ylabel(LABELS.get(quantity, quantity))
    ax.legend(fontsize="small", loc="best")
    return _save(fig, path)


def plot_rdfs(r_A: np.ndarray, rdfs: dict[str, np.ndarray], title: str, path: Path) -> Path:
    fig = Figure(figsize=(6.4, 3.6))
    ax = fig.add_subplot()
    for pair, g in rdfs.items():
        ax.plot(r_A, g, lw=1.0, label=pair)
    ax.axhline(1.0, color="grey", lw=0.5, ls=":")
    ax.set_xlabel("r (Å)")
    ax.set_ylabel("g(r)")
    ax.set_title(title, fontsize="medium")
    ax.legend(fontsize="small")
    return _save(fig, path)


def msd_figure(curves: dict[str, tuple[np.ndarray, np.ndarray]], fits: dict[str, dict], title: str) -> Figure:
    """MSD per element; where it is diffusive, the fitted line 6 D t + b (fitted intercept b)
    dashed over exactly the lags it was fitted to, so it lies on the curve it came from."""
    fig = Figure(figsize=(6.4, 3.6))
    ax = fig.add_subplot()
    for el, (lag, msd) in curves.items():
        fit = fits.get(el) or {}
        diffusive = bool(fit.get("diffusive")) and fit.get("D_A2_ps") is not None and np.isfinite(fit["D_A2_ps"])
        line, = ax.plot(lag, msd, lw=1.0, label=el if diffusive or not fit else f"{el} (not diffusive)")
        if diffusive:
            t = np.asarray(fit["window_ps"], dtype=float)
            ax.plot(t, 6 * fit["D_A2_ps"] * t + fit["intercept_A2"], ls="--", color=line.get_color(), lw=1.5)
    ax.set_xlabel("lag (ps)")
    ax.set_ylabel("MSD (Å²)")
    ax.set_title(title + " (dashed: fit 6Dt + b over its window)", fontsize="medium")
    ax.legend(fontsize="small")
    return fig


def plot_msd(curves: dict[str, tuple[np.ndarray, np.ndarray]], fits: dict[str, dict], title: str,
             path: Path) -> Path:
    """:func:`msd_figure` saved as a PNG."""
    return _save(msd_figure(curves, fits, title), path)


def plot_kappa(t_ps: np.ndarray, kappa: np.ndarray, value: float, title: str, path: Path) -> Path:
    fig = Figure(figsize=(6.4, 3.6))
    ax = fig.add_subplot()
    ax.plot(t_ps, kappa, lw=1.0)
    ax.axhline(value, color="grey", ls="--", lw=0.8, label=f"plateau {value:.3g} W/(m K)")
    ax.set_xlabel("correlation time (ps)")
    ax.set_ylabel("κ(t) (W/(m K))")
    ax.set_title(title, fontsize="medium")
    ax.legend(fontsize="small")
    return _save(fig, path)


def plot_arrhenius(series: dict[str, dict], path: Path) -> Path:
    """D against 1000/T per element (diffusive runs only), with the fitted line over the
    temperatures it was fitted to."""
    fig = Figure(figsize=(6.4, 3.6))
    ax = fig.add_subplot()
    for el, s in series.items():
        t = np.array([np.nan if v is None else v for v in s["T_K"]], float)
        d = np.array([np.nan if v is None else v for v in s["D_cm2_s"]], float)
        err = np.array([np.nan if v is None else v for v in s["D_err_cm2_s"]], float)
        ok = (d > 0) & np.isfinite(t)
        if not ok.any():
            continue
        bars = ax.errorbar(1000 / t[ok], d[ok], yerr=np.nan_to_num(err[ok]), fmt="o", label=el, capsize=3)
        fit = s.get("arrhenius")
        if fit:
            tt = np.linspace(min(fit["T_K"]), max(fit["T_K"]), 50)
            ax.plot(1000 / tt, fit["D0_cm2_s"] * np.exp(-fit["Ea_eV"] / (KB_EV * tt)),
                    color=bars.lines[0].get_color(), lw=1.0)
    ax.set_yscale("log")
    ax.set_xlabel("1000 / T (1/K)")
    ax.set_ylabel("D (cm²/s)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")
    return _save(fig, path)
