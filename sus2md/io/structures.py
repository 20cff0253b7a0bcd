"""Read a starting structure for simulation (extxyz, CIF, POSCAR, LAMMPS data, PDB, .cfg) and
check that it is physically usable.

Everything is ASE Atoms in Å. With a species list (the model's elements in type order) the
returned Atoms carry ``arrays['mtp_type']`` (int64, (N,)).

LAMMPS data files often have no element names. ASE then guesses elements from the ``Masses``
section (``cu2se_1500.lammps-data`` comes out as Cu1000Se500). With ``species`` given, LAMMPS
type ``t`` (1-based) becomes ``species[t - 1]`` regardless of the masses, which is how a LAMMPS
``pair_coeff * * model Cu Se`` line maps types; the masses of the file are kept, and a log
warning says when they point at another element. The atom style comes from the
``Atoms # style`` comment, else from the column count (5 or 8 columns = atomic).
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from os import PathLike
from pathlib import Path

import ase.io
import numpy as np
from ase import Atoms
from ase.data import chemical_symbols
from ase.io.formats import ioformats
from ase.neighborlist import neighbor_list

from sus2md.errors import DataFileError, StructureError, UnknownSpeciesError, UsageError
from sus2md.io.cfg import _format_species, _species_numbers, read_cfg
from sus2md.io.data import species_index

__all__ = ["read_structure", "validate_structure"]

log = logging.getLogger(__name__)

#: user-facing format names -> ASE format names ("cfg" is sus2md's own MLIP reader)
FORMAT_ALIASES = {
    "extxyz": "extxyz", "xyz": "extxyz",
    "cif": "cif",
    "vasp": "vasp", "poscar": "vasp", "contcar": "vasp",
    "lammps-data": "lammps-data", "lammps": "lammps-data", "lmp": "lammps-data",
    "pdb": "proteindatabank", "proteindatabank": "proteindatabank",
    "cfg": "cfg",
}
_SUFFIX_FORMATS = {
    ".xyz": "extxyz", ".extxyz": "extxyz", ".cif": "cif", ".vasp": "vasp", ".poscar": "vasp",
    ".lammps-data": "lammps-data", ".lmp": "lammps-data", ".data": "lammps-data",
    ".lammps": "lammps-data", ".pdb": "proteindatabank", ".cfg": "cfg",
}
_FORMATS_HINT = "extxyz, cif, vasp (POSCAR), lammps-data, pdb or cfg"


def _resolve_format(path: Path, format: str | None) -> str | None:
    """ASE format name for ``path`` (None = let ASE guess)."""
    if format is not None:
        key = format.lower()
        if key in FORMAT_ALIASES:
            return FORMAT_ALIASES[key]
        if key in ioformats:
            return key
        raise UsageError(f"unknown structure format {format!r}; use one of {_FORMATS_HINT}")
    name = path.name.lower()
    if name.startswith(("poscar", "contcar")):
        return "vasp"
    return _SUFFIX_FORMATS.get(path.suffix.lower())


def _read(path: Path, fmt: str | None, index: int | str) -> Atoms:
    kwargs = {"atom_style": None} if fmt == "lammps-data" else {}
    try:
        result = ase.io.read(path, index=index, format=fmt, **kwargs)
    except Exception as exc:  # ASE raises many exception types for unreadable input
        tried = f"as {fmt}" if fmt else "with ASE's format auto-detection (the name gave no format)"
        raise DataFileError(path, None, f"could not be read {tried} ({type(exc).__name__}: {exc}); pass "
                                        f"format= one of {_FORMATS_HINT}") from None
    if isinstance(result, list):  # index was a slice string
        if len(result) != 1:
            raise UsageError(f"{path}: index {index!r} selects {len(result)} frames; read_structure needs one")
        result = result[0]
    return result


def _lammps_species(atoms: Atoms, species: Sequence[str], path: Path) -> None:
    """Rename LAMMPS types 1..T to ``species[t - 1]`` in place."""
    numbers = _species_numbers(species)
    ltypes = np.asarray(atoms.arrays["type"], dtype=np.int64)
    bad = sorted({int(t) for t in ltypes if not 1 <= t <= len(species)})
    if bad:
        raise UnknownSpeciesError(
            f"{path.name}: LAMMPS types {', '.join(map(str, bad))} have no element in the model's species "
            f"{_format_species(species)} (type t is species[t-1]); pass a species list with an entry per type")
    guessed = atoms.get_atomic_numbers()
    new = numbers[ltypes - 1]
    for t in np.unique(ltypes[guessed != new]).tolist():
        z_file = int(guessed[ltypes == t][0])
        log.warning("%s: LAMMPS type %d has the mass of %s but species[%d] = %s; using %s",
                    path.name, t, chemical_symbols[z_file], t - 1, species[t - 1], species[t - 1])
    atoms.set_atomic_numbers(new)
    atoms.set_array("mtp_type", ltypes - 1)


def read_structure(path: str | PathLike, format: str | None = None, species: Sequence[str] | None = None,
                   index: int | str = -1) -> Atoms:
    """Read one structure.

    Args:
        path: structure file.
        format: ``extxyz``, ``cif``, ``vasp``/``poscar``, ``lammps-data``, ``pdb``, ``cfg`` or any
            ASE format name; None guesses from the file name (``POSCAR``/``CONTCAR`` names and
            the usual suffixes), then lets ASE try.
        species: the model's elements in type order; adds ``arrays['mtp_type']`` and, for LAMMPS
            data, names type ``t`` ``species[t - 1]``.
        index: which frame of a multi-frame file (default: the last).

    Returns:
        Atoms with positions and cell in Å.

    Raises:
        UsageError: missing file or unknown format name.
        DataFileError: the file cannot be read in the chosen format.
        UnknownSpeciesError: an element (or LAMMPS type) is not in ``species``.
    """
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"file not found: {path}")
    if path.stat().st_size == 0:
        raise DataFileError(path, None, "the file is empty; expected a structure")
    fmt = _resolve_format(path, format)
    if fmt == "cfg":
        frames = read_cfg(path, species)
        try:
            return frames[int(index)]
        except (IndexError, ValueError):
            raise UsageError(f"{path}: index {index!r} does not select one of its {len(frames)} configurations") from None
    atoms = _read(path, fmt, index)
    if species is not None:
        if fmt == "lammps-data" and "type" in atoms.arrays:
            _lammps_species(atoms, species, path)
        else:
            atoms.set_array("mtp_type", species_index(atoms, species, source=path.name))
    return atoms


def _periodic_volume(cell: np.ndarray, pbc: np.ndarray) -> float:
    """Volume (3D), area (2D) or length (1D) spanned by the periodic lattice vectors."""
    rows = cell[pbc]
    return float(np.sqrt(max(np.linalg.det(rows @ rows.T), 0.0)))


def validate_structure(atoms: Atoms, min_distance_A: float = 0.5, source: str = "structure") -> None:
    """Raise :class:`~sus2md.errors.StructureError` if ``atoms`` cannot be simulated.

    Checks, in order: at least one atom; finite positions and cell; periodic lattice vectors
    that span a non-degenerate volume (area, length), measured as the Gram determinant of the
    periodic rows, threshold 1e-6 (Å^3, Å^2, Å); no two atoms (or an atom and a periodic
    image, its own included) closer than ``min_distance_A`` (Å). All periodic images are
    checked through :func:`ase.neighborlist.neighbor_list`.

    Args:
        atoms: the structure (Å).
        min_distance_A: smallest allowed interatomic distance, Å.
        source: name of the structure in messages (usually its file name).
    """
    n = len(atoms)
    if n == 0:
        raise StructureError(f"{source}: the structure has no atoms")
    positions = atoms.get_positions()
    bad = np.nonzero(~np.isfinite(positions).all(axis=1))[0]
    if bad.size:
        i = int(bad[0])
        raise StructureError(f"{source}: atom {i} ({atoms[i].symbol}) has a non-finite position "
                             f"{positions[i].tolist()}; {bad.size} atoms are affected")
    cell = atoms.cell.array
    pbc = np.asarray(atoms.pbc, dtype=bool)
    if not np.isfinite(cell).all():
        raise StructureError(f"{source}: the cell contains nan or inf: {cell.tolist()}")
    if pbc.any():
        axes = "".join("abc"[a] for a in range(3) if pbc[a])
        zero = [("abc"[a]) for a in range(3) if pbc[a] and not np.any(cell[a] != 0.0)]
        if zero:
            raise StructureError(f"{source}: periodic direction {', '.join(zero)} has a zero lattice vector; "
                                 f"set the cell or turn periodicity off there")
        measure = _periodic_volume(cell, pbc)
        if measure < 1e-6:
            what = {3: "volume", 2: "area", 1: "length"}[len(axes)]
            raise StructureError(f"{source}: the cell is degenerate along the periodic directions {axes} "
                                 f"({what} {measure:.3g}); lattice vectors must be linearly independent")
    _check_overlaps(atoms, min_distance_A, source)


def _check_overlaps(atoms: Atoms, min_distance_A: float, source: str) -> None:
    if min_distance_A <= 0:
        return
    i, j, d = neighbor_list("ijd", atoms, cutoff=min_distance_A)
    if i.size == 0:
        return
    k = int(np.argmin(d))
    a, b = int(i[k]), int(j[k])
    sym = atoms.get_chemical_symbols()
    # neighbor_list lists each pair in both directions (an atom's own image at +T and -T)
    n_close = int(np.count_nonzero(i < j) + np.count_nonzero(i == j) // 2)
    if a == b:
        what = f"atom {a} ({sym[a]}) is {d[k]:.4g} Å from its own periodic image"
        fix = "the cell is smaller than the atom spacing"
    else:
        a, b = min(a, b), max(a, b)
        what = f"atoms {a} ({sym[a]}) and {b} ({sym[b]}) are {d[k]:.4g} Å apart"
        fix = "remove duplicate atoms or fix the coordinates"
    raise StructureError(f"{source}: {what}, closer than min_distance_A = {min_distance_A:g} Å "
                         f"({n_close} close pairs in all); {fix}")
