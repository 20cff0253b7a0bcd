"""The 17 starting structures of examples/learn_emt.yaml (``learn_emt_start.extxyz``).

Kinds as in ../shared/data (EMT 7-metal alloys): the 7 fcc elements (32 atoms), 5 random fcc
alloys (32 atoms, 2-7 elements), a bcc and an hcp random alloy, a (100) and a (111) alloy slab
(36 atoms, 10 Å of vacuum, periodic in all three directions as in the data set), and a vacancy
cell (31 atoms).  Lattice constants: EMT's own fcc a0 (../shared/data/emt_alloy_stats.json), by
Vegard's law for alloys.  Every atom is displaced at random (Gaussian, 0.08 Å per component, about
the thermal amplitude at 500 K) as in an MD snapshot: a perfect lattice gives every atom of an
element one neighbourhood, so the first active set would span almost nothing and every
exploration step would be an extrapolation.  Unlabelled: ``sus2md learn`` labels them first.

    python examples/data/make_learn_start.py    # writes examples/data/learn_emt_start.extxyz
"""
from pathlib import Path

import ase.io
import numpy as np
from ase.build import bulk, fcc100, fcc111

A0 = {"Al": 3.9944, "Ni": 3.4887, "Cu": 3.5933, "Pd": 3.8837, "Ag": 4.0679, "Pt": 3.9271, "Au": 4.0615}
ELEMENTS = list(A0)


def alloy(atoms, elements, rng):
    atoms.set_chemical_symbols(list(rng.choice(elements, len(atoms))))
    return atoms


def vegard(atoms):
    return float(np.mean([A0[s] for s in atoms.get_chemical_symbols()]))


def main() -> None:
    rng = np.random.default_rng(0)
    frames = []
    for el in ELEMENTS:
        a = bulk(el, "fcc", a=A0[el], cubic=True).repeat(2)
        a.info["config_type"] = "bulk_fcc_small"
        frames.append(a)
    for n in (2, 3, 4, 5, 7):
        a = alloy(bulk("Cu", "fcc", a=1.0, cubic=True).repeat(2), list(rng.choice(ELEMENTS, n, replace=False)), rng)
        a.set_cell(a.cell * vegard(a), scale_atoms=True)
        a.info["config_type"] = "bulk_fcc_small"
        frames.append(a)
    a = alloy(bulk("Cu", "bcc", a=1.0, cubic=True).repeat(3), ELEMENTS, rng)
    a.set_cell(a.cell * vegard(a) * 0.794, scale_atoms=True)  # bcc volume per atom ~ fcc's
    a.info["config_type"] = "bcc"
    frames.append(a)
    a = alloy(bulk("Cu", "hcp", a=1.0, c=1.633).repeat((2, 2, 2)), ELEMENTS, rng)
    a.set_cell(a.cell * vegard(a) / np.sqrt(2), scale_atoms=True)
    a.info["config_type"] = "hcp"
    frames.append(a)
    for make, name in ((fcc100, "surface_fcc100"), (fcc111, "surface_fcc111")):
        s = alloy(make("Cu", (3, 3, 4), a=1.0, vacuum=0.0, periodic=True), ELEMENTS[1:4], rng)
        cell = s.cell.array.copy()
        s.set_cell(cell * vegard(s), scale_atoms=True)
        s.center(vacuum=5.0, axis=2)
        s.info = {"config_type": name}
        frames.append(s)
    v = alloy(bulk("Cu", "fcc", a=1.0, cubic=True).repeat(2), ["Cu", "Ni", "Pd"], rng)
    v.set_cell(v.cell * vegard(v), scale_atoms=True)
    del v[int(rng.integers(len(v)))]
    v.info["config_type"] = "vacancy"
    frames.append(v)
    for k, a in enumerate(frames):
        a.rattle(stdev=0.08, seed=k)
    out = Path(__file__).with_name("learn_emt_start.extxyz")
    ase.io.write(out, frames)
    print(f"wrote {out}: {len(frames)} structures, {sum(len(a) for a in frames)} atoms")


if __name__ == "__main__":
    main()
