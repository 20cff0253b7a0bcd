"""NVT and NPT stages sample their ensembles: the figures behind tests/integration/test_ensembles.py,
on more atoms and longer runs, through ``sus2md run`` with the default backend.

System: fcc Cu (3x3x3 conventional cells, 108 atoms) under the shipped EMT-alloy model
(models/emt_alloy.mtp), 300 K, 2 fs, Langevin 5/ps, after 4 ps of NVT equilibration.

* NVT: kinetic-energy distribution against the canonical Gamma distribution
  (``physical_validation.kinetic_energy.distribution``: mean and width in standard errors, and the
  p value of its Kolmogorov-Smirnov test).
* NPT isotropic (1 bar): mean virial pressure against the target (standard error from block
  averaging); bulk modulus from the volume fluctuations, B = kT <V> / <dV^2> (jackknife error),
  against the model's own 0 K equation of state (ASE ``EquationOfState``, Birch-Murnaghan).
* NPT flexible (1 bar): acceptance per move kind; mean volume against the isotropic run.
* The case of issue 12: antifluorite Cu2Se, 324 atoms, 600 K, flexible barostat, 1000 steps (the
  authors' cu2se.mtp; skipped without ../shared): acceptance per move kind and the volume range.

Usage::

    python benchmarks/ensembles_emt.py [--steps 40000] [--out benchmarks/results]
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from ase.build import bulk

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SUS2MD_SHARED", ROOT.parent / "shared")) / "reference"
MODEL = ROOT / "models" / "emt_alloy.mtp"
SPECIES = ["Al", "Ni", "Cu", "Pd", "Ag", "Pt", "Au"]
T_K, P_BAR = 300.0, 1.0


def run(tmp: Path, name: str, stage: dict, structure: Path, model: dict, every: int = 10) -> list[dict]:
    from sus2md.engine.run import run_protocol
    from sus2md.protocol import load_protocol

    t = stage.get("temperature_K", T_K)
    eq = {"type": "nvt", "steps": 2000, "timestep_fs": 2.0, "temperature_K": t, "friction_per_ps": 5.0,
          "report_interval_steps": 1000, "trajectory_interval_steps": 2000}
    data = {"structure": {"path": str(structure)}, "model": model, "seed": 11, "threads": 1,
            "stages": [eq, {"timestep_fs": 2.0, "temperature_K": t, "friction_per_ps": 5.0,
                            "report_interval_steps": every, "trajectory_interval_steps": 100000, **stage}]}
    (tmp / f"{name}.yaml").write_text(yaml.safe_dump(data))
    t0 = time.perf_counter()
    run_protocol(load_protocol(tmp / f"{name}.yaml"), tmp / name, progress=False)
    print(f"{name}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    with open(tmp / name / "thermo.csv") as fh:
        return [r for r in csv.DictReader(fh) if r["stage_index"] == "1"]


def col(rows: list[dict], name: str) -> np.ndarray:
    return np.array([float(r[name]) for r in rows])


def acceptance(row: dict) -> dict:
    out = {}
    for kind in ("volume", "axis", "shear"):
        if row[f"{kind}_moves_attempted"]:
            acc, att = int(row[f"{kind}_moves_accepted"]), int(row[f"{kind}_moves_attempted"])
            out[kind] = {"accepted": acc, "attempted": att, "rate": round(acc / att, 3)}
    return out


def eos_bulk_modulus() -> float:
    from sus2md.io.data import species_index
    from sus2md.model import load_model
    from sus2md.testing import eos_bulk_modulus_GPa

    atoms = bulk("Cu", "fcc", a=3.59, cubic=True)
    atoms.arrays["mtp_type"] = species_index(atoms, SPECIES)
    return eos_bulk_modulus_GPa(load_model(MODEL, species=SPECIES), atoms)


def kinetic_check(rows: list[dict], n: int) -> dict:
    import physical_validation as pv

    from sus2md.units import EV_TO_KJ_PER_MOL

    d = pv.data
    data = d.SimulationData(
        units=d.UnitData.units("GROMACS"), ensemble=d.EnsembleData("NVT", natoms=n, volume=1.0, temperature=T_K),
        system=d.SystemData(natoms=n, nconstraints=0, ndof_reduction_tra=3, ndof_reduction_rot=0, mass=np.full(n, 63.546)),
        observables=d.ObservableData(kinetic_energy=col(rows, "kinetic_energy_eV") * EV_TO_KJ_PER_MOL))
    d_mean, d_width = pv.kinetic_energy.distribution(data, strict=False, verbosity=0, bootstrap_seed=1)
    p = pv.kinetic_energy.distribution(data, strict=True, verbosity=0)
    return {"mean_dev_sigma": round(float(d_mean), 2), "width_dev_sigma": round(float(d_width), 2),
            "ks_p_value": round(float(p), 3), "samples": len(rows),
            "temperature_K": round(float(col(rows, "temperature_K").mean()), 1)}


def main() -> None:
    from sus2md.analysis.thermo import bulk_modulus_from_volume, mean_and_sem

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=40000)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    rep: dict = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "steps": args.steps,
                 "loadavg_start": [round(x, 2) for x in os.getloadavg()]}
    emt = {"path": str(MODEL), "species": SPECIES}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        cu = tmp / "cu108.extxyz"
        bulk("Cu", "fcc", a=3.61, cubic=True).repeat(3).write(cu)
        rep["nvt"] = kinetic_check(run(tmp, "nvt", {"type": "nvt", "steps": args.steps}, cu, emt), 108)
        npt = {"type": "npt", "steps": args.steps, "pressure_bar": P_BAR, "barostat_interval_steps": 10}
        iso = run(tmp, "iso", {**npt, "barostat": "isotropic"}, cu, emt)
        p = mean_and_sem(col(iso, "pressure_bar"), detect_equilibrium=False)
        b = bulk_modulus_from_volume(col(iso, "volume_A3"), T_K)
        v_iso = mean_and_sem(col(iso, "volume_A3"), detect_equilibrium=False)
        rep["npt_isotropic"] = {"pressure_bar": round(p["mean"], 1), "pressure_sem_bar": round(p["sem"], 1),
                                "pressure_dev_sem": round((p["mean"] - P_BAR) / p["sem"], 2),
                                "B_fluct_GPa": round(b["B_GPa"], 1), "B_err_GPa": round(b["err_GPa"], 1),
                                "B_eos_0K_GPa": round(eos_bulk_modulus(), 1),
                                "volume_A3": round(v_iso["mean"], 2), "volume_sem_A3": round(v_iso["sem"], 2),
                                "acceptance": acceptance(iso[-1])}
        flex = run(tmp, "flex", {**npt, "barostat": "flexible"}, cu, emt)
        v_flex = mean_and_sem(col(flex, "volume_A3"), detect_equilibrium=False)
        pf = mean_and_sem(col(flex, "pressure_bar"), detect_equilibrium=False)
        rep["npt_flexible"] = {"volume_A3": round(v_flex["mean"], 2), "volume_sem_A3": round(v_flex["sem"], 2),
                               "pressure_bar": round(pf["mean"], 1), "pressure_sem_bar": round(pf["sem"], 1),
                               "acceptance": acceptance(flex[-1])}
        if (SHARED / "cu2se.mtp").is_file():
            from ase.spacegroup import crystal

            cu2se = tmp / "cu2se324.extxyz"
            crystal(["Se", "Cu"], basis=[(0, 0, 0), (0.25, 0.25, 0.25)], spacegroup=225,
                    cellpar=[5.85] * 3 + [90] * 3).repeat(3).write(cu2se)
            rows = run(tmp, "cu2se", {"type": "npt", "steps": 1000, "temperature_K": 600.0, "pressure_bar": 1.0,
                                      "barostat": "flexible"}, cu2se,
                       {"path": str(SHARED / "cu2se.mtp"), "species": ["Cu", "Se"]}, every=10)
            v = col(rows, "volume_A3")
            rep["cu2se_600K_flexible_1000_steps"] = {"acceptance": acceptance(rows[-1]),
                                                     "volume_min_A3": round(v.min(), 1), "volume_max_A3": round(v.max(), 1),
                                                     "distinct_volumes": int(len(np.unique(np.round(v, 6))))}
    rep["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(rep, indent=1))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ensembles_emt.json").write_text(json.dumps(rep, indent=1) + "\n")


if __name__ == "__main__":
    main()
