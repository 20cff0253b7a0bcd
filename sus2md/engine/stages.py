"""The stage loop of ``sus2md run`` (:class:`StageRunner`), split out of :mod:`sus2md.engine.run`.

Stages run in order, each with its own integrator (and barostat) in a new Context that takes
over positions, velocities and box from the previous stage.  The loop advances in chunks that end
at the next *event* (a thermo row, a frame, a checkpoint, a heat-flux sample, a temperature-ramp
update, the end of the stage); events sit at multiples of their interval counted from the stage
start, plus the stage's last step, so an interrupted and resumed run stops at the same steps as an
uninterrupted one.  Every event checks the state first (:func:`sus2md.engine.state.blowup_problem`): a bad
state is never written, and the last good one is committed to ``checkpoint.chk``.

Extrapolation grade (protocol section ``extrapolation``): the active set is loaded (or built from
the training data) before the run directory is touched; during dynamical stages the state is
graded at multiples of ``interval_steps`` (plus the stage's last step) right after the blow-up
check, before anything of that step is written.  A thermo row at a graded step carries the
largest atomic grade in ``max_gamma`` (empty elsewhere and when grading is off); above
``warn_gamma`` a warning is logged and the configuration appended to ``dump_cfg`` in the run
directory; above ``break_gamma`` the run stops like a blow-up (SimulationError naming stage,
step, gamma and atom; the last good state committed to ``checkpoint.chk``).

Seeds: protocol seed ``s`` gives stage ``i`` the velocity seed ``_seed(s, i, 1)``, the Langevin
seed ``_seed(s, i, 2)`` and the barostat seed ``_seed(s, i, 3)`` (all recorded in provenance).
"""
from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sus2md.engine.events import StageEvents
from sus2md.engine.outputs import (
    FRAMES_COLUMNS,
    HEAT_FLUX_COLUMNS,
    THERMO_COLUMNS,
    CsvLog,
    TrajectoryWriter,
    atomic_write,
    checkpoint_bytes,
    truncate_csv,
    truncate_trajectory,
    write_checkpoint,
)
from sus2md.engine.provenance import Provenance
from sus2md.engine.state import HeatFluxFunction
from sus2md.protocol import NPTStage, Protocol
from sus2md.units import EV_PER_A_TO_KJ_PER_MOL_NM, KJ_PER_MOL_TO_EV

KJ_PER_MOL_NM_TO_EV_PER_A = 1.0 / EV_PER_A_TO_KJ_PER_MOL_NM

log = logging.getLogger(__name__)


@dataclass
class Grading:
    """What the extrapolation grade needs: the eager model, each atom's species index, the active set."""

    model: Any
    species_index: Any
    active_set: Any
    built_from: str | None  # training data the set was built from (None: loaded from an .npz)


# --- the stage loop -----------------------------------------------------------------------------

#: a temperature ramp updates the thermostat target every this many steps
RAMP_UPDATE_STEPS = 10
_COUNTS = ("frames", "thermo_rows", "heat_flux_rows")


def _seed(seed: int, stage_index: int, salt: int) -> int:
    """A positive 31-bit seed (OpenMM takes 0 to mean 'pick one at random')."""
    return 1 + (seed * 1_000_003 + stage_index * 7919 + salt * 104_729) % 2_147_483_000


def _stage_seeds(seed: int, i: int, stage: Any) -> dict[str, int]:
    """The seeds stage ``i`` actually uses (for provenance)."""
    out = {}
    if getattr(stage, "initial_velocities", None) == "maxwell":
        out["velocities"] = _seed(seed, i, 1)
    if getattr(stage, "thermostat", None) == "langevin":
        out["thermostat"] = _seed(seed, i, 2)
    if stage.type == "npt":
        out["barostat"] = _seed(seed, i, 3)
    return out


