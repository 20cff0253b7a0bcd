"""Reading a run directory (the contract between the run engine and the analysis).

```
RUN_DIR/protocol.yaml     resolved protocol (validates with sus2md.protocol)
RUN_DIR/topology.pdb      topology + first frame; element symbols set; CRYST1 box
RUN_DIR/trajectory.dcd    (or .xtc) UNWRAPPED coordinates, box per frame, nm
RUN_DIR/frames.csv        frame,stage_index,stage,step,time_ps        (one row per trajectory frame)
RUN_DIR/thermo.csv        step,time_ps,stage_index,stage,potential_energy_eV,kinetic_energy_eV,
                          total_energy_eV,temperature_K,volume_A3,density_g_cm3,pressure_bar,
                          atom_steps_per_s                             (empty cell = undefined)
                          optional: {volume,axis,shear}_moves_{accepted,attempted}, Monte Carlo
                          barostat moves since the start of the stage (empty where the stage's
                          barostat makes no such move; absent in older run directories)
RUN_DIR/provenance.json   free-form; "status" (completed, interrupted, failed: ..., running) is read
RUN_DIR/heat_flux.csv     optional: step,time_ps,stage_index,Jx,Jy,Jz  (eV*Å/ps; more columns allowed)
```
Extra columns are allowed everywhere; a missing file or column is a :class:`UsageError`
naming the file.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sus2md.errors import UsageError
from sus2md.protocol import Protocol, load_protocol

FRAMES_COLUMNS = ("frame", "stage_index", "stage", "step", "time_ps")
THERMO_COLUMNS = ("step", "time_ps", "stage_index", "stage", "potential_energy_eV", "kinetic_energy_eV",
                  "total_energy_eV", "temperature_K", "volume_A3", "density_g_cm3", "pressure_bar",
                  "atom_steps_per_s")
HEAT_FLUX_COLUMNS = ("step", "time_ps", "stage_index", "Jx", "Jy", "Jz")
TEXT_COLUMNS = ("stage",)

Table = dict[str, np.ndarray]


def read_csv(path: str | Path, required: tuple[str, ...]) -> Table:
    """Read a CSV file with a header into column arrays.

    Columns in ``TEXT_COLUMNS`` stay strings; every other column becomes float64 (an empty cell
    is NaN).  Raises :class:`UsageError` naming the file (and line) when it is missing, lacks a
    required column or holds a non-number.
    """
    path = Path(path)
    try:
        with open(path, newline="") as fh:
            rows = [row for row in csv.reader(fh) if row]
    except FileNotFoundError:
        raise UsageError(f"{path}: file not found (is this a sus2md run directory?)") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UsageError(f"{path}: cannot read ({exc})") from None
    if not rows:
        raise UsageError(f"{path}: empty file, expected a header with {', '.join(required)}")
    header = [h.strip() for h in rows[0]]
    missing = [c for c in required if c not in header]
    if missing:
        raise UsageError(f"{path}: missing column(s) {', '.join(missing)}")
    for lineno, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise UsageError(f"{path}:{lineno}: expected {len(header)} fields, got {len(row)}")
    table: Table = {}
    for j, name in enumerate(header):
        cells = [row[j].strip() for row in rows[1:]]
        table[name] = np.array(cells, dtype=str) if name in TEXT_COLUMNS else _floats(path, name, cells)
    return table


def _floats(path: Path, name: str, cells: list[str]) -> np.ndarray:
    out = np.empty(len(cells))
    for i, cell in enumerate(cells):
        try:
            out[i] = float(cell) if cell else np.nan
        except ValueError:
            raise UsageError(f"{path}:{i + 2}: column {name}: not a number: {cell!r}") from None
    return out


@dataclass
class RunData:
    """Everything in a run directory except the trajectory, which loads on demand."""

    run_dir: Path
    protocol: Protocol
    thermo: Table
    frames: Table
    provenance: dict[str, Any]
    heat_flux: Table | None
    trajectory_path: Path
    topology_path: Path
    _traj: Any = field(default=None, repr=False)

    def load_trajectory(self):
        """The whole trajectory as an ``mdtraj.Trajectory``; ``traj.time`` is frames.csv's time_ps."""
        if self._traj is None:
            self._traj = _load_trajectory(self.trajectory_path, self.topology_path, self.frames)
        return self._traj


def _load_trajectory(traj_path: Path, top_path: Path, frames: Table):
    import mdtraj as md

    for p in (top_path, traj_path):
        if not p.is_file():
            raise UsageError(f"{p}: file not found")
    try:
        traj = md.load(str(traj_path), top=str(top_path))
    except Exception as exc:  # mdtraj raises IOError, ValueError, struct.error... for bad files
        raise UsageError(f"{traj_path}: cannot read the trajectory with {top_path.name} ({exc})") from None
    if traj.n_frames != len(frames["frame"]):
        raise UsageError(f"{traj_path}: has {traj.n_frames} frames but frames.csv lists "
                         f"{len(frames['frame'])}; the run directory is inconsistent")
    if traj.unitcell_vectors is None:
        raise UsageError(f"{traj_path}: no periodic box in the trajectory")
    traj.time = np.asarray(frames["time_ps"], dtype=float)
    return traj


def load_run(run_dir: str | Path) -> RunData:
    """Read protocol, thermo log, frame index and provenance of a run directory."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir}: not a directory")
    protocol = load_protocol(run_dir / "protocol.yaml")
    fmt = protocol.output.trajectory_format
    traj_path = run_dir / f"trajectory.{fmt}"
    if not traj_path.exists():
        other = run_dir / f"trajectory.{'xtc' if fmt == 'dcd' else 'dcd'}"
        traj_path = other if other.exists() else traj_path
    heat_path = run_dir / "heat_flux.csv"
    return RunData(
        run_dir=run_dir,
        protocol=protocol,
        thermo=read_csv(run_dir / "thermo.csv", THERMO_COLUMNS),
        frames=read_csv(run_dir / "frames.csv", FRAMES_COLUMNS),
        provenance=_read_json(run_dir / "provenance.json"),
        heat_flux=read_csv(heat_path, HEAT_FLUX_COLUMNS) if heat_path.exists() else None,
        trajectory_path=traj_path,
        topology_path=run_dir / "topology.pdb",
    )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"{path}: file not found") from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a JSON object")
    return data
