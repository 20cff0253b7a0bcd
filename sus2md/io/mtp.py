"""Read and write SUS2-MLIP v1.1 ``.mtp`` model files (SPEC-sus2 section 2).

The file is line oriented ``key = value``; lists are brace-enclosed on one line; the
``radial_coeffs`` block holds one ``0-0`` sub-block of ``radial_funcs_count`` rows of
``R + S`` numbers.  Numbers are written with ``%.15e`` in the key order the authors'
trainer (``MLMTPR::Load``) and LAMMPS ``pair_style sus2mtp`` read, so every file written
here runs in their engines.

Element names: ``.mtp`` files carry none.  sus2md keeps them, without adding a key the
authors' readers would trip on, as a whitespace-free suffix of ``potential_name``:
``potential_name = MTP_l2k3[Al,Ni,Cu]``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ase.data import chemical_symbols

from sus2md.errors import ModelFileError, UsageError

RADIAL_TYPES = ("RBChebyshev_sss", "RBChebyshev_sss_lmp")
SCALING_MAPS = ("K", "L", "LK")
_SPECIES_SUFFIX = re.compile(r"\[([A-Za-z]{1,3}(?:,[A-Za-z]{1,3})*)\]$")


@dataclass
class MTPFile:
    """Everything a v1.1 ``.mtp`` file holds, as plain numpy arrays (eV, Å).

    Coefficient arrays are ``None`` for an untrained file.
    """

    L: int
    scaling_map: str
    species_count: int
    radial_basis_type: str
    min_dist: float
    max_dist: float
    radial_basis_size: int
    radial_funcs_count: int
    alpha_moments_count: int
    alpha_index_basic: np.ndarray  # (n_basic, 4) int64: mu, a, b, c
    alpha_index_times: np.ndarray  # (n_times, 4) int64: i0, i1, mult, out
    alpha_moment_mapping: np.ndarray  # (n_scal,) int64
    potential_name: str = "MTP"
    scaling: float = 1.0
    potential_tag: str = ""
    shift_coeffs: np.ndarray | None = None  # (S,)
    scal_coeffs: np.ndarray | None = None  # (2*S*S*n_blocks,)
    radial_coeffs: np.ndarray | None = None  # (n_mu, R + S)
    species_coeffs: np.ndarray | None = None  # (S,)
    moment_coeffs: np.ndarray | None = None  # (n_scal,)
    species_names: list[str] | None = None
    source: str | None = field(default=None, compare=False)

    @property
    def n_blocks(self) -> int:
        L1 = self.L + 1
        return {"K": self.radial_funcs_count // L1, "L": L1, "LK": self.radial_funcs_count}[self.scaling_map]

    @property
    def is_trained(self) -> bool:
        return all(
            getattr(self, k) is not None
            for k in ("shift_coeffs", "scal_coeffs", "radial_coeffs", "species_coeffs", "moment_coeffs")
        )

    def parameter_counts(self) -> dict[str, int]:
        """Number of parameters per block, as the authors' trainer counts them."""
        S, R, n_mu = self.species_count, self.radial_basis_size, self.radial_funcs_count
        counts = {
            "shift": S,
            "scaling (alpha, r0)": 2 * S * S * self.n_blocks,
            "radial": n_mu * (R + S),
            "species": S,
            "moment": len(self.alpha_moment_mapping),
        }
        counts["total"] = sum(counts.values())
        return counts

    def copy(self) -> "MTPFile":
        return dataclasses.replace(
            self,
            **{
                f.name: (getattr(self, f.name).copy() if isinstance(getattr(self, f.name), np.ndarray) else getattr(self, f.name))
                for f in dataclasses.fields(self)
            },
        )


# --------------------------------------------------------------------------- reading


class _Reader:
    """Line cursor that knows the file name and the 1-based line number for errors."""

    def __init__(self, path: Path, text: str):
        self.path = path
        self.lines = text.split("\n")
        self.i = 0

    def error(self, message: str, line: int | None = None) -> ModelFileError:
        return ModelFileError(self.path, self.i if line is None else line, message)

    def next_nonblank(self) -> tuple[int, str] | None:
        while self.i < len(self.lines):
            raw = self.lines[self.i].rstrip("\r")
            self.i += 1
            if raw.strip():
                return self.i, raw.strip()
        return None


