"""OpenMM throughput and NVE drift of the SUS2 Cu2Se model (cu2se.mtp on the 1500-atom cell).

Measures, on the OpenMM CPU platform:

* MD throughput (atom-steps/s, velocity Verlet, 1 fs) for threads x dtype x backend
  (TorchForce, PythonForce);
* the model alone outside OpenMM: one energy+forces call of the scripted adapter (ms), also on
  replicated cells (1 = 1.5k atoms, 2 = 12k, 4 = 96k) for the per-atom cost;
* NVE energy drift at 300 K, dt 1 fs, float64, TorchForce: a linear fit of the total energy.

Usage::

    python benchmarks/bench_openmm.py [--threads 1,2] [--sizes 1,2] [--steps 20]
        [--drift-steps 300] [--json bench_openmm.json]

Timings on a shared machine are noisy; the JSON records the load average at the start.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import openmm  # isort: skip
from openmm import unit  # isort: skip

from sus2md.engine.force import bound_adapter, to_openmm_force
from sus2md.engine.integrators import make_integrator, make_platform
from sus2md.engine.system import build_system
from sus2md.export import compile_for_openmm
from sus2md.io.structures import read_structure
from sus2md.units import KJ_PER_MOL_TO_EV

SHARED = Path(__file__).resolve().parents[2] / "shared" / "reference"
SPECIES = ["Cu", "Se"]


def md_throughput(model, atoms, backend: str, threads: int, steps: int) -> float:
    """Atom-steps per second of velocity Verlet (1 fs) after 3 warm-up steps."""
    plat, props = make_platform("CPU", threads=threads)
    force = to_openmm_force(model, atoms, backend=backend)
    _, system, pos = build_system(atoms, force)
    ctx = openmm.Context(system, make_integrator("verlet", 1.0), plat, props)
    ctx.setPositions(pos)
    ctx.setVelocitiesToTemperature(300 * unit.kelvin, 1)
    integ = ctx.getIntegrator()
    integ.step(3)
    t0 = time.perf_counter()
    integ.step(steps)
    return len(atoms) * steps / (time.perf_counter() - t0)


def model_call_ms(model, atoms, threads: int, repeats: int) -> float:
    """Median time of one energy+forces call of the scripted adapter (no OpenMM), ms."""
    torch.set_num_threads(threads)
    module = bound_adapter(model, atoms)
    pos = torch.tensor(atoms.positions / 10)
    box = torch.tensor(atoms.cell.array / 10)
    for _ in range(2):
        module(pos, box)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        module(pos, box)
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


def nve_drift(model, atoms, steps: int, equil_steps: int, threads: int, every: int = 10) -> dict:
    """Total-energy drift of NVE (float64, 1 fs, 300 K start): a linear fit over ``steps``
    after ``equil_steps`` (the lattice start converts kinetic into potential energy first)."""
    plat, props = make_platform("CPU", threads=threads)
    force = to_openmm_force(model, atoms, dtype="float64", species=SPECIES)
    _, system, pos = build_system(atoms, force)
    ctx = openmm.Context(system, make_integrator("verlet", 1.0), plat, props)
    ctx.setPositions(pos)
    ctx.setVelocitiesToTemperature(300 * unit.kelvin, 7)
    ctx.getIntegrator().step(equil_steps)
    t, e, ke = [], [], []
    for k in range(0, steps + 1, every):
        if k:
            ctx.getIntegrator().step(every)
        st = ctx.getState(getEnergy=True)
        t.append(k * 1e-6)  # ns
        ke.append(st.getKineticEnergy().value_in_unit(unit.kilojoule_per_mole))
        e.append(ke[-1] + st.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))
    slope = float(np.polyfit(t, e, 1)[0])
    return {"steps": steps, "equil_steps": equil_steps, "dt_fs": 1.0, "T0_K": 300.0, "sample_every": every,
            "drift_kJ_mol_per_ns": slope, "drift_meV_per_atom_per_ns": 1e3 * slope * KJ_PER_MOL_TO_EV / len(atoms),
            "total_energy_std_kJ_mol": float(np.std(e)), "kinetic_energy_std_kJ_mol": float(np.std(ke))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=SHARED / "cu2se.mtp")
    ap.add_argument("--structure", type=Path, default=SHARED / "cu2se_1500.lammps-data")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--sizes", default="1,2", help="replications per axis of the cell: 1 = 1.5k atoms, 2 = 12k, 4 = 96k")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--drift-steps", type=int, default=300, help="NVE steps of the drift fit (0 = skip)")
    ap.add_argument("--drift-equil-steps", type=int, default=100, help="NVE steps before the drift fit")
    ap.add_argument("--parts", default="md,model,drift", help="which measurements to run")
    ap.add_argument("--json", type=Path, default=Path("bench_openmm.json"))
    args = ap.parse_args()
    threads = [int(x) for x in args.threads.split(",")]
    sizes = [int(x) for x in args.sizes.split(",")]
    parts = set(args.parts.split(","))
    atoms = read_structure(args.structure, format="lammps-data", species=SPECIES)
    out: dict = {"machine": {"cpu_count": os.cpu_count(), "loadavg_start": os.getloadavg(), "python": platform.python_version(),
                             "torch": torch.__version__, "openmm": openmm.__version__},
                 "n_atoms": len(atoms), "md": [], "model_alone": [], "scaling": []}
    with tempfile.TemporaryDirectory() as tmp:
        models = {}
        for dtype in ("float32", "float64"):
            models[dtype] = Path(tmp) / f"cu2se_{dtype}.pt"
            compile_for_openmm(args.model, models[dtype], species=SPECIES, dtype=dtype)
        if "md" in parts:
            print(f"{'threads':>7} {'dtype':>8} {'backend':>8} {'atom-steps/s':>13} {'ms/step':>8}")
        for n in threads if "md" in parts else []:
            for dtype, pt in models.items():
                for backend in ("torch", "python"):
                    rate = md_throughput(pt, atoms, backend, n, args.steps)
                    out["md"].append({"threads": n, "dtype": dtype, "backend": backend, "steps": args.steps, "atom_steps_per_s": rate})
                    print(f"{n:>7} {dtype:>8} {backend:>8} {rate:>13.0f} {1e3 * len(atoms) / rate:>8.1f}", flush=True)
        if "model" in parts:
            print(f"\nmodel alone (scripted adapter, energy+forces, no OpenMM)\n{'threads':>7} {'dtype':>8} {'atoms':>7} {'ms/call':>9} {'us/atom':>8}")
        for n in threads if "model" in parts else []:
            for dtype, pt in models.items():
                for reps in sizes:
                    big = atoms.repeat((reps, reps, reps))
                    ms = model_call_ms(pt, big, n, repeats=5 if reps == 1 else 2)
                    row = {"threads": n, "dtype": dtype, "n_atoms": len(big), "ms_per_call": ms, "us_per_atom": 1e3 * ms / len(big)}
                    out["model_alone" if reps == 1 else "scaling"].append(row)
                    print(f"{n:>7} {dtype:>8} {len(big):>7} {ms:>9.1f} {row['us_per_atom']:>8.1f}", flush=True)
        if "drift" in parts and args.drift_steps > 0:
            out["nve_drift"] = d = nve_drift(args.model, atoms, args.drift_steps, args.drift_equil_steps, min(threads))
            print(f"\nNVE drift ({d['equil_steps']} + {d['steps']} steps, 1 fs, 300 K, float64): "
                  f"{d['drift_kJ_mol_per_ns']:.3f} kJ/mol/ns = {d['drift_meV_per_atom_per_ns']:.4f} meV/atom/ns; "
                  f"std E_total {d['total_energy_std_kJ_mol']:.4f} kJ/mol vs std E_kin {d['kinetic_energy_std_kJ_mol']:.2f} kJ/mol")
    args.json.write_text(json.dumps(out, indent=1))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