def _next_multiple(step: int, n: int) -> int:
    return (step // n + 1) * n


class StageRunner(StageEvents):
    """Runs the stages of one (effective) protocol into ``run_dir``; see :func:`run_protocol`."""

    def __init__(self, proto: Protocol, run_dir: Path, atoms: Any, *, progress: bool,
                 heat_flux: HeatFluxFunction | None, replica: int | None, max_steps: int | None,
                 command_line: list[str], grading: Grading | None = None, module: Any = None,
                 threads: int | None = None) -> None:
        self.proto, self.run_dir, self.atoms = proto, run_dir, atoms
        self.stages = list(proto.stages)
        self.n_atoms = len(atoms)
        self.steps = [getattr(s, "steps", 0) or 0 for s in self.stages]
        self.step_offset = [sum(self.steps[:i]) for i in range(len(self.stages))]
        dts = [getattr(s, "timestep_fs", 0.0) / 1000.0 for s in self.stages]
        self.time_offset = [sum(n * dt for n, dt in zip(self.steps[:i], dts[:i])) for i in range(len(self.stages))]
        self.counts = {k: 0 for k in _COUNTS}
        self.global_step = 0
        self.stop_signal: int | None = None
        self.last_good: tuple[bytes, dict[str, Any]] | None = None
        self.heat_flux = heat_flux
        seeds = {"protocol": proto.seed, "stages": {s.name: _stage_seeds(proto.seed, i, s) for i, s in enumerate(self.stages)}}
        self.prov = Provenance(run_dir, proto, atoms, replica=replica, max_steps=max_steps,
                                   command_line=command_line, seeds=seeds)
        self._progress_enabled = progress and sys.stderr.isatty()
        self._module: Any = module
        self.threads = threads
        self.backend: str | None = None  # the backend the first stage resolved (auto -> compiled/torch)
        self.barostat: Any = None  # the current NPT stage's CellBarostat
        self._force_adapter: Any = None  # the compiled backend's PaddedAdapter of the current stage
        self._writers: dict[str, Any] = {}
        self._rate_mark = (0.0, 0)
        self.monitor: Any = None
        if grading is not None:
            from sus2md.active.grade import GradeMonitor

            ex = proto.extrapolation
            self._eager_model, self._species_index = grading.model, grading.species_index
            self.monitor = GradeMonitor(grading.model, grading.active_set, ex.warn_gamma, ex.break_gamma,
                                        dump_path=run_dir / ex.dump_cfg)
            if grading.built_from is not None:
                grading.active_set.save(run_dir / "active_set.npz")
            self.prov.data["extrapolation"] = {
                "active_set": ex.active_set or str(run_dir / "active_set.npz"), "built_from": grading.built_from,
                "active_set_rows": {str(t): n for t, n in grading.active_set.size().items()},
                "max_gamma": None, "n_dumped": 0}

    # -- setup ---------------------------------------------------------------------------------

    def run(self, ck: tuple[bytes, dict[str, Any]] | None) -> tuple[str, float]:
        """Run (or resume) all stages; returns (status, wall seconds of this session)."""
        from tqdm import tqdm

        self.prov.begin(resumed_from=None if ck is None else ck[1]["global_step"])
        self._pbar = tqdm(total=sum(self.steps), initial=0 if ck is None else ck[1]["global_step"], unit="step",
                          file=sys.stderr, disable=not self._progress_enabled, dynamic_ncols=True)
        try:
            status = self._run_stages(ck)
        except BaseException as exc:
            self._close()
            failed = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"failed: {exc}"
            self.prov.end(failed, self._platform_info())
            raise
        self._close()
        self.prov.end(status, self._platform_info())
        return status, self.prov.session_wall

    def _close(self) -> None:
        self._pbar.close()
        for w in self._writers.values():
            w.close()

    def _model_for(self, backend: str) -> Any:
        """What the force of ``backend`` is built from: the shared scripted adapter (torch, python),
        the model file (auto, compiled: its compiled step comes from the cache after the first)."""
        if backend not in ("torch", "python"):
            return self.proto.model.path
        if self._module is None:
            from sus2md.engine.force import bound_adapter

            m = self.proto.model
            self._module = bound_adapter(m.path, self.atoms, dtype=self.proto.dtype, species=m.species)
        return self._module

    def _simulation(self, i: int, step: int) -> Any:
        """A new Simulation for stage ``i`` with its integrator, thermostat at ``step``; an NPT stage
        gets its Monte Carlo barostat in :attr:`barostat` (:mod:`sus2md.engine.barostat`)."""
        from sus2md.engine.barostat import CellBarostat
        from sus2md.engine.integrators import create_simulation, make_integrator
        from sus2md.protocol import MinimizeStage, NVEStage

        p, stage = self.proto, self.stages[i]
        self.barostat = None
        if isinstance(stage, MinimizeStage):
            integ = make_integrator("verlet", 1.0)
        elif isinstance(stage, NVEStage):
            integ = make_integrator("verlet", stage.timestep_fs)
        else:
            t = self._target(i, step)
            integ = make_integrator(stage.thermostat, stage.timestep_fs, t, friction_per_ps=stage.friction_per_ps or 1.0,
                                    collision_frequency_per_ps=stage.collision_frequency_per_ps or 1.0,
                                    seed=_seed(p.seed, i, 2))
            if isinstance(stage, NPTStage):
                self.barostat = CellBarostat(stage.barostat, stage.pressure_bar, t, self.n_atoms, seed=_seed(p.seed, i, 3))
        backend = self.backend or p.backend
        species = None if backend in ("torch", "python") else p.model.species
        sim = create_simulation(self.atoms, self._model_for(backend), backend=backend, dtype=p.dtype,
                                platform=p.platform, precision=p.precision, threads=self.threads, integrator=integ,
                                remove_com_motion=p.remove_com_motion, cuda_graphs=p.cuda_graphs,
                                species=species)
        self._force_adapter = sim.sus2md_force_info.adapter
        if self.backend is None:
            self.backend = sim.sus2md_force_info.backend
            self.prov.engine(sim.sus2md_force_info, sim.sus2md_threads)
            log.info("%s; %d thread(s)", sim.sus2md_force_info.describe(), sim.sus2md_threads)
        self._context_info(sim)
        return sim

    def _context_info(self, sim: Any) -> None:
        """Remember the platform and the per-system constants (dof, mass, periodicity)."""
        import openmm

        system, ctx = sim.system, sim.context
        self._platform = ctx.getPlatform()
        self._context = ctx
        self.periodic = system.usesPeriodicBoundaryConditions()
        com = any(isinstance(f, openmm.CMMotionRemover) for f in system.getForces())
        self.dof = 3 * system.getNumParticles() - system.getNumConstraints() - (3 if com else 0)
        self.total_mass = sum(system.getParticleMass(k)._value for k in range(system.getNumParticles()))

    def _platform_info(self) -> dict[str, Any]:
        plat = getattr(self, "_platform", None)
        if plat is None:
            return {"name": self.proto.platform}
        props = {}
        for name in plat.getPropertyNames():
            try:
                props[name] = plat.getPropertyValue(self._context, name)
            except Exception:  # noqa: BLE001 - some properties cannot be read back
                pass
        return {"name": plat.getName(), "properties": props}

    def _open_writers(self, topology: Any, append: bool) -> None:
        fmt = self.proto.output.trajectory_format
        d = self.run_dir
        self._writers = {
            "trajectory": TrajectoryWriter(d / f"trajectory.{fmt}", topology, fmt, append=append),
            "frames": CsvLog(d / "frames.csv", FRAMES_COLUMNS, append=append),
            "thermo": CsvLog(d / "thermo.csv", THERMO_COLUMNS, append=append),
        }
        if any(getattr(s, "heat_flux_interval_steps", None) for s in self.stages):
            self._writers["heat_flux"] = CsvLog(d / "heat_flux.csv", HEAT_FLUX_COLUMNS, append=append)

    def _truncate_outputs(self, book: dict[str, Any]) -> None:
        """Cut every data file back to what checkpoint ``book`` counted (resume)."""
        fmt = self.proto.output.trajectory_format
        d = self.run_dir
        truncate_trajectory(d / f"trajectory.{fmt}", fmt, book["frames"], self.n_atoms, bool(self.atoms.pbc.all()))
        truncate_csv(d / "frames.csv", book["frames"])
        truncate_csv(d / "thermo.csv", book["thermo_rows"])
        if (d / "heat_flux.csv").exists() or book["heat_flux_rows"]:
            truncate_csv(d / "heat_flux.csv", book["heat_flux_rows"])
        for p in d.glob("final.*"):
            p.unlink()

    # -- the stages ----------------------------------------------------------------------------

    def _run_stages(self, ck: tuple[bytes, dict[str, Any]] | None) -> str:
        from openmm import unit

        from sus2md.engine.system import write_topology_pdb
        from sus2md.protocol import MinimizeStage

        i0, step0, sim, carried = 0, 0, None, None
        if ck is None:
            sim = self._simulation(0, 0)
            st = sim.context.getState(getPositions=True, enforcePeriodicBox=False)
            box = st.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer) if self.periodic else None
            write_topology_pdb(sim.topology, st.getPositions(asNumpy=True).value_in_unit(unit.nanometer), box,
                               self.run_dir / "topology.pdb")
            self._open_writers(sim.topology, append=False)
        else:
            chk, book = ck
            i0, step0 = book["stage_index"], book["step_in_stage"]
            self.counts = {k: book[k] for k in _COUNTS}
            self.global_step = book["global_step"]
            self.last_good = ck
            self._truncate_outputs(book)
            sim = self._simulation(i0, step0)
            sim.context.loadCheckpoint(chk)
            if self.barostat is not None and book.get("barostat"):
                self.barostat.load_state(book["barostat"])
            self._open_writers(sim.topology, append=True)
            if book["stage_complete"]:
                carried, sim, i0 = self._carry(sim), None, i0 + 1
        for i in range(i0, len(self.stages)):
            resumed = ck is not None and i == i0
            if sim is None:
                sim = self._simulation(i, 0)
                self._apply(sim, carried)
            if not resumed:
                sim.context.setTime(self.time_offset[i])
            if isinstance(self.stages[i], MinimizeStage):
                if not self._minimize(i, sim):
                    return "interrupted"
            elif not self._dynamics(i, sim, step0 if resumed else 0, resumed):
                return "interrupted"
            carried, sim = self._carry(sim), None
            if self.stop_signal is not None:
                return "interrupted"
        self._finish(carried)
        return "completed"

    def _carry(self, sim: Any) -> Any:
        return sim.context.getState(getPositions=True, getVelocities=True, enforcePeriodicBox=False)

    def _apply(self, sim: Any, state: Any) -> None:
        """Positions, velocities and box of ``state`` into the new stage's Context."""
        ctx = sim.context
        if self.periodic:
            ctx.setPeriodicBoxVectors(*state.getPeriodicBoxVectors())
        ctx.setPositions(state.getPositions())
        ctx.setVelocities(state.getVelocities())

    def _target(self, i: int, step: int) -> float | None:
        """Thermostat target (K) at ``step`` of stage ``i``: ramps move in RAMP_UPDATE_STEPS chunks."""
        stage = self.stages[i]
        if not hasattr(stage, "temperature_at") or stage.type == "nve":
            return None
        n = self.steps[i]
        if n == 0:
            return stage.temperature_at(0.0)
        return stage.temperature_at((step // RAMP_UPDATE_STEPS) * RAMP_UPDATE_STEPS / n)

    def _minimize(self, i: int, sim: Any) -> bool:
        """Minimize in place; False when a signal stopped it (checkpoint of the partly minimized
        state written; a resumed run minimizes again from there)."""
        from sus2md.engine.integrators import minimize

        stage = self.stages[i]
        self._pbar.set_description(stage.name)
        res = minimize(sim, stage.tolerance_kJ_mol_nm, stage.max_iterations, log_interval=stage.log_interval_iterations,
                       should_stop=lambda: self.stop_signal is not None, label=f"stage '{stage.name}': ")
        self.prov.stage_minimized(i, res)
        if res.stopped:
            self._interrupt(i, sim, 0)
            return False
        if res.converged:
            log.info("stage '%s': minimized in %d iterations, E %.6f -> %.6f eV, max |F| %.4g eV/Å", stage.name,
                     res.iterations, res.energy_before_kJ_mol * KJ_PER_MOL_TO_EV, res.energy_after_kJ_mol * KJ_PER_MOL_TO_EV,
                     res.max_force_kJ_mol_nm * KJ_PER_MOL_NM_TO_EV_PER_A)
        else:
            cap = f"max_iterations {stage.max_iterations}" if stage.max_iterations else "no iteration cap"
            log.warning("stage '%s': minimization ended unconverged after %d iterations (%s): RMS force %.4g > "
                        "tolerance %.4g kJ/mol/nm, max |F| %.4g eV/Å; the structure is not at an energy minimum "
                        "(raise max_iterations, or look for atoms closer than the model was trained for)", stage.name,
                        res.iterations, cap, res.rms_force_kJ_mol_nm, stage.tolerance_kJ_mol_nm,
                        res.max_force_kJ_mol_nm * KJ_PER_MOL_NM_TO_EV_PER_A)
        self._event_checkpoint(i, sim, 0, complete=True)
        return True

    def _dynamics(self, i: int, sim: Any, step: int, resumed: bool) -> bool:
        """Run stage ``i`` from ``step``; False when a signal stopped it (checkpoint written)."""
        import openmm
        from openmm import unit

        stage, n, ctx = self.stages[i], self.steps[i], sim.context
        if not resumed and stage.initial_velocities == "maxwell":
            t0 = self._target(i, 0) or stage.temperature_K
            ctx.setVelocitiesToTemperature(t0 * unit.kelvin, _seed(self.proto.seed, i, 1))
        if not resumed:
            self.last_good = (checkpoint_bytes(ctx), self._book(i, 0, complete=n == 0))
        self._pbar.set_description(stage.name)
        self._rate_mark = (time.perf_counter(), self.step_offset[i] + step)
        ramp = getattr(stage, "temperature_ramp_K", None) is not None
        t_set = None
        while step < n:
            if self.stop_signal is not None:
                self._interrupt(i, sim, step)
                return False
            if ramp and self._target(i, step) != t_set:
                t_set = self._set_temperature(sim, self._target(i, step))
            stop = self._next_stop(i, step, ramp)
            t0 = time.perf_counter()
            try:
                sim.step(stop - step)
            except openmm.OpenMMException as exc:
                self._blowup(i, stop, f"OpenMM failed ({str(exc).splitlines()[0]})")
            if self.barostat is not None and stop % stage.barostat_interval_steps == 0:
                self.barostat.attempt(ctx)
            self.prov.stage_progress(i, stop - step, self.n_atoms, time.perf_counter() - t0)
            self._pbar.update(stop - step)
            step = stop
            self.global_step = self.step_offset[i] + step
            self._event(i, sim, step)
        if n == 0:
            self._event_checkpoint(i, sim, 0, complete=True)
        if self.barostat is not None:
            self.prov.stage_barostat(i, self.barostat)
        return True

    def _set_temperature(self, sim: Any, t: float) -> float:
        sim.integrator.setTemperature(t)
        if self.barostat is not None:
            self.barostat.temperature_K = t
        return t

    def _next_stop(self, i: int, step: int, ramp: bool) -> int:
        stage = self.stages[i]
        stops = [self.steps[i], _next_multiple(step, stage.report_interval_steps),
                 _next_multiple(step, stage.trajectory_interval_steps),
                 _next_multiple(step, self.proto.output.checkpoint_interval_steps)]
        if ramp:
            stops.append(_next_multiple(step, RAMP_UPDATE_STEPS))
        hf = getattr(stage, "heat_flux_interval_steps", None)
        if hf:
            stops.append(_next_multiple(step, hf))
        if self.monitor is not None:
            stops.append(_next_multiple(step, self.proto.extrapolation.interval_steps))
        if self.barostat is not None:
            stops.append(_next_multiple(step, stage.barostat_interval_steps))
        return min(stops)

    def _finish(self, state: Any) -> None:
        """final.<fmt> structures, final_state.xml, and the checkpoint marked completed."""
        import numpy as np
        import openmm
        from ase import units as ase_units
        from openmm import unit

        from sus2md.units import NM_TO_ANGSTROM

        atoms = self.atoms.copy()
        atoms.set_positions(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer) * NM_TO_ANGSTROM)
        v = state.getVelocities(asNumpy=True).value_in_unit(unit.nanometer / unit.picosecond) * NM_TO_ANGSTROM
        atoms.set_velocities(np.asarray(v) / (1000.0 * ase_units.fs))
        if self.periodic:
            atoms.set_cell(state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer) * NM_TO_ANGSTROM)
            atoms.wrap()
        _write_final(self.run_dir, atoms, self.proto.output.final_structure_formats)
        atomic_write(self.run_dir / "final_state.xml", openmm.XmlSerializer.serialize(state).encode())
        if self.last_good is not None:
            data, book = self.last_good
            write_checkpoint(self.run_dir, data, {**book, "completed": True})


_FINAL_FORMATS = {"extxyz": ("extxyz", "extxyz"), "cif": ("cif", "cif"), "pdb": ("pdb", "proteindatabank"),
                  "vasp": ("vasp", "vasp"), "lammps-data": ("lammps-data", "lammps-data")}


def _write_final(run_dir: Path, atoms: Any, formats: tuple[str, ...]) -> None:
    import ase.io

    for fmt in formats:
        ext, ase_fmt = _FINAL_FORMATS[fmt]
        a = atoms.copy()
        if fmt != "extxyz":  # velocities and extra arrays are extxyz-only
            a.set_momenta(None)
            a.arrays.pop("mtp_type", None)
        ase.io.write(run_dir / f"final.{ext}", a, format=ase_fmt)
