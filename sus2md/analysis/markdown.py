"""report.md from a summary dict (the one :mod:`sus2md.analysis.report` writes as summary.json)."""
from __future__ import annotations

import math
from typing import Any

from sus2md.analysis.plots import LABELS


def pm(mean: float | None, sem: float | None) -> str:
    """'1.234 ± 0.012' (error to two significant digits), '(2.11 ± 0.14)e-05' for tiny or huge
    means, the plain mean when there is no error."""
    if mean is None:
        return "–"
    if sem is None or not math.isfinite(sem) or sem <= 1e-9 * abs(mean):  # constant up to round-off
        return f"{mean:.6g}"
    exponent = math.floor(math.log10(abs(mean))) if mean != 0 else 0
    if not -3 <= exponent < 6:
        return f"({pm(mean / 10**exponent, sem / 10**exponent)})e{exponent:+03d}"
    digits = max(0, 1 - math.floor(math.log10(sem)))
    return f"{mean:.{digits}f} ± {sem:.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def _warnings_section(warnings: list[str]) -> list[str]:
    if not warnings:
        return ["## Warnings", "", "None: the run completed, every thermo mean looks stationary, "
                "and NPT stages (if any) held their pressure.", ""]
    return ["## Warnings", ""] + [f"- ⚠ {w}" for w in warnings] + [""]


def _thermo_section(summary: dict) -> list[str]:
    rows = []
    for e in summary["thermo"]:
        for q in LABELS:
            if q not in e["averages"]:
                continue
            a = e["averages"][q]
            used = f"{a['n']} / {a.get('n_total', e['n_samples'])}"
            rows.append([e["stage"], LABELS[q], pm(a["mean"], a["sem"]), used, "; ".join(a.get("flags", []))])
    return (["## Thermodynamics", "",
             "Mean ± standard error per stage, after discarding the equilibration each series shows "
             "(Chodera's method); errors by block averaging (Flyvbjerg–Petersen). *Samples* are those "
             "used of the stage's total. A *flag* marks a mean that is not an equilibrium average: most "
             "of the stage discarded, or a significant drift (3σ, correlated samples counted once) "
             "larger than the error bar.", ""]
            + _table(["stage", "quantity", "mean ± SE", "samples used / total", "flags"], rows) + [""])


def _npt_section(summary: dict) -> list[str]:
    rows = []
    for stage, n in summary["npt"].items():
        p = pm(n.get("pressure_bar"), n.get("pressure_sem_bar")) if n.get("pressure_bar") is not None else "–"
        off = f"{n['pressure_off_sigmas']:+.1f}" if n.get("pressure_off_sigmas") is not None else "–"
        vr = n.get("volume_range_A3")
        acc = n.get("acceptance")
        moves = ("no move counts in thermo.csv" if acc is None else
                 ", ".join(f"{k} {a['accepted']}/{a['attempted']}" + (f" ({100 * a['acceptance']:.0f}%)"
                                                                       if a["acceptance"] is not None else "")
                           for k, a in acc.items()) or "–")
        rows.append([stage, str(n.get("barostat")), f"{n['target_pressure_bar']:g}", p, off,
                     f"{vr[0]:.6g}–{vr[1]:.6g}" if vr else "–", moves])
    return (["## NPT stages", "", "Mean pressure against the target (in standard errors), the volume range, "
             "and the barostat's accepted/attempted moves per kind at the end of the stage.", ""]
            + _table(["stage", "barostat", "target (bar)", "mean P (bar)", "off (SE)", "volume range (Å³)",
                      "accepted / attempted"], rows) + [""])


def _lattice_section(summary: dict) -> list[str]:
    keys = ["a_A", "b_A", "c_A", "alpha_deg", "beta_deg", "gamma_deg", "volume_A3"]
    rows = [[stage] + [pm(v[k]["mean"], v[k]["sem"]) for k in keys] + ["×".join(map(str, v["supercell"]))]
            for stage, v in summary["lattice"].items()]
    header = ["stage", "a (Å)", "b (Å)", "c (Å)", "α (°)", "β (°)", "γ (°)", "volume (Å³)", "supercell"]
    return ["## Simulation box", "", "Box lengths are of the whole supercell; divide by the supercell "
            "repetition for the lattice parameter of one cell.", ""] + _table(header, rows) + [""]


def _rdf_section(summary: dict) -> list[str]:
    rows = [[stage, pair, f"{p['r_A']:.3f}" if p["r_A"] is not None else "–",
             f"{p['g']:.2f}" if p["g"] is not None else "–"]
            for stage, peaks in summary["rdf"].items() for pair, p in peaks.items() if pair != "r_max_A"]
    return ["## Radial distribution functions", "", "First peak of each partial g(r) (minimum image).", ""] + \
        _table(["stage", "pair", "first peak r (Å)", "g(peak)"], rows) + [""]


