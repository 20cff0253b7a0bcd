"""Small structures and models for fast unit tests (no ../shared needed)."""
from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.build import bulk

from sus2md.io.mtp import MTPFile
from sus2md.nn.potential import SUS2Potential
from sus2md.train.init_model import init_mtp


def random_model(L: int = 2, K: int = 2, species=("Cu", "Se"), cutoff: float = 4.5, R: int = 6,
                 scaling_map: str = "K", seed: int = 0) -> SUS2Potential:
    """A model with random (but reproducible and well-scaled) coefficients."""
    rng = np.random.default_rng(seed)
    m: MTPFile = init_mtp(L, K, list(species), cutoff, radial_basis_size=R, scaling_map=scaling_map)
    S, nb = m.species_count, m.n_blocks
    m.shift_coeffs = rng.normal(size=S)
    alpha = rng.uniform(1.0, 3.0, size=(nb, S, S))
    r0 = rng.uniform(1.5, 2.5, size=(nb, S, S))
    m.scal_coeffs = np.stack([alpha, r0], axis=1).reshape(-1)
    rc = np.ones((m.radial_funcs_count, R + S))
    rc[:, :R] = rng.normal(size=(m.radial_funcs_count, R))
    rc[0, R:] = rng.uniform(0.5, 1.5, size=S)
    m.radial_coeffs = rc
    m.scaling = 0.05
    m.species_coeffs = rng.uniform(0.5, 1.5, size=S)
    m.moment_coeffs = rng.normal(size=len(m.alpha_moment_mapping)) * 0.1
    return SUS2Potential(m)


def small_cell(seed: int = 0, n_rep=(1, 1, 1), rattle: float = 0.1, triclinic: bool = False) -> Atoms:
    """A rattled 2-species fcc cell (4 atoms per unit) with ``arrays['mtp_type']``."""
    rng = np.random.default_rng(seed)
    a = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(n_rep)
    if triclinic:
        cell = a.cell.array.copy()
        cell[1] += 0.3 * cell[0] / np.linalg.norm(cell[0])
        cell[2] += np.array([0.4, -0.2, 0.0])
        a.set_cell(cell, scale_atoms=True)
    a.positions += rng.normal(scale=rattle, size=a.positions.shape)
    types = rng.integers(0, 2, size=len(a))
    a.set_chemical_symbols(np.where(types == 0, "Cu", "Se"))
    a.arrays["mtp_type"] = types.astype(np.int64)
    return a


def cluster(n: int = 6, seed: int = 0) -> Atoms:
    rng = np.random.default_rng(seed)
    pos = rng.uniform(0, 4.0, size=(n, 3))
    a = Atoms("Cu" * n, positions=pos, pbc=False)
    a.arrays["mtp_type"] = rng.integers(0, 2, size=n).astype(np.int64)
    return a


def jiggled_frames(atoms: Atoms, steps: int = 12, scale_nm: float = 0.004, seed: int = 0):
    """(positions, box) tensors in nm for ``steps`` cumulative random displacements of ``atoms``
    (0.04 Å per step by default: enough for Verlet-list rebuilds)."""
    import torch

    box = torch.tensor(atoms.cell.array / 10.0)
    rng = np.random.default_rng(seed)
    pos = atoms.positions / 10.0
    for _ in range(steps):
        pos = pos + rng.normal(scale=scale_nm, size=pos.shape)
        yield torch.tensor(pos), box
