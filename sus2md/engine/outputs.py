"""The files of a run directory: thermo/frames/heat-flux CSV logs, the trajectory, checkpoints.

Everything here is crash-safe in the sense ``--resume`` needs: logs and the trajectory are
flushed at every report, so after ``kill -9`` a file holds at least what the last checkpoint
counted (maybe more, maybe a torn last line or frame); the resume path truncates each file to
exactly the counts of ``checkpoint.json`` (:func:`truncate_csv`, :func:`truncate_trajectory`).

A checkpoint is two files, ``checkpoint.chk`` (OpenMM's opaque binary: positions, velocities,
box, step count, integrator RNG state) and ``checkpoint.json`` (stage, steps, rows written, and
the sha256 of the binary).  Both are written to ``*.tmp`` and fsynced; the json is renamed first
(the commit point), then the binary.  A crash between the two renames leaves ``checkpoint.chk.tmp``
whose hash the committed json names, and :func:`read_checkpoint` rolls it forward.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sus2md.errors import SimulationError

FRAMES_COLUMNS = ("frame", "stage_index", "stage", "step", "time_ps")
THERMO_COLUMNS = ("step", "time_ps", "stage_index", "stage", "potential_energy_eV", "kinetic_energy_eV",
                  "total_energy_eV", "temperature_K", "volume_A3", "density_g_cm3", "pressure_bar",
                  "atom_steps_per_s", "max_gamma",
                  # cumulative Monte Carlo barostat moves of the stage (sus2md.engine.barostat.MOVE_KINDS)
                  "volume_moves_accepted", "volume_moves_attempted", "axis_moves_accepted", "axis_moves_attempted",
                  "shear_moves_accepted", "shear_moves_attempted")
HEAT_FLUX_COLUMNS = ("step", "time_ps", "stage_index", "Jx", "Jy", "Jz")


def _fmt(x: float | None) -> str:
    """CSV cell: empty for undefined, else 12 significant digits."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    return f"{x:.12g}" if isinstance(x, float) else str(x)


def fsync_file(fh: Any) -> None:
    """Flush a Python file object and push it to disk."""
    fh.flush()
    os.fsync(fh.fileno())


class CsvLog:
    """An append-only CSV file with a fixed header, flushed after every row."""

    def __init__(self, path: Path, columns: Sequence[str], *, append: bool) -> None:
        self.path = Path(path)
        self.columns = tuple(columns)
        fresh = not append or not self.path.exists() or self.path.stat().st_size == 0
        self._fh = open(self.path, "w" if fresh else "a", newline="")
        self._writer = csv.writer(self._fh, lineterminator="\n")
        if fresh:
            self._writer.writerow(self.columns)
            self._fh.flush()

    def write(self, row: Sequence[Any]) -> None:
        """Append one row (``None``/NaN -> empty cell) and flush it."""
        self._writer.writerow([_fmt(v) for v in row])
        self._fh.flush()

    def sync(self) -> None:
        fsync_file(self._fh)

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()


def truncate_csv(path: Path, n_rows: int) -> None:
    """Keep the header and the first ``n_rows`` complete rows of ``path`` (drop a torn last line)."""
    path = Path(path)
    if not path.exists():
        if n_rows:
            raise SimulationError(f"cannot resume: {path} is missing but the checkpoint counts {n_rows} rows in it")
        return
    with open(path, "rb") as fh:
        lines = fh.read().split(b"\n")
    complete = lines[:-1]  # the piece after the last newline is torn (or empty)
    if len(complete) < n_rows + 1:
        raise SimulationError(f"cannot resume: {path} has {max(len(complete) - 1, 0)} rows, "
                              f"the checkpoint counts {n_rows}")
    with open(path, "wb") as fh:
        fh.write(b"\n".join(complete[: n_rows + 1]) + b"\n")
        fsync_file(fh)


# --- trajectory ---------------------------------------------------------------------------------

_DCD_HEADER_BYTES = 92 + 172 + 12  # CORD block, title block, atom-count block (OpenMM's DCDFile)


def _dcd_frame_bytes(n_atoms: int, has_box: bool) -> int:
    return (56 if has_box else 0) + 3 * (8 + 4 * n_atoms)