def _diffusion_section(summary: dict) -> list[str]:
    rows, notes = [], []
    for stage, d in summary["diffusion"].items():
        if "skipped" in d:
            notes.append(f"- {stage}: skipped ({d['skipped']})")
            continue
        for el, e in d["elements"].items():
            lo, hi = e["window_ps"]
            beta = f"{e['log_slope']:.2f}" if e.get("log_slope") is not None else "–"
            end = f"{e['msd_end_A2']:.3g}" if e.get("msd_end_A2") is not None else "–"
            if e.get("diffusive"):
                d_a2, d_cm2 = pm(e["D_A2_ps"], e["D_err_A2_ps"]), pm(e["D_cm2_s"], e["D_err_cm2_s"])
            else:
                d_a2 = d_cm2 = "not diffusive"
                notes.append(f"- {stage}, {el}: not diffusive ({e.get('reason', '')})")
            rows.append([stage, el, str(e["n_atoms"]), d_a2, d_cm2, beta, end, f"{lo:.3g}–{hi:.3g}"])
    text = ["## Diffusion", "", "D = slope/6 of the MSD (all time origins, centre-of-mass drift removed), "
            "fitted as 6 D t + b over 20–80% of the max lag, which is 1/5 of the stage. Error: standard error "
            "of D over the 5 independent time segments of the stage, each fitted over the same lags. A D is "
            "given only where the MSD is diffusive over the window: log-log slope d ln MSD / d ln t in "
            "[0.8, 1.2] (past the vibrational plateau: on it the slope is ~0) and MSD at the window end "
            "≥ 1 Å² (beyond any vibration of a solid).", ""]
    header = ["stage", "element", "atoms", "D (Å²/ps)", "D (cm²/s)", "log-log slope", "MSD at window end (Å²)",
              "fit window (ps)"]
    return text + (_table(header, rows) if rows else []) + [""] + notes + ([""] if notes else [])


def _kappa_section(summary: dict) -> list[str]:
    rows = [[stage, f"{k['kappa_W_mK']:.4g}", f"{k['temperature_K']:.1f}", f"{k['volume_A3']:.1f}",
             f"{k['plateau_window_ps'][0]:.3g}–{k['plateau_window_ps'][1]:.3g}"]
            for stage, k in summary["kappa"].items() if "kappa_W_mK" in k]
    notes = [f"- {stage}: skipped ({k['skipped']})" for stage, k in summary["kappa"].items() if "skipped" in k]
    text = ["## Thermal conductivity (Green–Kubo)", "", "κ = mean of the running integral over the plateau "
            "window; one run has no error bar: average several seeds with `analyze_runs`.", ""]
    header = ["stage", "κ (W/(m K))", "T (K)", "V (Å³)", "plateau window (ps)"]
    return text + (_table(header, rows) + [""] if rows else []) + notes + ([""] if notes else [])


def run_report(summary: dict[str, Any]) -> str:
    comp = ", ".join(f"{el} {n}" for el, n in summary["composition"].items())
    stages = ", ".join(f"{s['name']} ({s['type']})" for s in summary["stages"])
    lines = [f"# sus2md analysis: {summary['run_dir']}", "",
             f"{summary['n_atoms']} atoms ({comp}), {summary['n_frames']} trajectory frames, "
             f"{len(summary['stages'])} stages: {stages}; run status: {summary.get('status') or 'not recorded'}", ""]
    lines += _warnings_section(summary.get("warnings", []))
    lines += _thermo_section(summary)
    if summary.get("npt"):
        lines += _npt_section(summary)
    if summary["lattice"]:
        lines += _lattice_section(summary)
    if summary["rdf"]:
        lines += _rdf_section(summary)
    if summary["diffusion"]:
        lines += _diffusion_section(summary)
    if summary["kappa"]:
        lines += _kappa_section(summary)
    lines += ["## Plots", ""] + [f"![{p}]({p})" for p in summary["plots"]]
    return "\n".join(lines) + "\n"


def runs_report(summary: dict[str, Any]) -> str:
    lines = ["# sus2md analysis of several runs", ""]
    lines += [f"- [{r['run_dir']}]({r['analysis_dir']}/report.md)" for r in summary["runs"]] + [""]
    lines += _warnings_section(summary.get("warnings", []))
    if summary["diffusion_vs_T"]:
        lines += ["## Diffusion against temperature", "", "Last stage with an MSD of each run; "
                  "Arrhenius fit D = D0 exp(-Ea/kT) over the runs where the element is diffusive, "
                  "weighted by the D errors.", ""]
        for el, s in summary["diffusion_vs_T"].items():
            rows = [[f"{t:.1f}" if t is not None else "–", pm(d, e) if ok else "not diffusive"]
                    for t, d, e, ok in zip(s["T_K"], s["D_cm2_s"], s["D_err_cm2_s"], s["diffusive"], strict=True)]
            lines += [f"### {el}", ""] + _table(["T (K)", "D (cm²/s)"], rows) + [""]
            if s["arrhenius"]:
                a = s["arrhenius"]
                lines += [f"Ea = {pm(a['Ea_eV'], a['Ea_err_eV'])} eV, D0 = {a['D0_cm2_s']:.3g} cm²/s "
                          f"({a['n_points']} runs)", ""]
            elif s.get("arrhenius_skipped"):
                lines += [f"No Arrhenius fit: {s['arrhenius_skipped']}.", ""]
    if summary["kappa_vs_T"]:
        rows = [[f"{g['T_K']:.1f}", str(g["n_runs"]), pm(g["kappa_W_mK"], g["sem_W_mK"])]
                for g in summary["kappa_vs_T"]]
        lines += ["## Thermal conductivity", "", "Mean ± standard error over runs (seeds).", ""]
        lines += _table(["T (K)", "runs", "κ (W/(m K))"], rows) + [""]
    lines += [f"![{p}]({p})" for p in summary["plots"]]
    return "\n".join(lines) + "\n"