def _parse_floats(r: _Reader, lineno: int, key: str, value: str) -> np.ndarray:
    v = value.strip()
    if not (v.startswith("{") and v.endswith("}")):
        raise r.error(f"{key}: expected a brace-enclosed list {{a, b, ...}}, got {v[:40]!r}", lineno)
    body = v[1:-1].strip()
    if not body:
        return np.zeros(0)
    try:
        arr = np.array([float(x) for x in body.split(",")], dtype=np.float64)
    except ValueError:
        bad = next(x for x in body.split(",") if not _is_float(x))
        raise r.error(f"{key}: {bad.strip()!r} is not a number", lineno) from None
    if not np.all(np.isfinite(arr)):
        raise r.error(f"{key}: contains NaN or inf", lineno)
    return arr


def _is_float(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def _parse_tuples(r: _Reader, lineno: int, key: str, value: str, width: int) -> np.ndarray:
    v = value.strip()
    if not (v.startswith("{") and v.endswith("}")):
        raise r.error(f"{key}: expected {{{{...}}, {{...}}}}, got {v[:40]!r}", lineno)
    inner = v[1:-1].strip()
    if not inner:
        return np.zeros((0, width), dtype=np.int64)
    groups = re.findall(r"\{([^{}]*)\}", inner)
    if re.sub(r"\{[^{}]*\}", "", inner).replace(",", "").strip():
        raise r.error(f"{key}: malformed tuple list (stray text between braces)", lineno)
    out = np.zeros((len(groups), width), dtype=np.int64)
    for k, g in enumerate(groups):
        parts = [p.strip() for p in g.split(",")]
        if len(parts) != width:
            raise r.error(f"{key}: entry {k} has {len(parts)} numbers, expected {width}", lineno)
        try:
            out[k] = [int(p) for p in parts]
        except (ValueError, OverflowError):  # OverflowError: beyond int64
            raise r.error(f"{key}: entry {k} {{{g}}} holds a non-integer", lineno) from None
    return out


def _parse_ints(r: _Reader, lineno: int, key: str, value: str) -> np.ndarray:
    v = value.strip()
    if not (v.startswith("{") and v.endswith("}")):
        raise r.error(f"{key}: expected a brace-enclosed list, got {v[:40]!r}", lineno)
    body = v[1:-1].strip()
    try:
        return np.array([int(x) for x in body.split(",")] if body else [], dtype=np.int64)
    except (ValueError, OverflowError):  # OverflowError: beyond int64
        raise r.error(f"{key}: holds a non-integer", lineno) from None


_INT_KEYS = {
    "L", "species_count", "radial_basis_size", "radial_funcs_count", "alpha_moments_count",
    "alpha_index_basic_count", "alpha_index_times_count", "alpha_scalar_moments",
}
_FLOAT_KEYS = {"scaling", "min_dist", "max_dist"}
_STR_KEYS = {"potential_name", "scaling_map", "potential_tag", "radial_basis_type", "version"}
_FLOAT_LIST_KEYS = {"shift_coeffs", "scal_coeffs", "species_coeffs", "moment_coeffs"}
_REQUIRED = (
    "L", "scaling_map", "species_count", "radial_basis_type", "min_dist", "max_dist",
    "radial_basis_size", "radial_funcs_count", "alpha_moments_count", "alpha_index_basic_count",
    "alpha_index_basic", "alpha_index_times_count", "alpha_index_times", "alpha_scalar_moments",
    "alpha_moment_mapping",
)


def read_mtp(path: str | Path) -> MTPFile:
    """Read a SUS2 v1.1 ``.mtp`` file.

    Raises :class:`ModelFileError` naming the line and the problem for any invalid file.
    """
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"model file not found: {path}")
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise ModelFileError(path, None, "not a text file (is this a compiled .pt model? use it where a compiled model is accepted)") from None
    r = _Reader(path, text)
    first = r.next_nonblank()
    if first is None or first[1] != "MTP":
        raise r.error("first line must be 'MTP': this is not an .mtp model file", first[0] if first else 1)
    vals: dict[str, object] = {}
    where: dict[str, int] = {}
    radial_rows: list[np.ndarray] = []
    while (item := r.next_nonblank()) is not None:
        lineno, line = item
        if line == "radial_coeffs":
            radial_rows = _read_radial_block(r, vals, lineno)
            where["radial_coeffs"] = lineno
            continue
        if "=" not in line:
            raise r.error(f"expected 'key = value', got {line[:60]!r}", lineno)
        key, value = (s.strip() for s in line.split("=", 1))
        if key in vals:
            raise r.error(f"duplicate key {key!r} (first on line {where[key]})", lineno)
        where[key] = lineno
        vals[key] = _parse_value(r, lineno, key, value)
    version = vals.get("version")
    if version is None:
        raise ModelFileError(path, 2, "missing 'version = 1.1.0'")
    if version != "1.1.0":
        raise ModelFileError(path, where["version"], f"version {version} is not supported (sus2md reads SUS2 v1.1.0 files)")
    for key in _REQUIRED:
        if key not in vals:
            raise ModelFileError(path, None, f"required field {key!r} is missing")
    if radial_rows:
        vals["radial_coeffs"] = np.array(radial_rows)
    for count_key, list_key in _DECLARED_COUNTS:  # a count that disagrees with its list: corrupt or hand-edited
        if count_key in vals and list_key in vals and vals[count_key] != len(vals[list_key]):
            raise ModelFileError(path, where[count_key], f"{count_key} = {vals[count_key]} but {list_key} (line "
                                 f"{where[list_key]}) has {len(vals[list_key])} entries; the file is corrupt or was "
                                 "edited by hand: fix the count or re-export the model")
    mtp = _build(vals)
    _check_consistency(mtp, path, where)
    mtp.source = str(path)
    return mtp


