"""Physics of the authors' Cu2Se model (cu2se.mtp): superionic Cu diffusion, Cu-Se RDF, lattice constant.

Three runs, each a protocol YAML written by this script and run with ``run_protocol``:

* ``npt300``: minimize, NPT 300 K / 1 bar (equilibrate, then production) -> lattice constant a
  at 300 K (mean box edge of the production stage / cells per edge), RDF, MSD;
* ``nvt`` (a temperature sweep, replicas 700 K and 900 K): minimize, NVT equilibration
  (Langevin 1/ps), NVT production (Nose-Hoover chain, 1/ps: dynamics unperturbed by random
  forces) at the density of the authors' cell (a = 5.84 Å) -> D_Cu, D_Se (MSD of unwrapped coordinates, error from 5 time
  segments), Cu-Se first RDF peak.

``analyze_runs`` aggregates the three runs (D(T) and an Arrhenius fit per element).  beta-Cu2Se is
superionic: Cu diffuses like a liquid (D ~ 1e-5 cm^2/s at 700-900 K) while the Se fcc sublattice
stays put (D_Se ~ 0 within error).

Cells (``--cell``):

* ``reduced`` (default): 96 atoms, 2x2x2 conventional antifluorite cells (Se fcc, Cu in the 8
  tetrahedral sites), a = 5.84 Å, written as the 12-atom cell with ``supercell: [2, 2, 2]``.  The
  box (11.7 Å) is thinner than 2 r_c (13 Å); the model sees every periodic image, so that is fine,
  but RDFs stop at half the box (5.84 Å).
* ``authors``: the authors' 1500-atom cell (../shared/reference/cu2se_1500.lammps-data, 5x5x5
  cells).  ~1-3e3 atom-steps/s on a CPU core, so the default step counts take hours.

Usage::

    python benchmarks/physics_cu2se.py [--cell reduced|authors] [--ps-equil 2] [--ps-prod 10]
        [--ps-npt 8] [--timestep-fs 2] [--dtype float32] [--threads 1] [--fresh] [--smoke]

Writes runs/physics_cu2se/<cell>/ (run directories + analysis) and
benchmarks/results/physics_cu2se_<cell>.json, and prints the table.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import yaml
from ase import Atoms

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SUS2MD_SHARED", ROOT.parent / "shared"))
MODEL = SHARED / "reference" / "cu2se.mtp"
AUTHORS_CELL = SHARED / "reference" / "cu2se_1500.lammps-data"
A_AUTHORS = 5.84  # Å: the authors' cell is 29.1997 Å = 5 x 5.83995 Å
A2PS_TO_CM2S = 1e-4


def antifluorite_cell(a: float = A_AUTHORS) -> Atoms:
    """Conventional antifluorite Cu2Se cell (12 atoms): Se on fcc sites, Cu on the 8 tetrahedral sites."""
    se = [(0, 0, 0), (0, 0.5, 0.5), (0.5, 0, 0.5), (0.5, 0.5, 0)]
    cu = [(x, y, z) for x in (0.25, 0.75) for y in (0.25, 0.75) for z in (0.25, 0.75)]
    return Atoms(["Cu"] * 8 + ["Se"] * 4, scaled_positions=cu + se, cell=[a, a, a], pbc=True)


def structure_spec(cell: str, out: Path) -> tuple[dict, int]:
    """The protocol's ``structure`` section and the number of conventional cells per box edge."""
    if cell == "authors":
        return {"path": str(AUTHORS_CELL), "format": "lammps-data", "species": ["Cu", "Se"]}, 5
    path = out / "cu2se_conventional.extxyz"
    antifluorite_cell().write(path)
    return {"path": path.name, "supercell": [2, 2, 2]}, 2


