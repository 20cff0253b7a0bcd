"""Generate tests/data/tiny_emt.extxyz: 24 small EMT-labelled Cu/Ni/Au cells for CI training tests.

Run: python tests/data/make_tiny_emt.py  (deterministic; ase EMT).
"""
from pathlib import Path

import ase.io
import numpy as np
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator


def make(n: int = 24, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    frames = []
    for k in range(n):
        a0 = 3.6 + 0.15 * rng.random()
        atoms = bulk("Cu", "fcc", a=a0, cubic=True).repeat((2, 1, 1))  # 8 atoms
        atoms.set_chemical_symbols(rng.choice(["Cu", "Ni", "Au"], size=len(atoms), p=[0.5, 0.3, 0.2]))
        strain = np.eye(3) + 0.02 * rng.normal(size=(3, 3))
        atoms.set_cell(atoms.cell.array @ strain, scale_atoms=True)
        atoms.positions += 0.08 * rng.normal(size=atoms.positions.shape)
        atoms.calc = EMT()
        e, f, s = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
        atoms.calc = SinglePointCalculator(atoms, energy=e, forces=f, stress=s)
        atoms.info["config_type"] = "bulk" if k % 3 else "bulk_b"
        frames.append(atoms)
    return frames


if __name__ == "__main__":
    out = Path(__file__).with_name("tiny_emt.extxyz")
    ase.io.write(out, make(), format="extxyz")
    print(f"wrote {out}")