_DECLARED_COUNTS = (("alpha_index_basic_count", "alpha_index_basic"), ("alpha_index_times_count", "alpha_index_times"),
                    ("alpha_scalar_moments", "alpha_moment_mapping"))


def _parse_value(r: _Reader, lineno: int, key: str, value: str) -> object:
    if key in _INT_KEYS:
        try:
            return int(value)
        except ValueError:
            raise r.error(f"{key}: expected an integer, got {value!r}", lineno) from None
    if key in _FLOAT_KEYS:
        try:
            x = float(value)
        except ValueError:
            raise r.error(f"{key}: expected a number, got {value!r}", lineno) from None
        if not np.isfinite(x):
            raise r.error(f"{key}: must be finite, got {value!r}", lineno)
        return x
    if key in _STR_KEYS:
        return value
    if key in _FLOAT_LIST_KEYS:
        return _parse_floats(r, lineno, key, value)
    if key in ("alpha_index_basic", "alpha_index_times"):
        return _parse_tuples(r, lineno, key, value, 4)
    if key == "alpha_moment_mapping":
        return _parse_ints(r, lineno, key, value)
    if key == "E0_":  # accepted by an old trainer; unused by every published model
        return value
    raise r.error(f"unknown key {key!r}", lineno)


def _read_radial_block(r: _Reader, vals: dict, lineno: int) -> list[np.ndarray]:
    n_mu = vals.get("radial_funcs_count")
    if not isinstance(n_mu, int):
        raise r.error("radial_coeffs: radial_funcs_count must be given before it (it is missing or comes later)", lineno)
    item = r.next_nonblank()
    if item is None or item[1] != "0-0":
        raise r.error("radial_coeffs: expected the '0-0' block label", item[0] if item else lineno)
    rows = []
    for k in range(n_mu):
        item = r.next_nonblank()
        if item is None or not item[1].startswith("{"):
            raise r.error(
                f"radial_coeffs: expected {n_mu} rows (radial_funcs_count), found {k}",
                item[0] if item else len(r.lines),
            )
        rows.append(_parse_floats(r, item[0], f"radial_coeffs row {k}", item[1]))
    # Other species-pair blocks (never in published files) are skipped, as LAMMPS does.
    while r.i < len(r.lines) and re.fullmatch(r"\s*(\d+-\d+|\{.*\})\s*", r.lines[r.i].rstrip("\r")):
        r.i += 1
    widths = {len(x) for x in rows}
    if len(widths) != 1:
        raise r.error(f"radial_coeffs: rows have different lengths {sorted(widths)}", lineno)
    return rows


def _build(vals: dict) -> MTPFile:
    name = str(vals.get("potential_name", "MTP"))
    species_names = None
    m = _SPECIES_SUFFIX.search(name)
    if m:
        species_names = m.group(1).split(",")
        name = name[: m.start()] or "MTP"
    return MTPFile(
        L=vals["L"], scaling_map=vals["scaling_map"], species_count=vals["species_count"],
        radial_basis_type=vals["radial_basis_type"], min_dist=vals["min_dist"], max_dist=vals["max_dist"],
        radial_basis_size=vals["radial_basis_size"], radial_funcs_count=vals["radial_funcs_count"],
        alpha_moments_count=vals["alpha_moments_count"], alpha_index_basic=vals["alpha_index_basic"],
        alpha_index_times=vals["alpha_index_times"], alpha_moment_mapping=vals["alpha_moment_mapping"],
        potential_name=name, scaling=float(vals.get("scaling", 1.0)), potential_tag=str(vals.get("potential_tag", "")),
        shift_coeffs=vals.get("shift_coeffs"), scal_coeffs=vals.get("scal_coeffs"),
        radial_coeffs=vals.get("radial_coeffs"), species_coeffs=vals.get("species_coeffs"),
        moment_coeffs=vals.get("moment_coeffs"), species_names=species_names,
    )