def dyn(name: str, kind: str, ps: float, args, **extra) -> dict:
    steps = max(1, int(round(ps * 1000 / args.timestep_fs)))
    interval = max(1, steps // args.frames_per_stage)
    steps = max(interval, steps // interval * interval)  # whole intervals: evenly spaced frames for the MSD
    return {"name": name, "type": kind, "steps": steps, "timestep_fs": args.timestep_fs,
            "report_interval_steps": interval, "trajectory_interval_steps": interval, **extra}


def write_protocols(args, out: Path) -> tuple[Path, Path, int]:
    structure, n_cells = structure_spec(args.cell, out)
    common = {"structure": structure, "model": {"path": str(MODEL), "species": ["Cu", "Se"]},
              "platform": "CPU", "dtype": args.dtype, "threads": args.threads, "seed": args.seed,
              "output": {"checkpoint_interval_steps": 2000, "final_structure_formats": ["extxyz"]}}
    npt = {**common, "stages": [
        {"type": "minimize", "max_iterations": 200},
        dyn("npt_equil", "npt", args.ps_npt / 3, args, temperature_K=300.0, pressure_bar=1.0,
            barostat="isotropic", barostat_interval_steps=25),
        dyn("npt_prod", "npt", args.ps_npt * 2 / 3, args, temperature_K=300.0, pressure_bar=1.0,
            barostat="isotropic", barostat_interval_steps=25),
    ]}
    nvt = {**common, "sweep": {"parameter": "temperature_K", "values": [float(t) for t in args.temperatures]},
           "stages": [
        {"type": "minimize", "max_iterations": 200},
        dyn("nvt_equil", "nvt", args.ps_equil, args, temperature_K=700.0),
        dyn("nvt_prod", "nvt", args.ps_prod, args, temperature_K=700.0, thermostat="nose-hoover",
            collision_frequency_per_ps=1.0),
    ]}
    p_npt, p_nvt = out / "npt300.yaml", out / "nvt.yaml"
    header = "# written by benchmarks/physics_cu2se.py; paths relative to this file\n"
    p_npt.write_text(header + yaml.safe_dump(npt, sort_keys=False))
    p_nvt.write_text(header + yaml.safe_dump(nvt, sort_keys=False))
    return p_npt, p_nvt, n_cells


def run(protocol_path: Path, run_dir: Path, replica: int | None) -> float:
    from sus2md.engine.run import run_protocol
    from sus2md.protocol import load_protocol

    resume = (run_dir / "checkpoint.json").exists()
    t0 = time.perf_counter()
    res = run_protocol(load_protocol(protocol_path), run_dir, resume=resume, replica=replica, progress=False,
                       command_line=sys.argv)
    wall = time.perf_counter() - t0
    print(f"  {run_dir.name}: {res.status}, {res.global_step} steps, {res.frames} frames, {wall:.0f} s", flush=True)
    return wall


def first_peak(rdf: dict) -> dict:
    for key in ("Cu-Se", "Se-Cu"):
        if key in rdf:
            return rdf[key]
    return {"r_A": None, "g": None}


def collect(summary: dict, out_analysis: Path, temps: list[float], n_cells: int) -> list[dict]:
    rows = []
    for i, entry in enumerate(summary["runs"]):
        s = json.loads((out_analysis / entry["analysis_dir"] / "summary.json").read_text())
        stage = list(s["diffusion"])[-1]
        d = s["diffusion"][stage]
        el = d.get("elements", {})
        thermo = next(t for t in s["thermo"] if t["stage"] == stage)["averages"]
        lat = s["lattice"][stage]
        target = next(st["temperature_K"] for st in s["stages"] if st["name"] == stage)
        row = {"T_target_K": target, "stage": stage, "run_dir": s["run_dir"],
               "T_mean_K": thermo["temperature_K"]["mean"], "n_frames": d.get("n_frames"),
               "rdf_CuSe_first_peak": first_peak(s["rdf"].get(stage, {})),
               "a_A": lat["a_A"]["mean"] / n_cells, "a_sem_A": (lat["a_A"]["sem"] or 0.0) / n_cells}
        row["epot_drift_meV_atom"] = epot_drift(Path(s["run_dir"]), stage, s["n_atoms"])
        for e in ("Cu", "Se"):
            x = el.get(e, {})
            row[f"D_{e}_A2_ps"], row[f"D_{e}_err_A2_ps"] = x.get("D_A2_ps"), x.get("D_err_A2_ps")
        rows.append(row)
    return rows


def epot_drift(run_dir: Path, stage: str, n_atoms: int) -> float:
    """Mean potential energy of the stage's last quarter minus its first quarter (meV/atom):
    far from 0 means the structure is still changing (not equilibrated)."""
    from sus2md.analysis.thermo import load_thermo

    th = load_thermo(run_dir / "thermo.csv")
    e = th["potential_energy_eV"][th["stage"] == stage]
    q = max(1, len(e) // 4)
    return float((e[-q:].mean() - e[:q].mean()) / n_atoms * 1e3)


def fmt(x, spec=".4f") -> str:
    return "n/a" if x is None else format(x, spec)


def table(rows: list[dict], a300: dict) -> str:
    lines = ["| T (K) | <T> (K) | D_Cu (Å²/ps) | D_Cu (cm²/s) | D_Se (Å²/ps) | D_Se (cm²/s) | Cu–Se peak r (Å) | g(r) "
             "| E_pot drift (meV/atom) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        cells = [fmt(r["T_target_K"], ".0f"), fmt(r["T_mean_K"], ".0f")]
        for e in ("Cu", "Se"):
            d, err = r[f"D_{e}_A2_ps"], r[f"D_{e}_err_A2_ps"]
            cells.append(f"{fmt(d)} ± {fmt(err)}")
            cells.append(f"{fmt(d and d * A2PS_TO_CM2S, '.2e')} ± {fmt(err and err * A2PS_TO_CM2S, '.1e')}")
        pk = r["rdf_CuSe_first_peak"]
        cells += [fmt(pk.get("r_A"), ".3f"), fmt(pk.get("g"), ".2f"), fmt(r["epot_drift_meV_atom"], "+.1f")]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"Lattice constant at 300 K, 1 bar (NPT production): a = {fmt(a300['a_A'])} ± {fmt(a300['a_sem_A'])} Å"
                 f" (start {A_AUTHORS} Å)")
    return "\n".join(lines)


def prepare_output(args: argparse.Namespace, name: str) -> tuple[Path, Path]:
    """Run folder ``runs/<name>/<cell>[_smoke]`` (emptied with ``--fresh``) and the results JSON
    path (smoke numbers stay in the run folder: they are not results)."""
    tag = args.cell + ("_smoke" if args.smoke else "")
    out = (args.out or ROOT / "runs" / name / tag).resolve()
    results_dir = out if args.smoke else ROOT / "benchmarks" / "results"
    json_path = args.json or results_dir / f"{name}_{tag}.json"
    if args.fresh and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    return out, json_path


def write_result(json_path: Path, result: dict, load0: tuple, text: str) -> None:
    """Add the run's provenance (load average at start, cores, machine, command, Markdown table)
    to ``result`` and write it as JSON."""
    result.update({"loadavg_start": load0, "cpu_count": os.cpu_count(),
                   "machine": platform.processor() or platform.machine(),
                   "command": " ".join([Path(sys.executable).name, *sys.argv]), "table_markdown": text})
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(result, indent=1))
    print(f"wrote {json_path}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cell", choices=("reduced", "authors"), default="reduced")
    ap.add_argument("--temperatures", type=float, nargs="+", default=[700.0, 900.0], help="NVT temperatures (K)")
    ap.add_argument("--ps-npt", type=float, default=8.0, help="300 K NPT length (ps; first third is equilibration)")
    ap.add_argument("--ps-equil", type=float, default=2.0, help="NVT equilibration per temperature (ps)")
    ap.add_argument("--ps-prod", type=float, default=10.0, help="NVT production per temperature (ps)")
    ap.add_argument("--timestep-fs", type=float, default=2.0)
    ap.add_argument("--frames-per-stage", type=int, default=250)
    ap.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None, help="default runs/physics_cu2se/<cell>")
    ap.add_argument("--json", type=Path, default=None, help="default benchmarks/results/physics_cu2se_<cell>.json")
    ap.add_argument("--fresh", action="store_true", help="delete earlier runs in --out first (else they resume)")
    ap.add_argument("--smoke", action="store_true", help="tiny run (seconds) to check the pipeline")
    args = ap.parse_args(argv)
    if args.smoke:
        args.ps_npt, args.ps_equil, args.ps_prod, args.frames_per_stage = 0.3, 0.1, 0.2, 50
    if not MODEL.exists():
        print(f"{MODEL} not found (set SUS2MD_SHARED)", file=sys.stderr)
        return 2
    out, json_path = prepare_output(args, "physics_cu2se")
    p_npt, p_nvt, n_cells = write_protocols(args, out)
    print(f"protocols: {p_npt}, {p_nvt}", flush=True)
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    walls = {"npt300": run(p_npt, out / "npt300", None)}
    run_dirs = [out / "npt300"]
    for k, temp in enumerate(args.temperatures):
        d = out / f"nvt{temp:.0f}"
        walls[d.name] = run(p_nvt, d, k)
        run_dirs.append(d)
    from sus2md.analysis.report import analyze_runs

    t1 = time.perf_counter()
    summary = analyze_runs(run_dirs, out / "analysis")
    t_analysis = time.perf_counter() - t1
    rows = collect(summary, out / "analysis", args.temperatures, n_cells)
    a300 = {"a_A": rows[0]["a_A"], "a_sem_A": rows[0]["a_sem_A"]}
    text = table(rows, a300)
    arr = {el: s.get("arrhenius") for el, s in summary["diffusion_vs_T"].items()}
    print()
    print(text)
    for el, fit in arr.items():
        if fit:
            print(f"Arrhenius {el} ({fit['n_points']} points): Ea = {fit['Ea_eV']:.3f} ± {fit['Ea_err_eV']:.3f} eV")
    total = time.perf_counter() - t0
    print(f"\nwall: {total:.0f} s total ({', '.join(f'{k} {v:.0f} s' for k, v in walls.items())}, analysis "
          f"{t_analysis:.0f} s); load average at start {load0[0]:.1f} on {os.cpu_count()} cores")
    result = {
        "benchmark": "physics_cu2se", "cell": args.cell, "smoke": args.smoke, "model": str(MODEL),
        "n_atoms": 12 * n_cells**3, "dtype": args.dtype, "threads": args.threads, "timestep_fs": args.timestep_fs,
        "lengths_ps": {"npt300": args.ps_npt, "nvt_equil": args.ps_equil, "nvt_prod": args.ps_prod},
        "nvt_density": f"a = {A_AUTHORS} Å (the authors' cell)", "thermostat": "NPT/NVT equilibration Langevin 1/ps; NVT production Nose-Hoover 1/ps",
        "rows": rows, "a_300K_A": a300, "arrhenius": arr, "analysis_dir": str(out / "analysis"),
        "wall_s": {**walls, "analysis": t_analysis, "total": total},
    }
    write_result(json_path, result, load0, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
