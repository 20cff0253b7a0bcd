"""The physics contract every SUS2 model must pass, shipped as functions (used by our tests).

Each check returns the measured error so tests can assert per-dtype tolerances:

* :func:`fd_force_error` — max |F_analytic - F_central-difference| (eV/Å);
* :func:`fd_virial_error` — max |W_analytic - W_finite-strain| (eV), W = -dE/dε;
* :func:`invariance_errors` — |ΔE| under translation, rotation, permutation, periodic re-wrapping;
* :func:`supercell_error` — |E(n1 n2 n3 cell)/(n1 n2 n3) - E(cell)| per atom;
* :func:`eos_bulk_modulus_GPa` — the bulk modulus of the model's 0 K equation of state.
"""
from __future__ import annotations

import numpy as np
import torch
from ase import Atoms

from sus2md.nn.calc import evaluate, graph_from_atoms
from sus2md.nn.potential import SUS2Potential


def energy_forces_virial(model: SUS2Potential, atoms: Atoms) -> tuple[float, np.ndarray, np.ndarray]:
    """(E eV, F (N,3) eV/Å, W (3,3) eV) of one structure with ``arrays['mtp_type']``."""
    dtype = next(model.parameters()).dtype
    r = evaluate(model, graph_from_atoms([atoms], model.cutoff, dtype=dtype))
    return float(r.energy[0].detach()), r.forces.detach().double().numpy(), r.virial[0].detach().double().numpy()


def _energy(model: SUS2Potential, atoms: Atoms) -> float:
    dtype = next(model.parameters()).dtype
    with torch.no_grad():
        r = evaluate(model, graph_from_atoms([atoms], model.cutoff, dtype=dtype), forces=False, virial=False)
    return float(r.energy[0])


def fd_force_error(model: SUS2Potential, atoms: Atoms, h: float = 1e-4, atoms_to_check: int = 4) -> float:
    """Max deviation between analytic forces and central differences of the energy (eV/Å)."""
    _, f, _ = energy_forces_virial(model, atoms)
    err = 0.0
    for i in range(min(len(atoms), atoms_to_check)):
        for d in range(3):
            a = atoms.copy()
            a.positions[i, d] += h
            ep = _energy(model, a)
            a.positions[i, d] -= 2 * h
            em = _energy(model, a)
            err = max(err, abs(-(ep - em) / (2 * h) - f[i, d]))
    return err


def fd_virial_error(model: SUS2Potential, atoms: Atoms, h: float = 1e-5) -> float:
    """Max deviation between the analytic virial and -dE/dε by central differences (eV)."""
    _, _, w = energy_forces_virial(model, atoms)
    err = 0.0
    for a_ in range(3):
        for b_ in range(3):
            vals = []
            for s in (+h, -h):
                eps = np.eye(3)
                eps[a_, b_] += s
                a = atoms.copy()
                a.set_cell(atoms.cell.array @ eps, scale_atoms=False)
                a.positions = atoms.positions @ eps
                vals.append(_energy(model, a))
            err = max(err, abs(-(vals[0] - vals[1]) / (2 * h) - w[a_, b_]))
    return err


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def invariance_errors(model: SUS2Potential, atoms: Atoms, seed: int = 0) -> dict[str, float]:
    """|ΔE| (eV) under translation, rotation (of atoms and cell), permutation and re-wrapping."""
    rng = np.random.default_rng(seed)
    e0 = _energy(model, atoms)
    out = {}
    a = atoms.copy()
    a.positions += rng.normal(size=3) * 3.0
    out["translation"] = abs(_energy(model, a) - e0)
    a = atoms.copy()
    rot = _random_rotation(rng)
    a.set_cell(atoms.cell.array @ rot.T, scale_atoms=False)
    a.positions = atoms.positions @ rot.T
    out["rotation"] = abs(_energy(model, a) - e0)
    perm = rng.permutation(len(atoms))
    out["permutation"] = abs(_energy(model, atoms[perm]) - e0)
    if atoms.pbc.any():
        a = atoms.copy()
        shifts = rng.integers(-2, 3, size=(len(a), 3)) * atoms.pbc
        a.positions += shifts @ atoms.cell.array
        out["periodic_image"] = abs(_energy(model, a) - e0)
    return out


def supercell_error(model: SUS2Potential, atoms: Atoms, reps: tuple[int, int, int] = (2, 2, 2)) -> float:
    """|E(supercell)/n - E(cell)| per atom (eV/atom)."""
    n = int(np.prod(reps))
    big = atoms.repeat(reps)
    return abs(_energy(model, big) / n - _energy(model, atoms)) / len(atoms)


def eos_bulk_modulus_GPa(model: SUS2Potential, atoms: Atoms, strain: float = 0.03, points: int = 11) -> float:
    """Bulk modulus (GPa) of the model's 0 K equation of state: ``atoms`` (with
    ``arrays['mtp_type']``) scaled isotropically over ±``strain`` in length, fitted by ASE's
    Birch-Murnaghan ``EquationOfState``.  The reference for NPT volume fluctuations."""
    from ase.eos import EquationOfState
    from ase.units import GPa

    vols, energies = [], []
    for s in np.linspace(1 - strain, 1 + strain, points):
        a = atoms.copy()
        a.set_cell(atoms.cell.array * s, scale_atoms=True)
        vols.append(a.get_volume())
        energies.append(_energy(model, a))
    return float(EquationOfState(vols, energies, eos="birchmurnaghan").fit()[2] / GPa)