def _check_consistency(m: MTPFile, path: Path, where: dict[str, int]) -> None:
    def fail(key: str, msg: str) -> ModelFileError:
        return ModelFileError(path, where.get(key), msg)

    S, L1 = m.species_count, m.L + 1
    if m.L not in (2, 3):
        raise fail("L", f"L = {m.L}: sus2md supports L = 2 or 3")
    if m.scaling_map not in SCALING_MAPS:
        raise fail("scaling_map", f"scaling_map = {m.scaling_map!r}: expected one of K, L, LK")
    if m.radial_basis_type not in RADIAL_TYPES:
        raise fail("radial_basis_type", f"radial_basis_type = {m.radial_basis_type!r}: supported are {', '.join(RADIAL_TYPES)}")
    if m.potential_tag.strip() == "SUS2-SH":
        raise fail("potential_tag", "potential_tag = SUS2-SH (spherical-harmonic model) is not supported; only Cartesian SUS2 v1.1 models are")
    if S < 1:
        raise fail("species_count", f"species_count = {S}: must be >= 1")
    if m.radial_basis_size < 1:
        raise fail("radial_basis_size", f"radial_basis_size = {m.radial_basis_size}: must be >= 1")
    if m.radial_funcs_count < 1 or m.radial_funcs_count % L1:
        raise fail("radial_funcs_count", f"radial_funcs_count = {m.radial_funcs_count}: must be a positive multiple of L+1 = {L1}")
    if not m.max_dist > 0:
        raise fail("max_dist", f"max_dist = {m.max_dist}: the cutoff must be > 0")
    if m.species_names is not None and len(m.species_names) != S:
        raise fail("potential_name", f"potential_name lists {len(m.species_names)} species but species_count = {S}")
    if m.species_names is not None:
        bad = [s for s in m.species_names if s not in chemical_symbols[1:]]
        if bad:
            raise fail("potential_name", f"potential_name lists unknown element symbol(s) {', '.join(bad)}")
    _check_counts(m, fail)
    sizes = {
        "shift_coeffs": S, "scal_coeffs": 2 * S * S * m.n_blocks, "species_coeffs": S,
        "moment_coeffs": len(m.alpha_moment_mapping),
    }
    for key, n in sizes.items():
        arr = getattr(m, key)
        if arr is not None and len(arr) != n:
            raise fail(key, f"{key} has {len(arr)} numbers, expected {n}")
    rc = m.radial_coeffs
    if rc is not None and rc.shape != (m.radial_funcs_count, m.radial_basis_size + S):
        raise fail("radial_coeffs", f"radial_coeffs rows have {rc.shape[1]} numbers, expected radial_basis_size + species_count = {m.radial_basis_size + S}")


def _check_counts(m: MTPFile, fail) -> None:
    n_mom, n_basic = m.alpha_moments_count, len(m.alpha_index_basic)
    basic, times, mapping = m.alpha_index_basic, m.alpha_index_times, m.alpha_moment_mapping
    if n_basic and (basic[:, 0].min() < 0 or basic[:, 0].max() >= m.radial_funcs_count):
        raise fail("alpha_index_basic", f"alpha_index_basic uses radial function {basic[:, 0].max()} but radial_funcs_count = {m.radial_funcs_count}")
    if n_basic and (basic[:, 1:].min() < 0 or basic[:, 1:].sum(1).max() > m.L):
        raise fail("alpha_index_basic", f"alpha_index_basic has exponents of rank above L = {m.L} or negative")
    if len(times) and (times[:, [0, 1, 3]].min() < 0 or times[:, [0, 1, 3]].max() >= n_mom):
        raise fail("alpha_index_times", f"alpha_index_times refers to a moment slot outside 0..{n_mom - 1} (alpha_moments_count = {n_mom})")
    if len(times) and times[:, 3].min() < n_basic:
        raise fail("alpha_index_times", "alpha_index_times writes into a basic moment slot")
    if len(times):  # file order is topological (SPEC 4.2): read only basic or already-written slots
        first_write = np.full(n_mom, len(times))
        np.minimum.at(first_write, times[:, 3], np.arange(len(times)))
        first_write[:n_basic] = -1
        early = np.nonzero((first_write[times[:, :2]] >= np.arange(len(times))[:, None]).any(axis=1))[0]
        if early.size:
            k = int(early[0])
            raise fail("alpha_index_times", f"alpha_index_times entry {k} {{{', '.join(map(str, times[k]))}}} reads a slot "
                                            f"that no earlier entry writes (entries must be in dependency order)")
    if len(mapping) and (mapping.min() < 0 or mapping.max() >= n_mom):
        raise fail("alpha_moment_mapping", f"alpha_moment_mapping refers to a slot outside 0..{n_mom - 1}")


