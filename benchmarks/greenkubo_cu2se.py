"""Green-Kubo thermal conductivity of the authors' Cu2Se model (cu2se.mtp), on a reduced cell.

The authors' protocol (hu-yanxiao/data_for_sus2, MD_simulation/1_Cu2Se/GK: lmp.in, readme.md,
2_plot_hcacf.py), LAMMPS ``units metal``:

* T = 600 K (their readme runs ``T=600``), timestep 1 fs, velocities drawn per random seed;
* NPT 100 ps (Nose-Hoover, Tdamp 0.1 ps, iso 0 bar, Pdamp 1 ps), then NVE 500 ps, then NVE 2 ns
  with the heat current ``compute heat/flux`` printed every 10 steps (10 fs);
* several seeds; kappa(t) = running HCACF integral of each seed, averaged over correlation times
  20-100 ps (``--t1 20 --t2 100``), reported as the mean over seeds +- std/sqrt(n).

Here, on a reduced scale, one protocol YAML (written by this script) with a ``seed`` sweep:
minimize, NPT at T / 0 bar (Langevin 1/ps + isotropic MC barostat), NVE equilibration, NVE
production with ``heat_flux_interval_steps: 10``.  Each seed runs as ``sus2md run PROTOCOL
--replica K --out DIR`` (``--jobs`` of them at a time, 1 thread each), then ``sus2md analyze
DIR... --out ANALYSIS`` gives kappa per seed (running integral up to 10 % of the production,
plateau = mean over the second half of it) and the mean +- standard error across seeds.  The
script also checks heat_flux.csv (columns ``step,time_ps,stage_index,Jx,Jy,Jz``, one row every
10 steps of the production stage only, evenly spaced in time).

Cells (``--cell``): ``reduced`` 96 atoms (2x2x2 conventional antifluorite cells, a = 5.84 Å, the
structure builder of ``physics_cu2se.py``), ``3x3x3`` 324 atoms, ``authors`` the 1500-atom cell.

Usage::

    python benchmarks/greenkubo_cu2se.py [--cell reduced] [--temperature 600] [--seeds 1 2 3]
        [--ps-npt 5] [--ps-nve-equil 2] [--ps-nve-prod 20] [--timestep-fs 1] [--jobs 2] [--fresh] [--smoke]

Writes runs/greenkubo_cu2se/<cell>/ (protocol, run directories, analysis) and
benchmarks/results/greenkubo_cu2se_<cell>.json, and prints the result.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from physics_cu2se import A_AUTHORS, MODEL, ROOT, prepare_output, structure_spec, write_result  # noqa: E402

#: the authors' temperature (their GK readme), timestep (fs) and heat-flux sampling (steps)
T_AUTHORS, DT_AUTHORS_FS, NEVERY_AUTHORS = 600.0, 1.0, 10
#: literature kappa of Cu2Se near room temperature to 600 K, W/(m K) (measured total, lattice part lower)
LITERATURE = ("beta-Cu2Se: measured total kappa ~0.4-1 W/(m K) at 300-1000 K (Liu et al., Nat. Mater. 11, "
              "422 (2012): ~0.6-1); lattice part ~0.2-0.5 W/(m K)")
HEAT_FLUX_COLUMNS = ["step", "time_ps", "stage_index", "Jx", "Jy", "Jz"]


def cell_structure(cell: str, out: Path) -> tuple[dict, int]:
    """``structure`` section and conventional cells per edge (3x3x3 reuses the physics builder's cell)."""
    if cell == "3x3x3":
        spec, _ = structure_spec("reduced", out)
        return {**spec, "supercell": [3, 3, 3]}, 3
    return structure_spec(cell, out)


def write_protocol(args, out: Path) -> tuple[Path, int, dict]:
    structure, n_cells = cell_structure(args.cell, out)
    dt, every = args.timestep_fs, args.hf_every

    def steps(ps: float) -> int:  # whole multiples of the heat-flux interval
        return max(every, int(round(ps * 1000 / dt / every)) * every)

    report = max(every, steps(args.ps_nve_prod) // 400 // every * every)
    nve_prod_steps = steps(args.ps_nve_prod)
    proto = {
        "structure": structure, "model": {"path": str(MODEL), "species": ["Cu", "Se"]},
        "platform": "CPU", "dtype": args.dtype, "threads": args.threads, "seed": int(args.seeds[0]),
        "output": {"checkpoint_interval_steps": 5000, "final_structure_formats": ["extxyz"]},
        "sweep": {"parameter": "seed", "values": [float(s) for s in args.seeds]},
        "stages": [
            {"type": "minimize", "max_iterations": 200},
            {"name": "npt", "type": "npt", "steps": steps(args.ps_npt), "timestep_fs": dt,
             "temperature_K": args.temperature, "pressure_bar": 0.0, "barostat": "isotropic",
             "barostat_interval_steps": 25, "report_interval_steps": report, "trajectory_interval_steps": report * 5},
            {"name": "nve_equil", "type": "nve", "steps": steps(args.ps_nve_equil), "timestep_fs": dt,
             "report_interval_steps": report, "trajectory_interval_steps": report * 5},
            {"name": "nve_prod", "type": "nve", "steps": nve_prod_steps, "timestep_fs": dt,
             "heat_flux_interval_steps": every, "report_interval_steps": report,
             "trajectory_interval_steps": report * 5},
        ],
    }
    path = out / "greenkubo.yaml"
    path.write_text("# written by benchmarks/greenkubo_cu2se.py; paths relative to this file\n"
                    + yaml.safe_dump(proto, sort_keys=False))
    return path, n_cells, {"nve_prod_steps": nve_prod_steps, "nve_prod_stage_index": 3}


def sus2md(*cli_args: str, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "sus2md", *cli_args]
    fh = open(log, "a")
    fh.write("$ " + " ".join(cmd) + "\n")
    fh.flush()
    return subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


def run_replicas(proto: Path, dirs: list[Path], jobs: int) -> dict[str, float]:
    """``sus2md run PROTO --replica K --out DIR`` for every replica, ``jobs`` at a time; wall per replica."""
    pending = list(enumerate(dirs))
    running: dict[int, tuple[subprocess.Popen, float, Path]] = {}
    walls: dict[str, float] = {}
    while pending or running:
        while pending and len(running) < jobs:
            k, d = pending.pop(0)
            resume = ["--resume"] if (d / "checkpoint.json").exists() else []
            p = sus2md("run", str(proto), "--replica", str(k), "--out", str(d), "--no-progress", *resume,
                       log=d.parent / f"{d.name}.log")
            running[k] = (p, time.perf_counter(), d)
        time.sleep(2)
        for k, (p, t0, d) in list(running.items()):
            if p.poll() is not None:
                walls[d.name] = time.perf_counter() - t0
                print(f"  {d.name}: exit {p.returncode}, {walls[d.name]:.0f} s", flush=True)
                if p.returncode != 0:
                    raise SystemExit(f"{d.name} failed: see {d.parent / (d.name + '.log')}")
                del running[k]
    return walls


def check_heat_flux(run_dir: Path, info: dict, dt_fs: float, every: int) -> dict:
    """heat_flux.csv: documented header, production-stage rows only, one every ``every`` steps."""
    path = run_dir / "heat_flux.csv"
    header = path.read_text().splitlines()[0].split(",")
    data = np.genfromtxt(path, delimiter=",", names=True)
    steps, t, stage = data["step"], data["time_ps"], data["stage_index"].astype(int)
    ds, dtp = np.diff(steps), np.diff(t)
    expected_rows = info["nve_prod_steps"] // every  # step 0 of the stage carries no sample, its last step does
    res = {"header": header, "header_ok": header == HEAT_FLUX_COLUMNS, "rows": int(len(steps)),
           "expected_rows": expected_rows, "stages": sorted(set(stage.tolist())),
           "step_spacing": sorted(set(ds.astype(int).tolist())),
           "time_spacing_ps": [float(dtp.min()), float(dtp.max())],
           "first_step": int(steps[0]), "last_step": int(steps[-1])}
    res["ok"] = bool(res["header_ok"] and res["stages"] == [info["nve_prod_stage_index"]]
                     and res["step_spacing"] == [every]
                     and np.allclose(dtp, every * dt_fs / 1000, rtol=1e-6, atol=1e-9)
                     and abs(len(steps) - expected_rows) <= 1)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cell", choices=("reduced", "3x3x3", "authors"), default="reduced")
    ap.add_argument("--temperature", type=float, default=T_AUTHORS, help="K (the authors': 600)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--ps-npt", type=float, default=5.0, help="NPT equilibration (authors: 100 ps)")
    ap.add_argument("--ps-nve-equil", type=float, default=2.0, help="NVE equilibration (authors: 500 ps)")
    ap.add_argument("--ps-nve-prod", type=float, default=20.0, help="NVE production with J sampled (authors: 2000 ps)")
    ap.add_argument("--timestep-fs", type=float, default=DT_AUTHORS_FS)
    ap.add_argument("--hf-every", type=int, default=NEVERY_AUTHORS, help="heat-flux interval, steps")
    ap.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=2, help="replicas run at the same time")
    ap.add_argument("--out", type=Path, default=None, help="default runs/greenkubo_cu2se/<cell>")
    ap.add_argument("--json", type=Path, default=None, help="default benchmarks/results/greenkubo_cu2se_<cell>.json")
    ap.add_argument("--fresh", action="store_true", help="delete earlier runs in --out first (else they resume)")
    ap.add_argument("--smoke", action="store_true", help="tiny run (a minute) to check the pipeline")
    args = ap.parse_args(argv)
    if args.smoke:
        args.ps_npt, args.ps_nve_equil, args.ps_nve_prod = 0.1, 0.05, 0.3
    if not MODEL.exists():
        print(f"{MODEL} not found (set SUS2MD_SHARED)", file=sys.stderr)
        return 2
    out, json_path = prepare_output(args, "greenkubo_cu2se")
    proto, n_cells, info = write_protocol(args, out)
    dirs = [out / f"seed{s}" for s in args.seeds]
    print(f"protocol: {proto}; {len(dirs)} seeds, {args.jobs} at a time", flush=True)
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    walls = run_replicas(proto, dirs, args.jobs)
    t1 = time.perf_counter()
    analysis = out / "analysis"
    p = sus2md("analyze", *map(str, dirs), "--out", str(analysis), log=out / "analyze.log")
    if p.wait() != 0:
        raise SystemExit(f"analyze failed: see {out / 'analyze.log'}")
    t_analysis = time.perf_counter() - t1
    summary = json.loads((analysis / "summary.json").read_text())
    per_seed = []
    for seed, d, entry in zip(args.seeds, dirs, summary["runs"]):
        s = json.loads((analysis / entry["analysis_dir"] / "summary.json").read_text())
        k = s["kappa"]["nve_prod"]
        th = {t["stage"]: t["averages"] for t in s["thermo"]}
        per_seed.append({
            "seed": seed, "run_dir": str(d), "kappa_W_mK": k.get("kappa_W_mK"), "t_max_ps": k.get("t_max_ps"),
            "plateau_window_ps": k.get("plateau_window_ps"), "T_mean_K": k.get("temperature_K"),
            "volume_A3": k.get("volume_A3"), "a_A": (k.get("volume_A3") or 0) ** (1 / 3) / n_cells,
            "n_samples": k.get("n_samples"),
            "nve_prod_total_energy_drift_meV_atom": energy_drift(d, "nve_prod", 12 * n_cells**3),
            "nve_prod_T_K": th.get("nve_prod", {}).get("temperature_K", {}).get("mean"),
            "heat_flux_csv": check_heat_flux(d, info, args.timestep_fs, args.hf_every)})
    groups = summary["kappa_vs_T"]
    agg = groups[0] if len(groups) == 1 else None
    total = time.perf_counter() - t0
    window = per_seed[0]["plateau_window_ps"]
    lines = ["| seed | <T> NVE (K) | a (Å) | kappa (W/m/K) | samples | E_tot drift (meV/atom) | heat_flux.csv ok |",
             "|---|---|---|---|---|---|---|"]
    for r in per_seed:
        lines.append(f"| {r['seed']} | {r['T_mean_K']:.1f} | {r['a_A']:.3f} | {r['kappa_W_mK']:.3f} | {r['n_samples']} "
                     f"| {r['nve_prod_total_energy_drift_meV_atom']:+.2f} | {r['heat_flux_csv']['ok']} |")
    lines.append("")
    if agg is not None:
        lines.append(f"kappa({agg['T_K']:g} K) = {agg['kappa_W_mK']:.3f} ± {agg['sem_W_mK']:.3f} W/(m K) "
                     f"(mean ± standard error over {agg['n_runs']} seeds; running integral to {per_seed[0]['t_max_ps']:.2f} ps, "
                     f"plateau = mean over correlation times {window[0]:.2f}-{window[1]:.2f} ps)")
    else:
        lines.append(f"kappa_vs_T has {len(groups)} groups (expected 1): {groups}")
    text = "\n".join(lines)
    print()
    print(text)
    print(f"literature: {LITERATURE}")
    print(f"\nwall: {total:.0f} s total ({', '.join(f'{k} {v:.0f} s' for k, v in walls.items())}, analysis "
          f"{t_analysis:.0f} s); load average at start {load0[0]:.1f} on {os.cpu_count()} cores")
    result = {
        "benchmark": "greenkubo_cu2se", "cell": args.cell, "smoke": args.smoke, "model": str(MODEL),
        "n_atoms": 12 * n_cells**3, "start_lattice_constant_A": A_AUTHORS, "temperature_K": args.temperature,
        "pressure_bar": 0.0, "dtype": args.dtype, "threads_per_replica": args.threads, "jobs": args.jobs,
        "timestep_fs": args.timestep_fs, "heat_flux_interval_steps": args.hf_every,
        "lengths_ps": {"npt": args.ps_npt, "nve_equil": args.ps_nve_equil, "nve_prod": args.ps_nve_prod},
        "authors_protocol": {"temperature_K": T_AUTHORS, "timestep_fs": DT_AUTHORS_FS, "npt_ps": 100,
                             "nve_equil_ps": 500, "nve_prod_ps": 2000, "heat_flux_every_steps": NEVERY_AUTHORS,
                             "n_atoms": 1500, "plateau_window_ps": [20, 100],
                             "source": "hu-yanxiao/data_for_sus2 MD_simulation/1_Cu2Se/GK"},
        "thermostat": "NPT Langevin 1/ps + isotropic MC barostat (25 steps); NVE velocity Verlet",
        "seeds": args.seeds, "per_seed": per_seed, "kappa": agg,
        "integration": {"max_lag_ps": per_seed[0]["t_max_ps"], "plateau_window_ps": window,
                        "rule": "trapezoid running integral of <J(0).J(t)> to 10% of the production; "
                                "kappa = mean of kappa(t) over the second half of that range"},
        "literature": LITERATURE, "analysis_dir": str(analysis), "protocol": str(proto),
        "wall_s": {**walls, "analysis": t_analysis, "total": total},
    }
    write_result(json_path, result, load0, text)
    return 0


def energy_drift(run_dir: Path, stage: str, n_atoms: int) -> float:
    """Total energy of the stage's last quarter minus its first quarter (meV/atom): NVE conservation."""
    from sus2md.analysis.thermo import load_thermo

    th = load_thermo(run_dir / "thermo.csv")
    e = th["total_energy_eV"][th["stage"] == stage]
    q = max(1, len(e) // 4)
    return float((e[-q:].mean() - e[:q].mean()) / n_atoms * 1e3)


if __name__ == "__main__":
    sys.exit(main())
