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


def _thermo_section(summary: dict) -> list[str]:
    quantities = [q for q in LABELS if any(q in e["averages"] for e in summary["thermo"])]
    rows = [[e["stage"], str(e["n_samples"])] + [pm(e["averages"][q]["mean"], e["averages"][q]["sem"])
                                                 if q in e["averages"] else "–" for q in quantities]
            for e in summary["thermo"]]
    return (["## Thermodynamics", "",
             "Mean ± standard error per stage, after discarding the equilibration each series shows "
             "(Chodera's method); errors by block averaging (Flyvbjerg–Petersen).", ""]
            + _table(["stage", "samples"] + [LABELS[q] for q in quantities], rows) + [""])


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
            rows.append([stage, el, str(e["n_atoms"]), pm(e["D_A2_ps"], e["D_err_A2_ps"]),
                         pm(e["D_cm2_s"], e["D_err_cm2_s"]), f"{lo:.3g}–{hi:.3g}"])
    text = ["## Diffusion", "", "D = slope/6 of the MSD (all time origins, centre-of-mass drift removed), "
            "fitted over 20–80% of the max lag, which is 1/5 of the stage. Error: standard error of D "
            "over the 5 independent time segments of the stage, each fitted over the same lags.", ""]
    return text + (_table(["stage", "element", "atoms", "D (Å²/ps)", "D (cm²/s)", "fit window (ps)"], rows)
                   if rows else []) + [""] + notes + ([""] if notes else [])


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
             f"{len(summary['stages'])} stages: {stages}", ""]
    lines += _thermo_section(summary)
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
    if summary["diffusion_vs_T"]:
        lines += ["## Diffusion against temperature", "", "Last stage with a D of each run; "
                  "Arrhenius fit D = D0 exp(-Ea/kT), weighted by the D errors.", ""]
        for el, s in summary["diffusion_vs_T"].items():
            rows = [[f"{t:.1f}" if t is not None else "–", pm(d, e)]
                    for t, d, e in zip(s["T_K"], s["D_cm2_s"], s["D_err_cm2_s"])]
            lines += [f"### {el}", ""] + _table(["T (K)", "D (cm²/s)"], rows) + [""]
            if s["arrhenius"]:
                a = s["arrhenius"]
                lines += [f"Ea = {pm(a['Ea_eV'], a['Ea_err_eV'])} eV, D0 = {a['D0_cm2_s']:.3g} cm²/s "
                          f"({a['n_points']} runs)", ""]
    if summary["kappa_vs_T"]:
        rows = [[f"{g['T_K']:.1f}", str(g["n_runs"]), pm(g["kappa_W_mK"], g["sem_W_mK"])]
                for g in summary["kappa_vs_T"]]
        lines += ["## Thermal conductivity", "", "Mean ± standard error over runs (seeds).", ""]
        lines += _table(["T (K)", "runs", "κ (W/(m K))"], rows) + [""]
    lines += [f"![{p}]({p})" for p in summary["plots"]]
    return "\n".join(lines) + "\n"
