"""Labelled data sets for training and evaluation: ``.cfg`` or anything ASE reads.

:func:`load_frames` returns ASE Atoms that all carry ``arrays['mtp_type']`` (0-based species
index, int64), whatever the file format, and :func:`labels` gives every frame's energy (eV),
forces (eV/Å) and virial (eV) in one shape, so training and evaluation code never look at file
formats or stress sign conventions.

Where the types come from, in order:

1. ``.cfg`` files: the ``type`` column (``species``, when given, only names the elements and
   bounds the types).
2. Other formats with ``species``: element symbols mapped through ``species`` (index = type).
3. Other formats without ``species``: an ``arrays['mtp_type']`` column, or ``info['mtp_types']``
   (the convention of ``../shared/data/sus2_alloy_dft_split_*.extxyz``); otherwise a
   :class:`~sus2md.errors.UsageError` asks for the species list.

Virial convention (SPEC-sus2 6.3): ``W = -dE/dstrain`` in eV, equal to ``.cfg`` ``PlusStress``;
ASE stress is ``sigma = -W / V`` (eV/Å^3, positive = tensile), so ``W = -sigma * V``.
"""
from __future__ import annotations

from collections.abc import Sequence
from os import PathLike
from pathlib import Path

import ase.io
import numpy as np
from ase import Atoms
from ase.io.formats import string2index

from sus2md.errors import DataFileError, UnknownSpeciesError, UsageError
from sus2md.io.cfg import _labels, _ordinal, _species_numbers, _species_to_types, read_cfg, types_beyond_model

__all__ = ["load_frames", "species_index", "labels", "check_frames"]

IndexArg = int | slice | str


def species_index(atoms: Atoms, species: Sequence[str], source: str = "structure") -> np.ndarray:
    """0-based index into ``species`` of every atom's element.

    Args:
        atoms: N atoms.
        species: the model's element symbols in type order, e.g. ``["Cu", "Se"]``.
        source: name used in the error message (usually the file name).

    Returns:
        (N,) int64 array with ``species[out[i]] == atoms[i].symbol``.

    Raises:
        UnknownSpeciesError: some elements are not in ``species`` (all of them are named).
        UsageError: ``species`` holds a non-element or a duplicate.
    """
    return _species_to_types(atoms, species, source)


def labels(atoms: Atoms) -> dict:
    """The reference labels of one frame in a uniform shape.

    Reads stored results only (a calculator is never run).

    Returns:
        ``{"energy": float | None`` (eV, total), ``"forces": (N, 3) float64 | None`` (eV/Å),
        ``"virial_eV": (3, 3) float64 | None`` (eV)``}``. The virial is ``info['virial_eV']``
        when present (``.cfg`` PlusStress), else ``-stress_3x3 * |det cell|`` from an ASE stress
        label; it is None when neither exists or the cell has no volume.
    """
    return _labels(atoms)


def check_frames(frames: Sequence[Atoms], n_species: int | None = None, species: Sequence[str] | None = None,
                 source: str = "frames") -> None:
    """Check that a model can evaluate ``frames``: finite positions and cells, periodic lattice
    vectors that span a volume (area, length), and, with ``n_species``, every
    ``arrays['mtp_type']`` one of the model's species.

    Runs where frames meet a model (:func:`load_frames`, :func:`sus2md.model.evaluate_frames`,
    the grade's basis), so a data set made for another model or a broken cell is a sentence,
    not an index or linear-algebra error deep in the potential.  Configurations without atoms
    are allowed (``.cfg`` ``Size 0``).

    Raises:
        UnknownSpeciesError: a type beyond ``n_species``: names ``source``, the first such
            configuration, its types, the model's species count and the fix, and counts the
            other configurations affected.
        StructureError: a non-finite position or cell, or a degenerate periodic cell.
        UsageError: a frame without ``arrays['mtp_type']``.
    """
    from sus2md.io.structures import validate_structure  # io.structures imports this module

    for k, a in enumerate(frames):
        if len(a):
            validate_structure(a, min_distance_A=0.0, source=f"{source}: the {_ordinal(k + 1)} configuration")
    if n_species is None:
        return
    for k, a in enumerate(frames):
        if "mtp_type" not in a.arrays:
            raise UsageError(f"{source}: the {_ordinal(k + 1)} configuration has no arrays['mtp_type'] (model types); "
                             f"read data with sus2md.model.load_frames_for or sus2md.io.data.load_frames")
    hits = [(k, np.asarray(a.arrays["mtp_type"])) for k, a in enumerate(frames)]
    hits = [(k, t[(t >= n_species) | (t < 0)]) for k, t in hits]
    hits = [(k, bad) for k, bad in hits if bad.size]
    if not hits:
        return
    k, bad = hits[0]
    message = types_beyond_model(sorted(set(bad.tolist())), n_species, species, k, from_cfg=False)
    if len(hits) > 1:
        top = max(int(b.max()) for _, b in hits)
        message += f" ({len(hits)} of {len(frames)} configurations have such types, up to type {top})"
    raise UnknownSpeciesError(f"{source}: {message}")


