"""What a run writes while it runs: thermo.csv, the trajectory + frames.csv, checkpoints, and the
blow-up check that guards every one of them.

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
import logging
import math
import os
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ase import units as ase_units

from sus2md.machine import cpu_model
from sus2md.errors import SimulationError
from sus2md.units import EV_PER_A3_TO_BAR, KB_EV, KJ_PER_MOL_TO_EV, NM_TO_ANGSTROM

log = logging.getLogger(__name__)

FRAMES_COLUMNS = ("frame", "stage_index", "stage", "step", "time_ps")
THERMO_COLUMNS = ("step", "time_ps", "stage_index", "stage", "potential_energy_eV", "kinetic_energy_eV",
                  "total_energy_eV", "temperature_K", "volume_A3", "density_g_cm3", "pressure_bar",
                  "atom_steps_per_s", "max_gamma")
HEAT_FLUX_COLUMNS = ("step", "time_ps", "stage_index", "Jx", "Jy", "Jz")

#: g/cm^3 per (amu / Å^3), from ASE's CODATA amu
AMU_PER_A3_TO_G_PER_CM3: float = ase_units._amu * 1e3 / 1e-24
#: |F| above this (eV/Å) counts as a blow-up even when finite (atoms fused together)
MAX_FORCE_EV_A: float = 1.0e3
#: temperature ceilings: a thermostatted stage may reach this multiple of its target; NVE a fixed cap
MAX_T_FACTOR: float = 5.0
MAX_T_NVE_K: float = 10000.0

#: heat-flux hook: (positions (N, 3) nm, velocities (N, 3) nm/ps, box (3, 3) nm or None) -> J (3,) eV·Å/ps
HeatFluxFunction = Callable[[np.ndarray, np.ndarray, "np.ndarray | None"], np.ndarray]


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


# --- state snapshots, thermo rows, blow-up checks -----------------------------------------------

@dataclass
class Snapshot:
    """Everything read from the Context at one report point (OpenMM units: nm, kJ/mol, ps)."""

    positions_nm: np.ndarray  # (N, 3), unwrapped
    velocities_nm_ps: np.ndarray  # (N, 3)
    box_nm: np.ndarray | None  # (3, 3) rows = box vectors, None when not periodic
    potential_kJ_mol: float
    kinetic_kJ_mol: float
    max_force_kJ_mol_nm: float


def take_snapshot(context: Any, periodic: bool) -> Snapshot:
    """Read positions (not wrapped), velocities, box, energies and forces from ``context``."""
    from openmm import unit

    st = context.getState(getPositions=True, getVelocities=True, getEnergy=True, getForces=True,
                          enforcePeriodicBox=False)
    forces = st.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer)
    fmax = float(np.max(np.linalg.norm(forces, axis=1))) if len(forces) else 0.0
    if not np.all(np.isfinite(forces)):
        fmax = math.nan
    return Snapshot(
        positions_nm=np.asarray(st.getPositions(asNumpy=True).value_in_unit(unit.nanometer)),
        velocities_nm_ps=np.asarray(st.getVelocities(asNumpy=True).value_in_unit(unit.nanometer / unit.picosecond)),
        box_nm=np.asarray(st.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer)) if periodic else None,
        potential_kJ_mol=st.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole),
        kinetic_kJ_mol=st.getKineticEnergy().value_in_unit(unit.kilojoule_per_mole),
        max_force_kJ_mol_nm=fmax,
    )


def temperature_K(kinetic_kJ_mol: float, dof: int) -> float:
    """Instantaneous temperature from the kinetic energy and the degrees of freedom."""
    return 2.0 * kinetic_kJ_mol * KJ_PER_MOL_TO_EV / (dof * KB_EV) if dof > 0 else math.nan


def thermo_values(snap: Snapshot, dof: int, total_mass_amu: float,
                  pressure_bar: float | None) -> dict[str, float | None]:
    """The physical columns of a thermo.csv row (eV, K, Å^3, g/cm^3, bar)."""
    pe = snap.potential_kJ_mol * KJ_PER_MOL_TO_EV
    ke = snap.kinetic_kJ_mol * KJ_PER_MOL_TO_EV
    vol = None
    if snap.box_nm is not None:
        vol = abs(float(np.linalg.det(snap.box_nm))) * NM_TO_ANGSTROM**3
    return {
        "potential_energy_eV": pe, "kinetic_energy_eV": ke, "total_energy_eV": pe + ke,
        "temperature_K": temperature_K(snap.kinetic_kJ_mol, dof), "volume_A3": vol,
        "density_g_cm3": None if vol is None else total_mass_amu / vol * AMU_PER_A3_TO_G_PER_CM3,
        "pressure_bar": pressure_bar,
    }


def virial_pressure_bar(model: Any, species_index: np.ndarray, snap: Snapshot) -> float | None:
    """Instantaneous pressure (bar), ``P = (2 KE + tr W) / 3V``, with the virial ``W`` (eV) from the
    eager ``model`` (OpenMM's TorchForce gives no virial); None for a non-periodic system."""
    import torch

    from sus2md.nn.calc import build_graph, evaluate

    if snap.box_nm is None:
        return None
    cell = snap.box_nm * NM_TO_ANGSTROM
    dtype = next(model.parameters()).dtype
    g = build_graph([species_index], [snap.positions_nm * NM_TO_ANGSTROM], [cell], [np.ones(3, dtype=bool)],
                    float(model.cutoff), dtype=dtype)
    with torch.enable_grad():
        w = evaluate(model, g, forces=False, virial=True).virial
    trace_w = float(torch.diagonal(w[0]).sum().detach())
    ke = snap.kinetic_kJ_mol * KJ_PER_MOL_TO_EV
    return (2.0 * ke + trace_w) / (3.0 * abs(float(np.linalg.det(cell)))) * EV_PER_A3_TO_BAR


def blowup_problem(snap: Snapshot, dof: int, target_K: float | None) -> str | None:
    """A sentence naming what is wrong with ``snap``, or None when it looks sane.

    ``target_K`` is the thermostat's current target; None (NVE) applies the fixed 10000 K cap.
    """
    if not math.isfinite(snap.potential_kJ_mol):
        return f"potential energy is {snap.potential_kJ_mol}"
    if not math.isfinite(snap.max_force_kJ_mol_nm):
        return "a force is NaN or infinite"
    fmax = snap.max_force_kJ_mol_nm * KJ_PER_MOL_TO_EV / NM_TO_ANGSTROM
    if fmax > MAX_FORCE_EV_A:
        return f"max |F| {fmax:.4g} eV/Å (> {MAX_FORCE_EV_A:g} eV/Å)"
    if not (np.all(np.isfinite(snap.positions_nm)) and np.all(np.isfinite(snap.velocities_nm_ps))):
        return "positions or velocities are NaN or infinite"
    t = temperature_K(snap.kinetic_kJ_mol, dof)
    if not math.isfinite(t):
        return f"temperature is {t}"
    if target_K is None:
        if t > MAX_T_NVE_K:
            return f"temperature {t:.0f} K (> {MAX_T_NVE_K:.0f} K in NVE)"
    elif t > MAX_T_FACTOR * target_K:
        return f"temperature {t:.0f} K (> {MAX_T_FACTOR:g}x target {target_K:g} K)"
    return None


def checkpoint_bytes(context: Any) -> bytes:
    """``Context.createCheckpoint`` as bytes (what ``Simulation.saveCheckpoint`` writes)."""
    data = context.createCheckpoint()
    return data if isinstance(data, bytes) else io.BytesIO(data).getvalue()


# --- provenance ---------------------------------------------------------------------------------



def hardware() -> dict[str, Any]:
    """CPU model, core count and GPU (if torch sees one)."""
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu_model": cpu_model(), "cpu_cores": os.cpu_count(), "gpu": gpu,
            "torch_threads": torch.get_num_threads()}


