"""Read and write MLIP ``.cfg`` data sets (the training/test format of MLIP-2 and SUS2-MLIP).

One configuration::

    BEGIN_CFG
     Size
        2
     Supercell                       <- 1-3 lattice rows in Å; absent = non-periodic
        3.6 0.0 0.0
        ...
     AtomData:  id type cartes_x cartes_y cartes_z fx fy fz
        1 0  0.0 0.0 0.0  0.1 0.0 0.0
        ...
     Energy
        -7.5                         <- total energy of the cell, eV
     PlusStress:  xx yy zz yz xz xy
        1.0 1.0 1.0 0.0 0.0 0.0      <- virial W = -dE/d(strain), eV (SPEC-sus2 6.3)
     EnergyWeight
        1.0
     Feature   config_type  bulk
    END_CFG

Reading gives one :class:`ase.Atoms` per configuration:

* ``cell`` = the ``Supercell`` rows, ``pbc[a]`` = row ``a`` is non-zero (MLIP's rule: a zero
  row is a non-periodic direction; rows not written are zero); positions are Cartesian Å and
  are not wrapped. ``direct_x/y/z`` columns are converted to Cartesian.
* ``arrays['mtp_type']`` (int64, (N,)) = the 0-based ``type`` column. It is authoritative.
  Element symbols come from ``species[type]`` when a species list is given; otherwise they are
  placeholders with atomic number ``type + 1`` (type 0 -> H, type 1 -> He, ...), so that distinct
  types stay distinct and ``get_atomic_numbers() - 1 == mtp_type``. Placeholder masses are
  meaningless: pass ``species`` before running dynamics.
* labels in a :class:`~ase.calculators.singlepoint.SinglePointCalculator`: energy (eV),
  forces (eV/Å), and, for 3D-periodic cells only, stress in ASE's convention
  ``sigma = -W / V`` (eV/Å^3, Voigt xx yy zz yz xz xy, positive = tensile, ``V = |det cell|``).
* ``info['virial_eV']`` ((3, 3) float64, symmetric, eV) = the ``PlusStress`` W itself, so the
  label survives for cells that are not 3D-periodic.
* ``Feature name value`` lines -> ``info[name] = value`` (a string, kept verbatim; repeated
  names join with newlines as in MLIP); ``...Weight`` fields (``EnergyWeight`` etc.) ->
  ``info[field] = float``; the optional ``site_en`` and ``charge`` columns ->
  ``arrays['site_en']`` / ``arrays['charge']``.

Writing inverts all of that. Numbers are written with Python's shortest round-trip ``repr``,
so a write -> read cycle reproduces every float bit for bit. The parser works on whole
AtomData blocks with numpy and reads the 3.8 MB / 2417-configuration alloy test set in well
under a second. Any malformed input raises :class:`~sus2md.errors.DataFileError` with the file,
the 1-based line, what is wrong and what to do.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from itertools import chain
from os import PathLike
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.data import atomic_numbers, chemical_symbols
from ase.stress import voigt_6_to_full_3x3_stress

from sus2md.errors import DataFileError, UnknownSpeciesError, UsageError

__all__ = ["read_cfg", "write_cfg"]

log = logging.getLogger(__name__)

_NUM_START = frozenset("0123456789+-.")
_POS_CART = ("cartes_x", "cartes_y", "cartes_z")
_POS_DIRECT = ("direct_x", "direct_y", "direct_z")
_FORCE_COLS = ("fx", "fy", "fz")
_EXTRA_COLS = ("site_en", "charge")
_KNOWN_COLS = ("id", "type") + _POS_CART + _POS_DIRECT + _FORCE_COLS + _EXTRA_COLS
_STRESS_ORDER = ("xx", "yy", "zz", "yz", "xz", "xy")
_STRESS_INDEX = {"xx": (0, 0), "yy": (1, 1), "zz": (2, 2), "yz": (1, 2), "xz": (0, 2), "xy": (0, 1)}
_WEIGHT_FIELD = re.compile(r"^[A-Za-z]+Weight$")
#: info keys that are written as .cfg fields of their own, never as Feature lines
_RESERVED_INFO = frozenset({"virial_eV"})
#: largest type that has a placeholder element (atomic number type + 1 <= 118)
_MAX_PLACEHOLDER_TYPE = len(chemical_symbols) - 2
_FIELDS_HINT = "Size, Supercell, AtomData:, Energy, PlusStress:, Feature, Features:, <name>Weight or END_CFG"

PathArg = str | PathLike


# --------------------------------------------------------------------------------------------
# species helpers (public versions live in sus2md.io.data)


def _species_numbers(species: Sequence[str]) -> np.ndarray:
    """Atomic numbers of a model species list (index = type); UsageError for bad entries."""
    numbers = []
    for k, name in enumerate(species):
        if name not in atomic_numbers or name == "X":
            raise UsageError(f"species[{k}] = {name!r} is not an element symbol; species must list "
                             f"element symbols in the model's type order, e.g. ['Cu', 'Se']")
        numbers.append(atomic_numbers[name])
    seen: set[str] = set()
    for name in species:
        if name in seen:
            raise UsageError(f"species lists {name} twice; each element must appear once (index = type)")
        seen.add(name)
    return np.asarray(numbers, dtype=np.int64)


def _format_species(species: Sequence[str]) -> str:
    return "[" + ", ".join(species) + "]"


def _species_to_types(atoms: Atoms, species: Sequence[str], source: str) -> np.ndarray:
    """Map ``atoms``' element symbols to 0-based indices into ``species``."""
    table = {z: t for t, z in enumerate(_species_numbers(species).tolist())}
    numbers = atoms.get_atomic_numbers()
    unknown = [int(z) for z in dict.fromkeys(numbers.tolist()) if z not in table]
    if unknown and _placeholders(atoms):
        raise UnknownSpeciesError(f"{source}: {_placeholder_message(atoms, species)}")
    if unknown:
        names = ", ".join(chemical_symbols[z] for z in unknown)
        noun = "element" if len(unknown) == 1 else "elements"
        verb = "is" if len(unknown) == 1 else "are"
        raise UnknownSpeciesError(
            f"{source}: {noun} {names} {verb} not in the model's species {_format_species(species)}; "
            f"pass the species list the model was trained with (index = type), or use a model "
            f"that knows these elements")
    lookup = np.zeros(max(table) + 1, dtype=np.int64)
    for z, t in table.items():
        lookup[z] = t
    return lookup[numbers]