class TrajectoryWriter:
    """DCD or XTC frames of unwrapped positions (nm) with the box of each frame."""

    def __init__(self, path: Path, topology: Any, fmt: str, *, append: bool) -> None:
        from openmm.app import DCDFile, XTCFile

        self.path, self.fmt = Path(path), fmt
        exists = append and self.path.exists() and self.path.stat().st_size > 0
        if fmt == "dcd":
            self._fh = open(self.path, "r+b" if exists else "wb")
            self._file = DCDFile(self._fh, topology, 0.001, append=exists)
        else:
            self._fh = None
            if not exists and self.path.exists():
                self.path.unlink()
            self._file = XTCFile(str(self.path), topology, 0.001, append=exists)

    def write(self, positions_nm: np.ndarray, box_nm: np.ndarray | None) -> None:
        """Append one frame; flushed before returning."""
        from openmm import Vec3
        from openmm.unit import nanometers

        box = None if box_nm is None else tuple(Vec3(*map(float, v)) for v in box_nm) * nanometers
        self._file.writeModel(positions_nm * nanometers, periodicBoxVectors=box)

    def sync(self) -> None:
        if self._fh is not None:
            fsync_file(self._fh)
        else:
            fd = os.open(self.path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def close(self) -> None:
        if self._fh is not None and not self._fh.closed:
            self._fh.close()


def truncate_trajectory(path: Path, fmt: str, n_frames: int, n_atoms: int, has_box: bool) -> None:
    """Keep exactly the first ``n_frames`` frames of ``path``; a torn last frame is dropped."""
    path = Path(path)
    if n_frames == 0:
        path.unlink(missing_ok=True)
        return
    if not path.exists():
        raise SimulationError(f"cannot resume: {path} is missing but the checkpoint counts {n_frames} frames")
    if fmt == "dcd":
        size = _DCD_HEADER_BYTES + n_frames * _dcd_frame_bytes(n_atoms, has_box)
        if path.stat().st_size < size:
            raise SimulationError(f"cannot resume: {path} holds fewer than the {n_frames} frames the checkpoint counts")
        with open(path, "r+b") as fh:
            fh.truncate(size)
            fh.seek(8)
            fh.write(struct.pack("<i", n_frames))  # NSET
            fh.seek(20)
            fh.write(struct.pack("<i", n_frames - 1))  # last step (firstStep 0, interval 1)
            fsync_file(fh)
        return
    import mdtraj

    with mdtraj.formats.XTCTrajectoryFile(str(path), "r") as f:
        xyz, time, step, box = f.read(n_frames=n_frames)
    if len(xyz) < n_frames:
        raise SimulationError(f"cannot resume: {path} has {len(xyz)} frames, the checkpoint counts {n_frames}")
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    with mdtraj.formats.XTCTrajectoryFile(str(tmp), "w") as f:
        f.write(xyz, time=time, step=step, box=box)
    os.replace(tmp, path)


# --- checkpoints --------------------------------------------------------------------------------

def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via ``path.tmp`` + fsync + rename."""
    tmp = Path(str(path) + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fsync_file(fh)
    os.replace(tmp, path)


def write_checkpoint(run_dir: Path, chk: bytes, book: dict[str, Any]) -> None:
    """Commit ``checkpoint.chk`` + ``checkpoint.json`` (``book`` gains ``chk_sha256``)."""
    chk_path, json_path = run_dir / "checkpoint.chk", run_dir / "checkpoint.json"
    chk_tmp = Path(str(chk_path) + ".tmp")
    with open(chk_tmp, "wb") as fh:
        fh.write(chk)
        fsync_file(fh)
    book = {**book, "chk_sha256": hashlib.sha256(chk).hexdigest()}
    atomic_write(json_path, (json.dumps(book, indent=1) + "\n").encode())  # commit point
    os.replace(chk_tmp, chk_path)
    _fsync_dir(run_dir)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_checkpoint(run_dir: Path) -> tuple[bytes, dict[str, Any]] | None:
    """The committed checkpoint of ``run_dir`` (binary, bookkeeping), or None when there is none."""
    json_path, chk_path = run_dir / "checkpoint.json", run_dir / "checkpoint.chk"
    if not json_path.exists():
        return None
    try:
        book = json.loads(json_path.read_text())
    except (OSError, ValueError) as exc:
        raise SimulationError(f"cannot resume: {json_path} is unreadable ({exc})") from None
    want = book.get("chk_sha256")
    for candidate in (chk_path, Path(str(chk_path) + ".tmp")):
        if candidate.exists():
            data = candidate.read_bytes()
            if hashlib.sha256(data).hexdigest() == want:
                if candidate != chk_path:  # crashed between the two renames: roll forward
                    os.replace(candidate, chk_path)
                return data, book
    raise SimulationError(f"cannot resume: {chk_path} does not match {json_path.name} (sha256 differs); "
                          "the checkpoint is corrupt")


def checkpoint_bytes(context: Any) -> bytes:
    """``Context.createCheckpoint`` as bytes (what ``Simulation.saveCheckpoint`` writes)."""
    data = context.createCheckpoint()
    return data if isinstance(data, bytes) else io.BytesIO(data).getvalue()