def _select(frames: list[Atoms], index: IndexArg, path: Path) -> list[Atoms]:
    idx = string2index(index) if isinstance(index, str) else index
    if isinstance(idx, slice):
        return frames[idx]
    try:
        return [frames[idx]]
    except IndexError:
        raise UsageError(f"{path}: index {index} is out of range for {len(frames)} configurations") from None
    except TypeError:
        raise UsageError(f"{path}: index {index!r} is not an index; give an int, a slice or a string such as "
                         f"':', '-1' or '0:100:2'") from None


def _read_with_ase(path: Path, index: IndexArg) -> list[Atoms]:
    try:
        result = ase.io.read(path, index=index)
    except Exception as exc:  # ASE raises many types for unreadable files
        raise DataFileError(path, None, f"could not be read by ASE ({type(exc).__name__}: {exc}); "
                                        f"use .cfg or a format ASE reads, such as extxyz") from None
    return list(result) if isinstance(result, list) else [result]


def _types_without_species(atoms: Atoms, k: int, path: Path) -> np.ndarray:
    if "mtp_type" in atoms.arrays:
        return np.asarray(atoms.arrays["mtp_type"], dtype=np.int64)
    stored = atoms.info.get("mtp_types")
    if stored is not None:
        types = np.asarray(stored, dtype=np.int64).reshape(-1)
        if types.shape == (len(atoms),) and (types >= 0).all():
            return types
        raise DataFileError(path, None, f"frame {k}: info['mtp_types'] has {types.size} entries for "
                                        f"{len(atoms)} atoms (or negative types); fix it or pass species")
    elements = ", ".join(dict.fromkeys(atoms.get_chemical_symbols()))
    raise UsageError(f"{path.name}: elements {elements} need a species list to become model types; "
                     f"pass species (the model's elements in type order, e.g. ['Cu', 'Se'])")


def load_frames(path: str | PathLike, species: Sequence[str] | None = None,
                index: IndexArg = ":", n_species: int | None = None) -> list[Atoms]:
    """Read a labelled data set: ``.cfg`` (by suffix) or any format ASE reads (extxyz, ...).

    Args:
        path: the file.
        species: the model's element symbols in type order (index = type).
        index: which frames, as for :func:`ase.io.read` (``":"``, ``"-1"``, ``"0:100:2"``, an
            int or a slice).
        n_species: the model's species count: every type must be below it (checked for the
            whole file; a ``.cfg`` error names the line). Pass it whenever the frames are for a
            model, also when ``species`` is None (a model that names no elements).

    Returns:
        Atoms (Å, eV, eV/Å, ASE stress in eV/Å^3), each with ``arrays['mtp_type']`` (int64,
        (N,)); see the module docstring for where the types come from.

    Raises:
        UsageError: the file does not exist, or types cannot be assigned without ``species``.
        UnknownSpeciesError: an element is not in ``species``, or a type is beyond ``n_species``.
        DataFileError: the file is malformed, unreadable or empty.
        StructureError: a configuration has non-finite positions or a degenerate periodic cell.
    """
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"file not found: {path}")
    if species is not None:
        _species_numbers(species)  # validate before reading a large file
        if n_species is not None and len(species) != n_species:
            raise UsageError(f"{len(species)} species names given ({', '.join(species)}) but the model has "
                             f"{n_species} species")
    if path.suffix.lower() == ".cfg":
        frames = _select(read_cfg(path, species, n_species=n_species), index, path)
        check_frames(frames, source=str(path))  # the reader checked the types
        return frames
    if path.stat().st_size == 0:
        raise DataFileError(path, None, "the file is empty; expected labelled configurations (.cfg or extxyz)")
    frames = _read_with_ase(path, index)
    if species is not None:
        # one error naming every unknown element of the whole file, not just the first frame's
        present = dict.fromkeys(z for atoms in frames for z in np.unique(atoms.numbers).tolist())
        species_index(Atoms(numbers=list(present)), species, source=path.name)
    for k, atoms in enumerate(frames):
        if species is not None:
            types = species_index(atoms, species, source=path.name)
        else:
            types = _types_without_species(atoms, k, path)
        atoms.set_array("mtp_type", types)
    check_frames(frames, n_species, species, source=str(path))
    return frames
