"""What the stage loop does at an event (a thermo row, a frame, a checkpoint, a heat-flux sample,
a grade check), and how it stops: the state is checked first (:func:`sus2md.engine.state.blowup_problem`),
a bad state is never written, and the last good one is committed to ``checkpoint.chk``.

:class:`StageEvents` is the event half of :class:`sus2md.engine.stages.StageRunner` (a mixin: it
works on the runner's stages, writers, counts and barostat).
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from sus2md.engine.barostat import MOVE_KINDS
from sus2md.engine.outputs import checkpoint_bytes, write_checkpoint
from sus2md.engine.state import (
    HeatFluxFunction,
    Snapshot,
    adapter_virial,
    blowup_problem,
    eager_virial,
    take_snapshot,
    thermo_values,
    virial_pressure_bar,
)
from sus2md.errors import SimulationError
from sus2md.protocol import Protocol

__all__ = ["StageEvents", "load_eager_model"]

log = logging.getLogger(__name__)


class StageEvents:
    """Event handling of :class:`~sus2md.engine.stages.StageRunner` (module docstring)."""

    def _book(self, i: int, step: int, complete: bool) -> dict[str, Any]:
        stage = self.stages[i]
        book = {"version": 1, "stage_index": i, "stage": stage.name, "step_in_stage": step,
                "stage_complete": complete, "global_step": self.step_offset[i] + step,
                "time_ps": self._time(i, step), **self.counts, "completed": False}
        if self.barostat is not None:
            book["barostat"] = self.barostat.state()
        return book

    def _time(self, i: int, step: int) -> float:
        return self.time_offset[i] + step * getattr(self.stages[i], "timestep_fs", 0.0) / 1000.0

    def _event(self, i: int, sim: Any, step: int) -> None:
        """Check the state at ``step`` and write what is due there (rows, frame, checkpoint)."""
        stage, last = self.stages[i], step == self.steps[i]
        report = last or step % stage.report_interval_steps == 0
        frame = last or step % stage.trajectory_interval_steps == 0
        chk = last or step % self.proto.output.checkpoint_interval_steps == 0
        hf_every = getattr(stage, "heat_flux_interval_steps", None)
        hf = bool(hf_every) and step % hf_every == 0
        grade = self.monitor is not None and (last or step % self.proto.extrapolation.interval_steps == 0)
        if not (report or frame or chk or hf or grade):
            return
        snap = self._checked_snapshot(i, sim, step)
        gamma = self._grade(i, step, snap) if grade else None
        gstep, t_ps = self.step_offset[i] + step, self._time(i, step)
        if report:
            now, (t_mark, g_mark) = time.perf_counter(), self._rate_mark
            rate = self.n_atoms * (gstep - g_mark) / (now - t_mark) if now > t_mark and gstep > g_mark else None
            self._rate_mark = (now, gstep)
            vals = thermo_values(snap, self.dof, self.total_mass, self._pressure(snap))
            self._writers["thermo"].write([gstep, t_ps, i, stage.name, *vals.values(), rate, gamma,
                                           *self._barostat_counts()])
            self.counts["thermo_rows"] += 1
            if rate:
                self._pbar.set_postfix_str(f"{rate:.3g} atom-steps/s", refresh=False)
        if frame:
            self._writers["trajectory"].write(snap.positions_nm, snap.box_nm)
            self._writers["frames"].write([self.counts["frames"], i, stage.name, gstep, t_ps])
            self.counts["frames"] += 1
        if hf:
            j = self._heat_flux()(snap.positions_nm, snap.velocities_nm_ps, snap.box_nm)
            self._writers["heat_flux"].write([gstep, t_ps, i, *map(float, j)])
            self.counts["heat_flux_rows"] += 1
        if chk:
            self._event_checkpoint(i, sim, step, complete=last)
        else:
            self.last_good = (checkpoint_bytes(sim.context), self._book(i, step, complete=False))

    def _barostat_counts(self) -> list[int | None]:
        """accepted, attempted of each move kind (thermo.csv order); None where not made."""
        if self.barostat is None:
            return [None] * (2 * len(MOVE_KINDS))
        return [x for c in self.barostat.counts().values() for x in (c if c is not None else (None, None))]

    def _checked_snapshot(self, i: int, sim: Any, step: int) -> Snapshot:
        snap = take_snapshot(sim.context, self.periodic)
        problem = blowup_problem(snap, self.dof, self._target(i, step))
        if problem is not None:
            self._blowup(i, step, problem)
        return snap

    def _grade(self, i: int, step: int, snap: Snapshot) -> float:
        """Max extrapolation grade of ``snap``; above break_gamma: the last good state is kept and
        SimulationError names the stage, step, gamma and atom."""
        import numpy as np

        from sus2md.units import NM_TO_ANGSTROM

        periodic = snap.box_nm is not None
        cell = snap.box_nm * NM_TO_ANGSTROM if periodic else np.zeros((3, 3))
        try:
            gamma = self.monitor.check(self._species_index, snap.positions_nm * NM_TO_ANGSTROM, cell,
                                       np.full(3, periodic), self.step_offset[i] + step)
        except SimulationError as exc:
            self._note_grade(self.monitor.last_gamma)
            what = str(exc).split(": ", 1)[-1]  # drop the monitor's "step N: "
            what = what.replace("the break threshold", "extrapolation.break_gamma")
            raise SimulationError(f"stage '{self.stages[i].name}' step {step}: {what}; {self._keep_last_good(i)}; "
                                  "add the dumped configurations to the training data and retrain, or raise "
                                  "break_gamma") from None
        self._note_grade(gamma)
        return gamma

    def _note_grade(self, gamma: float) -> None:
        """Largest grade and dump count of this session, for provenance.json."""
        ext = self.prov.data["extrapolation"]
        ext["max_gamma"] = gamma if ext["max_gamma"] is None else max(ext["max_gamma"], gamma)
        ext["n_dumped"] = self.monitor.n_dumped

    def _event_checkpoint(self, i: int, sim: Any, step: int, complete: bool) -> None:
        for w in self._writers.values():
            w.sync()
        book = self._book(i, step, complete)
        data = checkpoint_bytes(sim.context)
        write_checkpoint(self.run_dir, data, book)
        self.last_good = (data, book)

    def _pressure(self, snap: Snapshot) -> float | None:
        """Virial pressure (bar) of a periodic system: from the compiled backend's own adapter when
        the force has one, else from the eager model."""
        if snap.box_nm is None:
            return None
        if self._force_adapter is not None:
            return virial_pressure_bar(adapter_virial(self._force_adapter), snap)
        model, index = self._eager()
        return virial_pressure_bar(eager_virial(model, index), snap)

    def _eager(self) -> tuple[Any, Any]:
        """The run's model as an eager (or scripted) SUS2Potential and each atom's species index."""
        if getattr(self, "_eager_model", None) is None:
            from sus2md.io.data import species_index

            self._eager_model = load_eager_model(self.proto)
            names = list(self._eager_model.species_names)
            self._species_index = species_index(self.atoms, names, source="structure")
        return self._eager_model, self._species_index

    def _heat_flux(self) -> HeatFluxFunction:
        if self.heat_flux is None:
            self.heat_flux = _default_heat_flux(self.proto, self.atoms, self._eager()[0])
        return self.heat_flux

    def _interrupt(self, i: int, sim: Any, step: int) -> None:
        """A signal arrived: checkpoint the (checked) current state and stop."""
        self._checked_snapshot(i, sim, step)
        self._event_checkpoint(i, sim, step, complete=False)
        log.warning("interrupted at stage '%s' step %d; checkpoint written", self.stages[i].name, step)

    def _blowup(self, i: int, step: int, problem: str) -> None:
        """Commit the last good state and raise SimulationError naming the stage, step and cause."""
        stage = self.stages[i]
        kept = self._keep_last_good(i)
        dt = getattr(stage, "timestep_fs", None)
        raise SimulationError(f"stage '{stage.name}' step {step}: {problem}; likely cause: timestep too large "
                              f"({dt} fs) or the structure left the model's training domain; {kept}")

    def _keep_last_good(self, i: int) -> str:
        """Commit the last good state to checkpoint.chk; a phrase saying which state that is."""
        if self.last_good is None:
            return "no good state to keep"
        data, book = self.last_good
        write_checkpoint(self.run_dir, data, book)
        where = (f"step {book['step_in_stage']}" if book["stage_index"] == i
                 else f"end of stage '{book['stage']}'")
        return f"last good state kept in checkpoint.chk ({where})"


def load_eager_model(proto: Protocol) -> Any:
    """SUS2Potential of the protocol's model (scripted when the model is a compiled ``.pt``)."""
    path = Path(proto.model.path)
    if path.suffix == ".pt":
        from sus2md.export import load_compiled

        return load_compiled(path)[0].model
    from sus2md.model import load_model

    return load_model(path, species=proto.model.species, dtype=proto.dtype)


def _default_heat_flux(proto: Protocol, atoms: Any, model: Any) -> HeatFluxFunction:
    """J from :func:`sus2md.engine.heatflux.heat_current_from_state` with the run's eager model."""
    from functools import partial

    from sus2md.engine.heatflux import heat_current_from_state

    return partial(heat_current_from_state, model, atoms.get_chemical_symbols(), masses_amu=atoms.get_masses())