# --------------------------------------------------------------------------- writing


def _fmt(x: float) -> str:
    # The authors write %.15e (16 significant digits); a double needs 17 to round-trip in
    # general, so use one more digit only when 16 would change the value.
    s = f"{x:.15e}"
    return s if float(s) == x else f"{x:.16e}"


def _flist(a: np.ndarray) -> str:
    return "{" + ", ".join(_fmt(float(x)) for x in a) + "}"


def _tuples(a: np.ndarray) -> str:
    return "{" + ", ".join("{" + ", ".join(str(int(v)) for v in row) + "}" for row in a) + "}"


def mtp_name_with_species(name: str, species: list[str] | None) -> str:
    """``potential_name`` value that carries element names (no whitespace, so old readers cope)."""
    base = _SPECIES_SUFFIX.sub("", name.split()[0] if name.strip() else "MTP")
    return f"{base}[{','.join(species)}]" if species else base


def format_mtp(m: MTPFile) -> str:
    """The file text, in the trained-file style of the authors' ``MLMTPR::Save``."""
    out = [
        "MTP",
        "version = 1.1.0",
        f"potential_name = {mtp_name_with_species(m.potential_name, m.species_names)}",
        f"scaling = {_fmt(m.scaling)}",
        f"L = {m.L}",
        f"scaling_map = {m.scaling_map}",
        f"species_count = {m.species_count}",
        f"potential_tag = {m.potential_tag}",
        f"radial_basis_type = {m.radial_basis_type}",
        f"\tmin_dist = {_fmt(m.min_dist)}",
        f"\tmax_dist = {_fmt(m.max_dist)}",
        f"\tradial_basis_size = {m.radial_basis_size}",
        f"\tradial_funcs_count = {m.radial_funcs_count}",
    ]
    if m.shift_coeffs is not None:
        out.append(f"shift_coeffs = {_flist(m.shift_coeffs)}")
    if m.scal_coeffs is not None:
        out.append(f"scal_coeffs = {_flist(m.scal_coeffs)}")
    if m.radial_coeffs is not None:
        out += ["\tradial_coeffs", "\t\t0-0"] + [f"\t\t\t{_flist(row)}" for row in m.radial_coeffs]
    out += [
        f"alpha_moments_count = {m.alpha_moments_count}",
        f"alpha_index_basic_count = {len(m.alpha_index_basic)}",
        f"alpha_index_basic = {_tuples(m.alpha_index_basic)}",
        f"alpha_index_times_count = {len(m.alpha_index_times)}",
        f"alpha_index_times = {_tuples(m.alpha_index_times)}",
        f"alpha_scalar_moments = {len(m.alpha_moment_mapping)}",
        "alpha_moment_mapping = {" + ", ".join(str(int(x)) for x in m.alpha_moment_mapping) + "}",
    ]
    if m.species_coeffs is not None:
        out.append(f"species_coeffs = {_flist(m.species_coeffs)}")
    if m.moment_coeffs is not None:
        out.append(f"moment_coeffs = {_flist(m.moment_coeffs)}")
    return "\n".join(out) + "\n"


def write_mtp(m: MTPFile, path: str | Path) -> None:
    """Write ``m`` atomically (write to a temporary file, then rename)."""
    path = Path(path)
    if path.is_dir() or not path.name:
        raise UsageError(f"cannot write model file {path}: it is a directory; give a file name such as model.mtp")
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(format_mtp(m))
        tmp.replace(path)
    except OSError as e:
        raise UsageError(f"cannot write model file {path}: {e.strerror}") from None


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes (model provenance)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
