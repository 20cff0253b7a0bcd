"""NVT and NPT stages sample their ensembles, checked as physics through ``sus2md run`` itself.

A 32-atom fcc Cu crystal under the shipped EMT-alloy model (models/emt_alloy.mtp), the default
backend, seeded: the runs are deterministic, and each check compares against its own statistical
error, so a broken thermostat, barostat rule or pressure estimator fails by many errors.

* NVT (Langevin): the kinetic-energy distribution is canonical, a Gamma distribution with mean
  dof kT/2 and width sqrt(dof/2) kT (``physical_validation.kinetic_energy.distribution``, the
  check GROMACS' validation suite uses).
* NPT (isotropic Monte Carlo barostat): the mean virial pressure equals the target within 3
  standard errors, and the volume fluctuations give the bulk modulus of the model's own equation
  of state (ASE ``EquationOfState`` on the same model at 0 K; anharmonic softening at 300 K is a
  few per cent, inside the error) within 3 jackknife errors.
* NPT (flexible): the same crystal samples the same mean volume as under the isotropic barostat,
  and both kinds of move are accepted.

``benchmarks/ensembles_emt.py`` runs the same checks longer and on more atoms and prints the
figures.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import yaml
from ase.build import bulk

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "models" / "emt_alloy.mtp"
SPECIES = ["Al", "Ni", "Cu", "Pd", "Ag", "Pt", "Au"]
T_K, P_BAR = 300.0, 1.0


def run(tmp: Path, name: str, stage: dict, seed: int = 4, every: int = 5) -> list[dict[str, str]]:
    """The rows of the last stage after a 2 ps NVT equilibration."""
    from sus2md.engine.run import run_protocol
    from sus2md.protocol import load_protocol

    bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2).write(tmp / "cu32.extxyz")
    eq = {"type": "nvt", "steps": 1000, "timestep_fs": 2.0, "temperature_K": T_K, "friction_per_ps": 5.0,
          "report_interval_steps": 500, "trajectory_interval_steps": 1000}
    data = {"structure": {"path": "cu32.extxyz"}, "model": {"path": str(MODEL), "species": SPECIES}, "seed": seed,
            "threads": 1, "stages": [eq, {"timestep_fs": 2.0, "temperature_K": T_K, "friction_per_ps": 5.0,
                                          "report_interval_steps": every, "trajectory_interval_steps": 20000,
                                          **stage}]}
    (tmp / f"{name}.yaml").write_text(yaml.safe_dump(data))
    run_protocol(load_protocol(tmp / f"{name}.yaml"), tmp / name, progress=False)
    with open(tmp / name / "thermo.csv") as fh:
        return [r for r in csv.DictReader(fh) if r["stage_index"] == "1"]


def column(rows: list[dict[str, str]], name: str) -> np.ndarray:
    return np.array([float(r[name]) for r in rows])


@pytest.fixture(scope="module")
def eos_bulk_modulus_GPa() -> float:
    from sus2md.io.data import species_index
    from sus2md.model import load_model
    from sus2md.testing import eos_bulk_modulus_GPa

    atoms = bulk("Cu", "fcc", a=3.59, cubic=True)
    atoms.arrays["mtp_type"] = species_index(atoms, SPECIES)
    return eos_bulk_modulus_GPa(load_model(MODEL, species=SPECIES), atoms)


def test_nvt_kinetic_energy_is_canonical(tmp_path):
    physical_validation = pytest.importorskip("physical_validation")
    from sus2md.units import EV_TO_KJ_PER_MOL

    rows = run(tmp_path, "nvt", {"type": "nvt", "steps": 12000}, every=10)
    ke = column(rows, "kinetic_energy_eV") * EV_TO_KJ_PER_MOL
    pv = physical_validation.data
    n = 32
    data = pv.SimulationData(
        units=pv.UnitData.units("GROMACS"),
        ensemble=pv.EnsembleData("NVT", natoms=n, volume=(2 * 0.361) ** 3, temperature=T_K),
        system=pv.SystemData(natoms=n, nconstraints=0, ndof_reduction_tra=3, ndof_reduction_rot=0,
                             mass=np.full(n, 63.546)),
        observables=pv.ObservableData(kinetic_energy=ke))
    d_mean, d_width = physical_validation.kinetic_energy.distribution(data, strict=False, verbosity=0,
                                                                       bootstrap_seed=1)
    assert abs(d_mean) < 3 and abs(d_width) < 3, (d_mean, d_width)
    # and the temperature column says the same
    t = column(rows, "temperature_K")
    assert abs(t.mean() - T_K) < 0.05 * T_K


def test_npt_pressure_and_volume_fluctuations(tmp_path, eos_bulk_modulus_GPa):
    from sus2md.analysis.thermo import bulk_modulus_from_volume, mean_and_sem

    rows = run(tmp_path, "iso", {"type": "npt", "steps": 8000, "pressure_bar": P_BAR, "barostat": "isotropic",
                                 "barostat_interval_steps": 5})
    p = mean_and_sem(column(rows, "pressure_bar"), detect_equilibrium=False)
    assert abs(p["mean"] - P_BAR) < 3 * p["sem"], p
    assert p["sem"] < 1500  # the check has teeth: 1 GPa off would fail
    v = column(rows, "volume_A3")
    b = bulk_modulus_from_volume(v, T_K)
    assert b["err_GPa"] < 0.25 * b["B_GPa"]
    assert abs(b["B_GPa"] - eos_bulk_modulus_GPa) < 3 * b["err_GPa"], (b, eos_bulk_modulus_GPa)
    acc, att = int(rows[-1]["volume_moves_accepted"]), int(rows[-1]["volume_moves_attempted"])
    assert att == 8000 // 5 and 0.2 < acc / att < 0.8
    assert rows[-1]["axis_moves_attempted"] == rows[-1]["shear_moves_attempted"] == ""


def test_flexible_barostat_moves_and_agrees_with_isotropic(tmp_path):
    from sus2md.analysis.thermo import mean_and_sem

    base = {"type": "npt", "steps": 4000, "pressure_bar": P_BAR, "barostat_interval_steps": 5}
    flex = run(tmp_path, "flex", {**base, "barostat": "flexible"})
    iso = run(tmp_path, "iso", {**base, "barostat": "isotropic"})
    for kind in ("axis", "shear"):
        acc, att = int(flex[-1][f"{kind}_moves_accepted"]), int(flex[-1][f"{kind}_moves_attempted"])
        assert att > 300 and 0.15 < acc / att < 0.85, (kind, acc, att)
    vf = mean_and_sem(column(flex, "volume_A3"), detect_equilibrium=False)
    vi = mean_and_sem(column(iso, "volume_A3"), detect_equilibrium=False)
    assert abs(vf["mean"] - vi["mean"]) < 3 * np.hypot(vf["sem"], vi["sem"]), (vf, vi)
    assert np.ptp(column(flex, "volume_A3")) > 1.0  # the box moved
