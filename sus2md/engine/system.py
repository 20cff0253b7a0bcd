"""ASE Atoms -> OpenMM Topology, System and positions (nm); a PDB topology that mdtraj reads.

OpenMM needs the periodic box in *reduced* form: ``a = (ax, 0, 0)``, ``b = (bx, by, 0)``,
``c = (cx, cy, cz)`` with positive diagonal and ``ax >= 2|bx|``, ``ax >= 2|cx|``,
``by >= 2|cy|``.  :func:`reduced_cell` gets there in three exact steps that keep the crystal:

1. a left-handed cell has its ``c`` vector negated (same lattice);
2. the axes are rotated so the cell is lower triangular (``ase.cell.Cell.standard_form``); the
   positions are rotated with it (the potential is rotation invariant);
3. integer combinations of lattice vectors reduce the off-diagonal terms as OpenMM's
   ``reducePeriodicBoxVectors`` does (same lattice, positions unchanged).

The returned positions are therefore in OpenMM's frame, which differs from the input frame by a
rotation when the input cell is not lower triangular.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch  # noqa: F401  (must precede openmm)

import openmm  # isort: skip
from openmm import app, unit  # isort: skip

from ase import Atoms

from sus2md.errors import StructureError, UsageError
from sus2md.units import ANGSTROM_TO_NM

__all__ = ["build_system", "reduced_cell", "write_topology_pdb"]


def reduced_cell(cell_A: np.ndarray, positions_A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """OpenMM-reduced cell and the positions rotated into its frame.

    Args:
        cell_A: (3, 3) lattice vectors as rows, Å.
        positions_A: (N, 3) positions, Å.

    Returns:
        ``(cell (3, 3), positions (N, 3))`` in Å, cell lower triangular and reduced.
    """
    cell = np.array(cell_A, dtype=np.float64)
    if np.linalg.det(cell) < 0:
        cell[2] = -cell[2]
    from ase.cell import Cell

    rcell, q = Cell(cell).standard_form()
    a, b, c = (np.array(v) for v in rcell.array)
    a[1:] = 0.0  # clear round-off above the diagonal
    b[2] = 0.0
    c = c - b * round(c[1] / b[1])
    c = c - a * round(c[0] / a[0])
    b = b - a * round(b[0] / a[0])
    return np.array([a, b, c]), np.asarray(positions_A, dtype=np.float64) @ q.T


def _topology(atoms: Atoms) -> app.Topology:
    """One chain; one residue per atom, named after its element (mdtraj reads it)."""
    top = app.Topology()
    chain = top.addChain("A")
    for symbol, z in zip(atoms.get_chemical_symbols(), atoms.get_atomic_numbers()):
        res = top.addResidue(symbol.upper(), chain)
        top.addAtom(symbol, app.Element.getByAtomicNumber(int(z)), res)
    return top


def build_system(atoms: Atoms, force: openmm.Force,
                 remove_com_motion: bool = True) -> tuple[app.Topology, openmm.System, np.ndarray]:
    """Topology, System (masses from ``atoms``, amu) and positions (N, 3) nm for ``atoms``.

    A fully periodic ``atoms`` gets the reduced box (see module docstring) and requires a
    periodic ``force``; a non-periodic one gets no box and requires a non-periodic force.
    ``remove_com_motion`` adds a ``CMMotionRemover`` (every step).

    Raises:
        StructureError: mixed periodicity, or a degenerate cell.
        UsageError: the force's periodicity does not match the structure's.
    """
    pbc = np.asarray(atoms.pbc, dtype=bool)
    if pbc.any() and not pbc.all():
        raise StructureError(f"OpenMM needs all three directions periodic or none; the structure has pbc={pbc.tolist()}")
    periodic = bool(pbc.all())
    if force.usesPeriodicBoundaryConditions() != periodic:
        kind = "periodic" if periodic else "non-periodic"
        raise UsageError(f"the structure is {kind} but the force is not; create it with periodic={periodic}")
    positions = atoms.get_positions()
    top = _topology(atoms)
    system = openmm.System()
    for m in atoms.get_masses():
        system.addParticle(float(m))
    if periodic:
        if abs(atoms.cell.volume) < 1e-6:
            raise StructureError(f"the periodic cell has no volume: {atoms.cell.array.tolist()}")
        cell, positions = reduced_cell(atoms.cell.array, positions)
        box = [openmm.Vec3(*(v * ANGSTROM_TO_NM)) for v in cell]
        system.setDefaultPeriodicBoxVectors(*box)
        top.setPeriodicBoxVectors(box * unit.nanometer)
    system.addForce(force)
    if remove_com_motion:
        system.addForce(openmm.CMMotionRemover())
    return top, system, positions * ANGSTROM_TO_NM


def write_topology_pdb(topology: app.Topology, positions: np.ndarray, box: np.ndarray | None,
                       path: str | Path) -> None:
    """Write a PDB (positions (N, 3) nm, box (3, 3) nm rows or None) that mdtraj can load as topology."""
    if box is not None:
        topology.setPeriodicBoxVectors([openmm.Vec3(*v) for v in np.asarray(box, dtype=float)] * unit.nanometer)
    try:
        with open(path, "w") as fh:
            app.PDBFile.writeFile(topology, np.asarray(positions, dtype=float) * unit.nanometer, fh)
    except OSError as e:
        raise UsageError(f"cannot write {path}: {e}") from None