def _placeholders(atoms: Atoms) -> bool:
    """True for atoms read from a .cfg without species (elements are type + 1 placeholders)."""
    types = atoms.arrays.get("mtp_type")
    return types is not None and len(atoms) > 0 and np.array_equal(atoms.numbers, np.asarray(types) + 1)


def _placeholder_message(atoms: Atoms, species: Sequence[str]) -> str:
    types = sorted(set(np.asarray(atoms.arrays["mtp_type"]).tolist()))
    n = len(species)
    message = (f"the structure comes from a .cfg file, which names no elements, only types "
               f"{', '.join(map(str, types))} (read as placeholder elements type + 1); the model's species are "
               f"{_format_species(species)} (types 0..{n - 1})")
    beyond = [t for t in types if t >= n]
    if beyond:
        what = f"types {', '.join(map(str, beyond))} are" if len(beyond) > 1 else f"type {beyond[0]} is"
        return (message + f"; {what} beyond them: use the model the structure was "
                          f"made for, or renumber the types in this model's species order")
    return message + ("; give the element of each type in type order (structure.species in a protocol, "
                      "--species on the command line)")


def _ordinal(n: int) -> str:
    """1 -> '1st', 2 -> '2nd', 11 -> '11th', 23 -> '23rd'."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def types_beyond_model(bad: Sequence[int], n_species: int, species: Sequence[str] | None, k: int,
                       begin_line: int | None = None, from_cfg: bool = True) -> str:
    """The message for type indices ``bad`` (sorted) beyond a model's ``n_species`` species in the
    ``k``-th (0-based) configuration of a data set: the .cfg reader and
    :func:`sus2md.io.data.check_frames` both use it, so every entry point says the same thing."""
    names = f" {_format_species(species)}" if species else ""
    s = "s" if len(bad) > 1 else ""
    where = f"the {_ordinal(k + 1)} configuration" + (f" (BEGIN_CFG at line {begin_line})" if begin_line else "")
    head = (f"{where} has type{s} {', '.join(str(int(t)) for t in bad)}, beyond the model's {n_species} "
            f"species{names} (types 0..{n_species - 1})")
    if from_cfg:
        fix = (f"a .cfg type indexes the species of the model the data were made for, so these data need a "
               f"model with at least {int(max(bad)) + 1} species: use that model, or renumber the types in "
               f"this model's species order")
    else:
        fix = ("these types come from the file's mtp_type/mtp_types; pass --species (species=[...]: the "
               "model's elements in type order) to map element names to types instead, or use the model the "
               "data were made for")
    return f"{head}; {fix}"


def _labels(atoms: Atoms) -> dict:
    """Energy (eV), forces ((N, 3) eV/Å) and virial ((3, 3) eV) of ``atoms``, or None each.

    Reads stored results only (never triggers a calculation). The virial comes from
    ``info['virial_eV']`` when present, else from the calculator's stress as
    ``W = -sigma * |det cell|`` (SPEC-sus2 6.3), which needs a cell of non-zero volume.
    """
    results = (getattr(atoms.calc, "results", None) or {}) if atoms.calc is not None else {}
    energy = results.get("energy")
    forces = results.get("forces")
    virial = atoms.info.get("virial_eV")
    if virial is not None:
        virial = np.asarray(virial, dtype=np.float64).reshape(3, 3)
    elif results.get("stress") is not None:
        stress = np.asarray(results["stress"], dtype=np.float64)
        if stress.shape == (6,):
            stress = voigt_6_to_full_3x3_stress(stress)
        volume = abs(float(np.linalg.det(atoms.cell.array)))
        if stress.shape == (3, 3) and volume > 1e-12:
            virial = -stress * volume
    return {
        "energy": None if energy is None else float(energy),
        "forces": None if forces is None else np.asarray(forces, dtype=np.float64).reshape(-1, 3),
        "virial_eV": virial,
    }


# --------------------------------------------------------------------------------------------
# reading


def read_cfg(path: PathArg, species: Sequence[str] | None = None, *, n_species: int | None = None) -> list[Atoms]:
    """Read every configuration of an MLIP ``.cfg`` file.

    Args:
        path: the ``.cfg`` file.
        species: the model's element symbols in type order (``species[type]``); when given,
            atoms get these symbols and a type outside ``range(len(species))`` is an error.
            When omitted, symbols are placeholders with atomic number ``type + 1``.
        n_species: the model's species count, for a model that names no elements: a type
            outside ``range(n_species)`` is an error (the file, line and configuration named).

    Returns:
        One :class:`ase.Atoms` per configuration, in file order: positions and cell in Å,
        ``arrays['mtp_type']`` (int64, (N,)), labels in a SinglePointCalculator (energy eV,
        forces eV/Å, stress eV/Å^3 for 3D-periodic cells) and ``info['virial_eV']`` ((3, 3) eV).
        See the module docstring for every field.

    Raises:
        UsageError: the file does not exist, or ``species`` is not a list of element symbols.
        DataFileError: the file is malformed (message names the line).
        UnknownSpeciesError: a type is beyond ``species`` / ``n_species``.
    """
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"file not found: {path}")
    numbers = None if species is None else _species_numbers(species)
    if species is not None and n_species is not None and len(species) != n_species:
        raise UsageError(f"{len(species)} species names given ({', '.join(species)}) but the model has "
                         f"{n_species} species")
    try:
        text = path.read_text()
    except UnicodeDecodeError as exc:
        raise DataFileError(path, None, f"is not a text .cfg file ({exc.reason} at byte {exc.start})") from None
    return _CfgParser(path, text.splitlines(), species, numbers, n_species).parse()


class _CfgParser:
    """Line-oriented parser; ``self.lines[i]`` is 1-based line ``i + 1`` of the file."""

    def __init__(self, path: Path, lines: list[str], species, numbers, n_species: int | None = None):
        self.path = path
        self.lines = lines
        self.species = None if species is None else list(species)
        self.numbers = numbers
        self.n_species = len(self.species) if self.species is not None else n_species
        self.n_read = 0  # configurations completed so far (names the configuration in messages)

    def error(self, i: int, message: str) -> DataFileError:
        return DataFileError(self.path, i + 1, message)

    def parse(self) -> list[Atoms]:
        frames: list[Atoms] = []
        lines, n, i = self.lines, len(self.lines), 0
        while i < n:
            s = lines[i].strip()
            if not s:
                i += 1
            elif s.split()[0] == "BEGIN_CFG":
                atoms, i = self.config(i)
                frames.append(atoms)
                self.n_read = len(frames)
            else:
                raise self.error(i, f"expected BEGIN_CFG, found {s[:40]!r}; text between configurations "
                                    f"is not allowed in a .cfg file")
        if not frames:
            raise DataFileError(self.path, None, "contains no configurations (no BEGIN_CFG line); "
                                                 "is this an MLIP .cfg file?")
        return frames

    # -- small readers ------------------------------------------------------------------------

    def numeric_rows(self, i: int) -> tuple[list[int], int]:
        """Indices of the consecutive numeric lines from ``i`` (blank lines skipped), next index."""
        lines, n, rows = self.lines, len(self.lines), []
        while i < n:
            s = lines[i].lstrip()
            if not s:
                i += 1
            elif s[0] in _NUM_START:
                rows.append(i)
                i += 1
            else:
                break
        return rows, i

    def value_tokens(self, i: int, rest: str, field: str) -> tuple[list[str], int, int]:
        """Tokens of a field's value: the rest of its line, or the next non-blank line."""
        if rest:
            return rest.split(), i, i + 1
        j = i + 1
        while j < len(self.lines) and not self.lines[j].strip():
            j += 1
        if j == len(self.lines):
            raise self.error(i, f"{field} has no value before the end of the file")
        return self.lines[j].split(), j, j + 1

    def scalar(self, i: int, rest: str, field: str) -> tuple[float, int]:
        toks, line, nxt = self.value_tokens(i, rest, field)
        if line != i and toks[0][0] not in _NUM_START and toks[0].lower() not in ("nan", "inf", "-inf"):
            raise self.error(i, f"{field} has no value: the next line is {self.lines[line].strip()[:40]!r}, "
                                f"expected a number")
        if len(toks) != 1:
            raise self.error(line, f"{field} expects one number, found {len(toks)} values {' '.join(toks)[:40]!r}")
        try:
            value = float(toks[0])
        except ValueError:
            raise self.error(line, f"{field} value {toks[0]!r} is not a number") from None
        if not np.isfinite(value):
            raise self.error(line, f"{field} is {toks[0]}; a label must be a finite number")
        return value, nxt

    # -- one configuration --------------------------------------------------------------------

    def config(self, begin: int) -> tuple[Atoms, int]:
        lines, n = self.lines, len(self.lines)
        cfg: dict = {"begin": begin, "size": None, "cell": None, "atoms": None, "energy": None,
                     "virial": None, "info": {}, "seen": {}}
        i = begin + 1
        while True:
            if i >= n:
                raise self.error(n - 1, f"the configuration that starts at line {begin + 1} has no END_CFG "
                                        f"before the end of the file; the file is truncated or END_CFG is missing")
            s = lines[i].strip()
            if not s:
                i += 1
                continue
            parts = s.split(None, 1)
            key, rest = parts[0], (parts[1] if len(parts) > 1 else "")
            if key == "END_CFG":
                return self.build(cfg, i), i + 1
            if key == "BEGIN_CFG":
                raise self.error(i, f"BEGIN_CFG found inside the configuration that starts at line {begin + 1}; "
                                    f"add the missing END_CFG before line {i + 1}")
            i = self.field(cfg, i, key, rest)

    def once(self, cfg: dict, i: int, name: str) -> None:
        if name in cfg["seen"]:
            raise self.error(i, f"{name} appears twice in one configuration (first at line {cfg['seen'][name] + 1}); "
                                f"each configuration needs its own BEGIN_CFG ... END_CFG")
        cfg["seen"][name] = i

    def field(self, cfg: dict, i: int, key: str, rest: str) -> int:
        """Parse the field starting at line ``i``; return the index of the next line to read."""
        if key == "Size":
            self.once(cfg, i, "Size")
            toks, line, nxt = self.value_tokens(i, rest, "Size")
            if len(toks) != 1 or not toks[0].isdigit():
                raise self.error(line, f"Size must be a non-negative integer, found {' '.join(toks)[:40]!r}")
            cfg["size"] = (int(toks[0]), line)
            return nxt
        if key in ("Supercell", "SuperCell"):
            self.once(cfg, i, "Supercell")
            return self.supercell(cfg, i, rest)
        if key in ("AtomData:", "Atomic_data:"):
            self.once(cfg, i, "AtomData")
            return self.atom_data(cfg, i, rest)
        if key == "Energy":
            self.once(cfg, i, "Energy")
            cfg["energy"], nxt = self.scalar(i, rest, "Energy")
            return nxt
        if key == "PlusStress:":
            self.once(cfg, i, "PlusStress")
            return self.plus_stress(cfg, i, rest)
        if key == "Feature":
            name_value = rest.split(None, 1)
            if not name_value:
                raise self.error(i, "Feature line has no name; write 'Feature <name> <value>'")
            name, value = name_value[0], (name_value[1] if len(name_value) > 1 else "")
            info = cfg["info"]
            info[name] = f"{info[name]}\n{value}" if isinstance(info.get(name), str) else value
            return i + 1
        if key == "Features:":
            names = rest.split()
            toks, line, nxt = self.value_tokens(i, "", "Features:")
            if len(toks) != len(names):
                raise self.error(line, f"Features: names {len(names)} features but this line has {len(toks)} values")
            cfg["info"].update(zip(names, toks))
            return nxt
        if _WEIGHT_FIELD.match(key):
            self.once(cfg, i, key)
            cfg["info"][key], nxt = self.scalar(i, rest, key)
            return nxt
        if key in ("Stress:", "Virial:"):
            raise self.error(i, f"field {key!r} of old MLIP versions is not supported; write the virial as "
                                f"'PlusStress:  xx yy zz yz xz xy' in eV (W = -dE/dstrain)")
        if key[0] in _NUM_START:
            raise self.error(i, f"unexpected numeric line {key!r}...; expected a field name ({_FIELDS_HINT})")
        raise self.error(i, f"unknown field {key!r}; expected {_FIELDS_HINT}")

    def supercell(self, cfg: dict, i: int, rest: str) -> int:
        if rest:
            raise self.error(i, "Supercell rows go on the lines after 'Supercell', one lattice vector (Å) per line")
        rows, nxt = self.numeric_rows(i + 1)
        if not 1 <= len(rows) <= 3:
            raise self.error(i, f"Supercell has {len(rows)} rows; expected 1 to 3 rows of 3 numbers (lattice vectors, Å)")
        cell = np.zeros((3, 3))
        for a, j in enumerate(rows):
            toks = self.lines[j].split()
            if len(toks) != 3:
                raise self.error(j, f"Supercell row has {len(toks)} numbers, expected 3 (x y z of a lattice vector, Å)")
            try:
                cell[a] = [float(t) for t in toks]
            except ValueError:
                raise self.error(j, f"Supercell row {self.lines[j].strip()!r} contains a non-number") from None
        if not np.isfinite(cell).all():
            raise self.error(rows[0], "Supercell contains nan or inf; lattice vectors must be finite")
        cfg["cell"] = cell
        return nxt

    def atom_columns(self, i: int, rest: str, first_row: int | None) -> tuple[list[str], str]:
        """Column names from the AtomData header (or inferred from the first row) + description."""
        cols = rest.split()
        if not cols:
            ncol = len(self.lines[first_row].split()) if first_row is not None else 0
            cols = {5: ["id", "type", *_POS_CART], 8: ["id", "type", *_POS_CART, *_FORCE_COLS]}.get(ncol)
            if cols is None:
                line = i if first_row is None else first_row
                raise self.error(line, f"AtomData row has {ncol} columns, expected 5 or 8 (id type x y z [fx fy fz])")
            return cols, "5 or 8 (id type x y z [fx fy fz])"
        for c in cols:
            if c not in _KNOWN_COLS:
                raise self.error(i, f"AtomData column {c!r} is unknown; known columns: {' '.join(_KNOWN_COLS)}")
        if len(set(cols)) != len(cols):
            raise self.error(i, "AtomData header names a column twice")
        has = set(cols)
        cart, direct = has.issuperset(_POS_CART), has.issuperset(_POS_DIRECT)
        if cart == direct or not (has & set(_POS_CART + _POS_DIRECT)) <= set(_POS_CART if cart else _POS_DIRECT):
            raise self.error(i, "AtomData header must name positions as cartes_x cartes_y cartes_z "
                                "(or direct_x direct_y direct_z), exactly one set")
        if has & set(_FORCE_COLS) and not has.issuperset(_FORCE_COLS):
            raise self.error(i, "AtomData header names some of fx fy fz but not all three")
        return cols, f"{len(cols)} ({' '.join(cols)})"

    def atom_data(self, cfg: dict, i: int, rest: str) -> int:
        rows, nxt = self.numeric_rows(i + 1)
        cols, expected = self.atom_columns(i, rest, rows[0] if rows else None)
        ncol = len(cols)
        split = [self.lines[j].split() for j in rows]
        for j, toks in zip(rows, split):
            if len(toks) != ncol:
                raise self.error(j, f"AtomData row has {len(toks)} columns, expected {expected}")
        try:
            block = np.array(list(chain.from_iterable(split)), dtype=np.float64).reshape(len(rows), ncol)
        except ValueError:
            self.raise_bad_number(rows, split, cols)
        if not np.isfinite(block).all():
            r = int(np.nonzero(~np.isfinite(block).all(axis=1))[0][0])
            raise self.error(rows[r], "AtomData row contains nan or inf; positions and forces must be finite")
        cfg["atoms"] = (cols, block, rows, nxt, i)
        return nxt

    def raise_bad_number(self, rows: list[int], split: list[list[str]], cols: list[str]) -> None:
        for j, toks in zip(rows, split):
            for c, tok in zip(cols, toks):
                try:
                    float(tok)
                except ValueError:
                    raise self.error(j, f"AtomData value {tok!r} in column {c} is not a number") from None
        raise AssertionError("unreachable: numpy rejected a block that float() accepts")  # pragma: no cover

    def plus_stress(self, cfg: dict, i: int, rest: str) -> int:
        names = rest.split() or list(_STRESS_ORDER)
        if sorted(names) != sorted(_STRESS_ORDER):
            raise self.error(i, f"PlusStress header must name the six components xx yy zz yz xz xy once each, "
                                f"found {' '.join(names)!r}")
        toks, line, nxt = self.value_tokens(i, "", "PlusStress:")
        if len(toks) != 6:
            raise self.error(line, f"PlusStress has {len(toks)} values, expected 6 ({' '.join(names)}, eV)")
        try:
            values = [float(t) for t in toks]
        except ValueError:
            raise self.error(line, f"PlusStress values {' '.join(toks)[:60]!r} contain a non-number") from None
        if not np.isfinite(values).all():
            raise self.error(line, "PlusStress contains nan or inf; a label must be finite")
        w = np.zeros((3, 3))
        for name, v in zip(names, values):
            a, b = _STRESS_INDEX[name]
            w[a, b] = w[b, a] = v
        cfg["virial"] = w
        return nxt

    # -- assemble -----------------------------------------------------------------------------

    def build(self, cfg: dict, end: int) -> Atoms:
        begin = cfg["begin"]
        if cfg["atoms"] is None:
            if cfg["size"] is not None and cfg["size"][0] == 0:
                cfg["atoms"] = (["id", "type", *_POS_CART], np.zeros((0, 5)), [], end, end)
            else:
                raise self.error(end, f"the configuration that starts at line {begin + 1} has no AtomData block")
        cols, block, rows, after, header = cfg["atoms"]
        if cfg["size"] is not None and cfg["size"][0] != len(rows):
            size, size_line = cfg["size"]
            if len(rows) < size:
                raise self.error(after, f"Size says {size} atoms but {len(rows)} AtomData rows were found "
                                        f"before line {after + 1}")
            raise self.error(rows[size], f"Size says {size} atoms but {len(rows)} AtomData rows follow the "
                                         f"header at line {header + 1}; fix Size (line {size_line + 1}) or the rows")
        col = {c: k for k, c in enumerate(cols)}
        types = self.types(block, col, rows)
        self.check_range(types, rows, begin)
        if "id" in col:
            ids = block[:, col["id"]]
            bad = np.nonzero(ids != np.arange(1, len(rows) + 1))[0]
            if bad.size:
                r = int(bad[0])
                raise self.error(rows[r], f"AtomData id is {ids[r]:g} but row {r + 1} must have id {r + 1}; "
                                          f"ids count 1, 2, 3, ... in order")
        cell = np.zeros((3, 3)) if cfg["cell"] is None else cfg["cell"]
        pbc = np.any(cell != 0.0, axis=1)
        if "cartes_x" in col:
            positions = block[:, [col[c] for c in _POS_CART]]
        else:
            if abs(np.linalg.det(cell)) < 1e-12:
                raise self.error(header, "direct_x/y/z (fractional) positions need a 3D-periodic Supercell")
            positions = block[:, [col[c] for c in _POS_DIRECT]] @ cell
        numbers = types + 1 if self.numbers is None else self.numbers[types]
        atoms = Atoms(numbers=numbers, positions=positions, cell=cell, pbc=pbc)
        atoms.new_array("mtp_type", types)
        for c in _EXTRA_COLS:
            if c in col:
                atoms.new_array(c, block[:, col[c]].copy())
        atoms.info.update(cfg["info"])
        results = {}
        if cfg["energy"] is not None:
            results["energy"] = cfg["energy"]
        if "fx" in col:
            results["forces"] = block[:, [col[c] for c in _FORCE_COLS]]
        if cfg["virial"] is not None:
            w = cfg["virial"]
            atoms.info["virial_eV"] = w
            volume = abs(float(np.linalg.det(cell)))
            if pbc.all() and volume > 0.0:
                results["stress"] = -w[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]] / volume
        if results:
            atoms.calc = SinglePointCalculator(atoms, **results)
        return atoms

    def types(self, block: np.ndarray, col: dict, rows: list[int]) -> np.ndarray:
        if "type" not in col:
            return np.zeros(len(rows), dtype=np.int64)
        t = block[:, col["type"]]
        with np.errstate(invalid="ignore"):  # nan/huge values are reported by the checks below
            types = t.astype(np.int64)
        checks = [
            (types != t, "AtomData type {v} is not an integer; types are 0-based species indices"),
            (types < 0, "AtomData type {v} is negative; types are 0-based species indices"),
        ]
        if self.n_species is None:
            checks.append((types > _MAX_PLACEHOLDER_TYPE,
                           "AtomData type {v} has no placeholder element (types above "
                           + str(_MAX_PLACEHOLDER_TYPE) + " need a species list); pass species"))
        for mask, message in checks:
            bad = np.nonzero(mask)[0]
            if bad.size:
                r = int(bad[0])
                raise self.error(rows[r], message.format(v=f"{t[r]:g}"))
        return types

    def check_range(self, types: np.ndarray, rows: list[int], begin: int) -> None:
        """Types beyond the model's species: one message naming them all (first bad row's line)."""
        if self.n_species is None:
            return
        bad = np.nonzero(types >= self.n_species)[0]
        if bad.size:
            message = types_beyond_model(sorted(set(types[bad].tolist())), self.n_species, self.species,
                                         self.n_read, begin + 1)
            raise UnknownSpeciesError(f"{self.path}:{rows[int(bad[0])] + 1}: {message}")


