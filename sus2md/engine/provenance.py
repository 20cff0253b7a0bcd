"""``provenance.json`` of a run (versions, hardware, seeds, per-stage steps and speed, sessions) and
the machine facts it records."""
from __future__ import annotations

import json
import os
import platform as _platform
from pathlib import Path
from typing import Any

from sus2md.engine.outputs import atomic_write
from sus2md.units import KJ_PER_MOL_TO_EV, NM_TO_ANGSTROM


def cpu_model() -> str:
    """The CPU model name (from /proc/cpuinfo on Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return _platform.processor() or _platform.machine()


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

    def engine(self, info: Any, threads: int) -> None:
        """What evaluates the model: backend (asked and resolved), dtype, device, threads, the
        compiled artefact (key, cache hit, compile and load seconds)."""
        self.data["engine"] = {**info.as_dict(), "threads": threads}
        self._write()

    def stage_barostat(self, i: int, barostat: Any) -> None:
        """Accepted/attempted moves per kind and the final step sizes of an NPT stage's barostat."""
        self.data["stages"][i]["barostat"] = {
            "kind": barostat.kind,
            "moves": {k: {"accepted": m.accepted, "attempted": m.attempted, "step": m.step}
                      for k, m in barostat.moves.items()}}

    def stage_minimized(self, i: int, res: Any) -> None:
        """A minimize stage's :class:`~sus2md.engine.integrators.MinimizeResult` (eV, eV/Å)."""
        f = KJ_PER_MOL_TO_EV / NM_TO_ANGSTROM
        self.data["stages"][i].update(potential_energy_before_eV=res.energy_before_kJ_mol * KJ_PER_MOL_TO_EV,
                                      potential_energy_after_eV=res.energy_after_kJ_mol * KJ_PER_MOL_TO_EV,
                                      iterations=res.iterations, converged=res.converged,
                                      rms_force_eV_A=res.rms_force_kJ_mol_nm * f, max_force_eV_A=res.max_force_kJ_mol_nm * f,
                                      interrupted=res.stopped)
        self._write()

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