def versions() -> dict[str, str | None]:
    """sus2md, torch, openmm, openmmtorch and python versions."""
    import platform

    import openmm
    import torch

    import sus2md

    try:
        from importlib.metadata import version

        omt = version("openmmtorch")
    except Exception:  # noqa: BLE001 - not installed
        omt = None
    return {"sus2md": sus2md.__version__, "torch": torch.__version__, "openmm": openmm.__version__,
            "openmmtorch": omt, "python": platform.python_version()}


class Provenance:
    """``provenance.json``: written when a session begins and ends (atomically); a resumed run
    appends a session and keeps adding to the per-stage step counts and wall times."""

    def __init__(self, run_dir: Path, proto: Any, atoms: Any, *, replica: int | None, max_steps: int | None,
                 command_line: list[str], seeds: dict[str, Any]) -> None:
        from sus2md.io.mtp import file_sha256

        self.path = Path(run_dir) / "provenance.json"
        old = json.loads(self.path.read_text()) if self.path.exists() else {}
        stages = old.get("stages") or [
            {"index": i, "name": s.name, "type": s.type, "steps": getattr(s, "steps", 0) or 0, "steps_run": 0,
             "wall_time_s": 0.0, "atom_steps_per_s": None} for i, s in enumerate(proto.stages)]
        self.data: dict[str, Any] = {
            "status": "running",
            "model": {"path": proto.model.path, "sha256": file_sha256(proto.model.path), "species": proto.model.species},
            "structure": {"path": proto.structure.path, "sha256": file_sha256(proto.structure.path),
                          "n_atoms": len(atoms), "formula": atoms.get_chemical_formula()},
            "versions": versions(), "hardware": hardware(), "platform": {"name": proto.platform},
            "seeds": seeds, "replica": replica, "max_steps": max_steps,
            "start_time": old.get("start_time"), "end_time": None,
            "wall_time_s": old.get("wall_time_s", 0.0), "stages": stages, "sessions": old.get("sessions", []),
        }
        self._session: dict[str, Any] = {"command_line": list(command_line)}
        self._t0 = 0.0

    @property
    def session_wall(self) -> float:
        return self._session.get("wall_time_s", 0.0)

    def begin(self, resumed_from: int | None) -> None:
        import time

        now = _now()
        self._t0 = time.perf_counter()
        self.data["start_time"] = self.data["start_time"] or now
        self._session.update(start_time=now, resumed_from_step=resumed_from, status="running")
        self.data["sessions"].append(self._session)
        self.data["command_line"] = self._session["command_line"]
        self._write()

    def stage_progress(self, i: int, steps: int, n_atoms: int, wall_s: float) -> None:
        """Account ``steps`` MD steps of stage ``i`` that took ``wall_s`` seconds."""
        s = self.data["stages"][i]
        s["steps_run"] += steps
        s["wall_time_s"] += wall_s
        s["atom_steps_per_s"] = n_atoms * s["steps_run"] / s["wall_time_s"] if s["wall_time_s"] > 0 else None

    def stage_minimized(self, i: int, e_before_kJ: float, e_after_kJ: float) -> None:
        self.data["stages"][i].update(potential_energy_before_eV=e_before_kJ * KJ_PER_MOL_TO_EV,
                                      potential_energy_after_eV=e_after_kJ * KJ_PER_MOL_TO_EV)

    def end(self, status: str, platform_info: dict[str, Any]) -> None:
        import time

        wall = time.perf_counter() - self._t0
        self._session.update(end_time=_now(), wall_time_s=wall, status=status)
        self.data.update(status=status, end_time=self._session["end_time"], platform=platform_info,
                         wall_time_s=self.data["wall_time_s"] + wall)
        self._write()

    def _write(self) -> None:
        atomic_write(self.path, (json.dumps(self.data, indent=1, default=str) + "\n").encode())


def _now() -> str:
    import datetime

    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