# --------------------------------------------------------------------------------------------
# writing


def write_cfg(path: PathArg, frames: Atoms | Iterable[Atoms], species: Sequence[str] | None = None) -> None:
    """Write configurations to an MLIP ``.cfg`` file (overwrites ``path``).

    Args:
        path: output file.
        frames: one Atoms or an iterable of them. Types come from ``arrays['mtp_type']`` when
            present, else from mapping element symbols through ``species``. Positions, cell and
            forces in Å and eV/Å; energy in eV. ``PlusStress`` (eV) is ``info['virial_eV']``
            when present, else ``W = -stress * |det cell|`` from the calculator's stress.
            ``info`` entries that are strings or numbers become ``Feature`` lines (keys with
            whitespace cannot be and are skipped with a log warning); ``info[...Weight]``
            numbers become weight fields. Only periodic directions get a Supercell row (zero
            rows mark non-periodic ones, as MLIP reads them).
        species: the model's element symbols in type order.

    Raises:
        UsageError: a frame has neither ``mtp_type`` nor a species list to map its elements,
            non-finite positions, a periodic direction with a zero lattice vector, or the file
            cannot be written.
        UnknownSpeciesError: an element is not in ``species``.
    """
    if isinstance(frames, Atoms):
        frames = [frames]
    n_species = None if species is None else len(_species_numbers(species))
    chunks = [_format_config(atoms, k, species, n_species) for k, atoms in enumerate(frames)]
    try:
        Path(path).write_text("".join(chunks))
    except OSError as e:
        raise UsageError(f"cannot write {path}: {e.strerror or e}") from None


