"""Physics of our EMT-alloy model against its exact reference, ASE's EMT, at 1200 K and 1 bar.

EMT NPT runs in a second process alongside the others (ASE's EMT rebuilds its neighbour list
whenever the cell changes, i.e. every Berendsen step: ~0.1-0.3 s per step for 256 atoms).

System: the 256-atom random Ni-Cu-Pd-Au fcc alloy of examples/data (4x4x4 conventional cells,
box ~15 Å, so g(r) reaches 7 Å).  Three trajectories, same start, 1200 K, same timestep:

* SUS2 (ours): a protocol YAML written by this script, run with ``run_protocol`` (OpenMM CPU,
  float32 TorchForce): minimize, NPT (Langevin 1/ps + Monte Carlo isotropic barostat, 1 bar)
  equilibration, NPT production;
* EMT NPT: ASE ``NPTBerendsen`` (Berendsen thermostat and isotropic barostat, taut 0.1 ps,
  taup 1 ps, compressibility 1/140 GPa): equilibration, production.  Berendsen gives the right
  mean volume (not the right fluctuations) -> the EMT density;
* EMT NVT: ASE ``Langevin`` (friction 1/ps, ``--ase-friction``) at the *fixed* mean volume
  of the SUS2 NPT production: the structure at equal density, so RDF differences are
  the model's, not the density's.

All three RDFs use one function (``sus2md.analysis.structure.compute_rdf_A`` over all atom
pairs, 0.05 Å bins, minimum image): first peak position/height and the RMSE of g(r) over
1.5-6 Å against each EMT reference.  Density from the mean volume of each NPT production.

Usage::

    python benchmarks/physics_emt_alloy.py [--model models/emt_alloy.mtp] [--ps-equil 1]
        [--ps-prod 4] [--timestep-fs 2] [--temperature 1200] [--smoke]

Writes runs/physics_emt_alloy/ and benchmarks/results/physics_emt_alloy.json; prints the table.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from physics_cu2se import write_result  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
STRUCTURE = ROOT / "examples" / "data" / "alloy_fcc_256.extxyz"
SPECIES = ["Al", "Ni", "Cu", "Pd", "Ag", "Pt", "Au"]
RMSE_RANGE_A = (1.5, 6.0)


def write_protocol(args, out: Path) -> Path:
    n_eq = int(round(args.ps_equil * 1000 / args.timestep_fs))
    n_pr = int(round(args.ps_prod * 1000 / args.timestep_fs))
    common = {"timestep_fs": args.timestep_fs, "temperature_K": args.temperature, "pressure_bar": 1.0,
              "barostat": "isotropic", "barostat_interval_steps": 25}
    data = {
        "structure": {"path": str(STRUCTURE)},
        "model": {"path": str(args.model.resolve()), "species": SPECIES},
        "platform": "CPU", "dtype": args.dtype, "threads": args.threads, "seed": args.seed,
        "output": {"checkpoint_interval_steps": 100000, "final_structure_formats": ["extxyz"]},
        "stages": [
            {"type": "minimize", "max_iterations": 200},
            {"name": "npt_equil", "type": "npt", "steps": n_eq, "report_interval_steps": args.interval,
             "trajectory_interval_steps": args.interval, **common},
            {"name": "npt_prod", "type": "npt", "steps": n_pr, "report_interval_steps": args.interval,
             "trajectory_interval_steps": args.interval, **common},
        ],
    }
    path = out / "sus2_npt.yaml"
    path.write_text("# written by benchmarks/physics_emt_alloy.py\n" + yaml.safe_dump(data, sort_keys=False))
    return path


def run_sus2(args, out: Path) -> tuple[dict, np.ndarray, np.ndarray, float]:
    """Run the protocol; return (analysis summary, production positions (T, N, 3) Å, cells (T, 3, 3) Å, wall s)."""
    from sus2md.analysis import analyze_run, load_run
    from sus2md.engine.run import run_protocol
    from sus2md.protocol import load_protocol

    run_dir = out / "sus2_npt"
    t0 = time.perf_counter()
    res = run_protocol(load_protocol(write_protocol(args, out)), run_dir,
                       resume=(run_dir / "checkpoint.json").exists(), progress=False, command_line=sys.argv)
    wall = time.perf_counter() - t0
    print(f"  SUS2 NPT (OpenMM): {res.status}, {res.global_step} steps in {wall:.0f} s", flush=True)
    summary = analyze_run(run_dir)
    run = load_run(run_dir)
    traj = run.load_trajectory()
    prod = np.flatnonzero(run.frames["stage"] == "npt_prod")
    sub = traj[prod]
    return summary, sub.xyz.astype(float) * 10.0, sub.unitcell_vectors.astype(float) * 10.0, wall


def run_ase(atoms0, args, ensemble: str, volume_A3: float | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """EMT MD with ASE; returns production positions (T, N, 3) Å, cells (T, 3, 3) Å, wall s."""
    from ase import units
    from ase.calculators.emt import EMT
    from ase.md.langevin import Langevin
    from ase.md.nptberendsen import NPTBerendsen
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary
    from ase.optimize import BFGS

    atoms = atoms0.copy()
    if volume_A3 is not None:
        atoms.set_cell(atoms.cell * (volume_A3 / atoms.get_volume()) ** (1 / 3), scale_atoms=True)
    atoms.calc = EMT()
    BFGS(atoms, logfile=None).run(fmax=0.05, steps=200)
    MaxwellBoltzmannDistribution(atoms, temperature_K=args.temperature, rng=np.random.default_rng(args.seed))
    Stationary(atoms)
    dt = args.timestep_fs * units.fs
    if ensemble == "npt":
        dyn = NPTBerendsen(atoms, dt, temperature_K=args.temperature, pressure_au=1.0 * units.bar,
                           taut=100 * units.fs, taup=1000 * units.fs, compressibility_au=1.0 / (140 * units.GPa))
    else:
        dyn = Langevin(atoms, dt, temperature_K=args.temperature, friction=args.ase_friction / (1000 * units.fs),
                       rng=np.random.default_rng(args.seed + 1))
    n_eq = int(round(args.ps_equil * 1000 / args.timestep_fs))
    n_pr = int(round(args.ps_prod * 1000 / args.timestep_fs))
    t0 = time.perf_counter()
    dyn.run(n_eq)
    pos, cells, temps = [], [], []
    for _ in range(n_pr // args.interval):
        dyn.run(args.interval)
        pos.append(atoms.get_positions().copy())
        cells.append(atoms.cell.array.copy())
        temps.append(atoms.get_temperature())
    wall = time.perf_counter() - t0
    print(f"  EMT {ensemble.upper()} (ASE): {n_eq + n_pr} steps in {wall:.0f} s, <T> = {np.mean(temps):.0f} K", flush=True)
    return np.array(pos), np.array(cells), wall


def total_rdf(topology, pos_A: np.ndarray, cells_A: np.ndarray, r_max_A: float) -> tuple[np.ndarray, np.ndarray]:
    import mdtraj as md

    from sus2md.analysis.structure import compute_rdf_A

    traj = md.Trajectory(pos_A / 10.0, topology)
    traj.unitcell_vectors = cells_A / 10.0
    pairs = topology.select_pairs("all", "all")
    return compute_rdf_A(traj, pairs, r_max_A)


def compare(r: np.ndarray, g: np.ndarray, g_ref: np.ndarray) -> float:
    sel = (r >= RMSE_RANGE_A[0]) & (r <= RMSE_RANGE_A[1])
    return float(np.sqrt(np.mean((g[sel] - g_ref[sel]) ** 2)))


def density(atoms, cells: np.ndarray) -> tuple[float, float]:
    vols = np.abs(np.linalg.det(cells))
    mass = atoms.get_masses().sum()
    from ase.units import _amu  # kg

    rho = mass * _amu * 1e3 / (vols * 1e-24)  # g/cm^3
    half = len(rho) // 2  # error: difference of the two halves' means / 2 (a crude but honest bar)
    return float(rho.mean()), float(abs(rho[:half].mean() - rho[half:].mean()) / 2)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "emt_alloy.mtp")
    ap.add_argument("--temperature", type=float, default=1200.0)
    ap.add_argument("--ps-equil", type=float, default=1.0)
    ap.add_argument("--ps-prod", type=float, default=4.0)
    ap.add_argument("--timestep-fs", type=float, default=2.0)
    ap.add_argument("--interval", type=int, default=20, help="steps between frames")
    ap.add_argument("--ase-friction", type=float, default=1.0, help="Langevin friction of the EMT NVT run (1/ps)")
    ap.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "physics_emt_alloy")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--smoke", action="store_true", help="0.1 + 0.2 ps, to check the pipeline")
    args = ap.parse_args(argv)
    if args.smoke:
        args.ps_equil, args.ps_prod, args.interval = 0.1, 0.2, 5
        args.out = args.out.with_name(args.out.name + "_smoke")
    json_path = args.json or (args.out / "physics_emt_alloy_smoke.json" if args.smoke
                              else ROOT / "benchmarks" / "results" / "physics_emt_alloy.json")
    if not args.model.exists():
        print(f"{args.model} not found: train it first (sus2md train examples/train_emt.yaml)", file=sys.stderr)
        return 2
    import ase.io

    if args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)
    atoms0 = ase.io.read(STRUCTURE)
    load0 = os.getloadavg()
    t0 = time.perf_counter()

    # the EMT NPT run needs nothing from the others: a second process runs it meanwhile
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1) as pool:
        npt_job = pool.submit(run_ase, atoms0, args, "npt")
        summary, pos_s, cells_s, wall_s = run_sus2(args, args.out)
        vol_sus2 = float(np.abs(np.linalg.det(cells_s)).mean())
        pos_v, cells_v, wall_v = run_ase(atoms0, args, "nvt", volume_A3=vol_sus2)
        pos_n, cells_n, wall_n = npt_job.result()

    from sus2md.analysis import load_run
    from sus2md.analysis.structure import first_peak

    top = load_run(args.out / "sus2_npt").load_trajectory().topology
    r_max = 0.5 * min(np.abs(np.linalg.det(c)) ** (1 / 3) for c in (cells_s[0], cells_n[0], cells_v[0])) - 0.05
    r, g_s = total_rdf(top, pos_s, cells_s, r_max)
    _, g_n = total_rdf(top, pos_n, cells_n, r_max)
    _, g_v = total_rdf(top, pos_v, cells_v, r_max)
    rows = {}
    for name, g, cells in (("SUS2 NPT (OpenMM)", g_s, cells_s), ("EMT NPT-Berendsen (ASE)", g_n, cells_n),
                           ("EMT NVT-Langevin at SUS2 volume (ASE)", g_v, cells_v)):
        pk_r, pk_g = first_peak(r, g)
        rho, rho_err = density(atoms0, cells)
        rows[name] = {"first_peak_r_A": pk_r, "first_peak_g": pk_g, "density_g_cm3": rho, "density_err_g_cm3": rho_err,
                      "rmse_vs_emt_npt": compare(r, g, g_n), "rmse_vs_emt_nvt": compare(r, g, g_v),
                      "n_frames": len(cells)}
    total = time.perf_counter() - t0

    lines = [f"T = {args.temperature:.0f} K, 1 bar, {len(atoms0)} atoms ({atoms0.get_chemical_formula()}), "
             f"{args.ps_equil} ps equil + {args.ps_prod} ps production, dt {args.timestep_fs} fs",
             "| run | first peak r (Å) | g(peak) | RMSE g(r) vs EMT NPT | RMSE vs EMT NVT | density (g/cm³) |",
             "|---|---|---|---|---|---|"]
    for name, x in rows.items():
        dens = f"{x['density_g_cm3']:.4f} ± {x['density_err_g_cm3']:.4f}" if "NVT" not in name else f"{x['density_g_cm3']:.4f} (fixed)"
        lines.append(f"| {name} | {x['first_peak_r_A']:.3f} | {x['first_peak_g']:.3f} | {x['rmse_vs_emt_npt']:.4f} | "
                     f"{x['rmse_vs_emt_nvt']:.4f} | {dens} |")
    d_s, d_n = rows["SUS2 NPT (OpenMM)"]["density_g_cm3"], rows["EMT NPT-Berendsen (ASE)"]["density_g_cm3"]
    lines.append(f"density SUS2 / EMT - 1 = {100 * (d_s / d_n - 1):+.2f} %  (RMSE over {RMSE_RANGE_A[0]}-{RMSE_RANGE_A[1]} Å)")
    text = "\n".join(lines)
    print()
    print(text)
    print(f"\nwall: {total:.0f} s (SUS2 {wall_s:.0f} s, EMT NPT {wall_n:.0f} s, EMT NVT {wall_v:.0f} s); "
          f"load average at start {load0[0]:.1f} on {os.cpu_count()} cores")
    result = {
        "benchmark": "physics_emt_alloy", "smoke": args.smoke, "model": str(args.model.resolve()),
        "structure": str(STRUCTURE), "n_atoms": len(atoms0), "temperature_K": args.temperature,
        "lengths_ps": {"equil": args.ps_equil, "prod": args.ps_prod}, "timestep_fs": args.timestep_fs,
        "sus2": "OpenMM CPU TorchForce " + args.dtype + ", Langevin 1/ps + MC isotropic barostat every 25 steps",
        "emt_npt": "ASE NPTBerendsen taut 0.1 ps, taup 1 ps, compressibility 1/140 GPa",
        "emt_nvt": f"ASE Langevin friction {args.ase_friction}/ps at the SUS2 NPT mean volume {vol_sus2:.2f} Å^3",
        "rdf": f"total g(r), all pairs, 0.05 Å bins, r_max {r_max:.2f} Å, RMSE over {RMSE_RANGE_A} Å",
        "rows": rows, "r_A": r.tolist(), "g": {"sus2_npt": g_s.tolist(), "emt_npt": g_n.tolist(), "emt_nvt": g_v.tolist()},
        "sus2_thermo": summary["thermo"], "wall_s": {"sus2": wall_s, "emt_npt": wall_n, "emt_nvt": wall_v, "total": total},
    }
    write_result(json_path, result, load0, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