def _write_types(atoms: Atoms, k: int, species, n_species) -> np.ndarray:
    if "mtp_type" in atoms.arrays:
        types = np.asarray(atoms.arrays["mtp_type"], dtype=np.int64)
        if (types < 0).any() or (n_species is not None and (types >= n_species).any()):
            raise UsageError(f"frame {k}: arrays['mtp_type'] holds {int(types.min())}..{int(types.max())}, outside "
                             f"0..{(n_species or 1) - 1}; types must index the species list")
        return types
    if species is None:
        raise UsageError(f"frame {k} has no arrays['mtp_type'] and no species list was given; pass "
                         f"species=[...] (the model's elements in type order) to map elements to .cfg types")
    return _species_to_types(atoms, species, f"frame {k}")


def _num(x: float) -> str:
    return f"{x!r:>18}"


def _format_config(atoms: Atoms, k: int, species, n_species) -> str:
    types = _write_types(atoms, k, species, n_species)
    positions = atoms.get_positions()
    if not np.isfinite(positions).all():
        raise UsageError(f"frame {k} has nan or inf positions; it cannot be written")
    lab = _labels(atoms)
    out = ["BEGIN_CFG", " Size", f"    {len(atoms)}"]
    cell = atoms.cell.array.copy()
    pbc = np.asarray(atoms.pbc, dtype=bool)
    cell[~pbc] = 0.0
    if (pbc & ~np.any(cell != 0.0, axis=1)).any():
        raise UsageError(f"frame {k} is periodic along a direction whose lattice vector is zero; set the cell "
                         f"or turn pbc off there")
    if pbc.any():
        out.append(" Supercell")
        count = int(np.nonzero(pbc)[0].max()) + 1
        out.extend("   " + " ".join(_num(v) for v in row) for row in cell[:count].tolist())
    columns = ["id", "type", *_POS_CART]
    data = [positions]
    extras = [c for c in _EXTRA_COLS if c in atoms.arrays]
    if "site_en" in extras:
        columns.append("site_en")
        data.append(np.asarray(atoms.arrays["site_en"], dtype=np.float64).reshape(-1, 1))
    if lab["forces"] is not None:
        columns.extend(_FORCE_COLS)
        data.append(lab["forces"])
    if "charge" in extras:
        columns.append("charge")
        data.append(np.asarray(atoms.arrays["charge"], dtype=np.float64).reshape(-1, 1))
    out.append(" AtomData:  " + " ".join(columns))
    table = np.hstack(data).tolist()
    out.extend(f"{i + 1:>7d} {t:>4d} " + " ".join(_num(v) for v in row)
               for i, (t, row) in enumerate(zip(types.tolist(), table)))
    if lab["energy"] is not None:
        out += [" Energy", "   " + _num(lab["energy"])]
    if lab["virial_eV"] is not None:
        w = lab["virial_eV"]
        out.append(" PlusStress:  " + " ".join(_STRESS_ORDER))
        out.append("   " + " ".join(_num(float(w[_STRESS_INDEX[c]])) for c in _STRESS_ORDER))
    out.extend(_info_lines(atoms.info, k))
    out.append("END_CFG\n\n")
    return "\n".join(out)


def _info_lines(info: dict, k: int) -> list[str]:
    out = []
    for key, value in info.items():
        if key in _RESERVED_INFO:
            continue
        if isinstance(value, np.generic):
            value = value.item()
        if _WEIGHT_FIELD.match(str(key)) and isinstance(value, (int, float)) and not isinstance(value, bool):
            out += [f" {key}", "   " + _num(float(value))]
            continue
        if not isinstance(value, (str, int, float)):
            continue  # arrays, dicts ... have no .cfg representation
        if not key or any(ch.isspace() for ch in str(key)):
            log.warning("frame %d: info key %r has whitespace and is not written as a .cfg Feature", k, key)
            continue
        text = value if isinstance(value, str) else repr(value)
        out.extend(f" Feature   {key}\t{part}" for part in text.split("\n"))
    return out
