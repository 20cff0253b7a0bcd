"""Integrators, barostats, platforms and a ready ``Simulation`` for a SUS2 model.

Units in names: ``timestep_fs``, ``temperature_K``, ``friction_per_ps``, ``pressure_bar``.
NPT needs no virial: Monte Carlo barostats accept moves on the energy alone (protocols use
:mod:`sus2md.engine.barostat`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

import torch

import openmm  # isort: skip
from openmm import app, unit  # isort: skip

from ase import Atoms

from sus2md.engine.force import ForceInfo, make_force
from sus2md.engine.system import build_system
from sus2md.engine.threads import apply_threads
from sus2md.errors import UsageError
from sus2md.nn.potential import SUS2Potential
from sus2md.units import EV_PER_A_TO_KJ_PER_MOL_NM, KJ_PER_MOL_TO_EV

__all__ = ["make_integrator", "make_barostat", "make_platform", "create_simulation", "minimize", "MinimizeResult"]

log = logging.getLogger(__name__)

INTEGRATORS = ("verlet", "langevin", "nose-hoover")
BAROSTATS = ("isotropic", "anisotropic", "flexible")
PRECISIONS = ("single", "mixed", "double")


def make_integrator(kind: str, timestep_fs: float, temperature_K: float | None = None,
                    friction_per_ps: float = 1.0, collision_frequency_per_ps: float = 1.0,
                    seed: int | None = None) -> openmm.Integrator:
    """``verlet`` (NVE), ``langevin`` (LangevinMiddle, NVT) or ``nose-hoover`` (chain, NVT)."""
    if kind not in INTEGRATORS:
        raise UsageError(f"integrator must be one of {', '.join(INTEGRATORS)}, got {kind!r}")
    if not timestep_fs > 0:
        raise UsageError(f"timestep_fs must be > 0, got {timestep_fs}")
    dt = timestep_fs * unit.femtosecond
    if kind == "verlet":
        return openmm.VerletIntegrator(dt)
    if temperature_K is None or not temperature_K > 0:
        raise UsageError(f"the {kind} integrator needs temperature_K > 0, got {temperature_K}")
    if kind == "langevin":
        if not friction_per_ps > 0:
            raise UsageError(f"friction_per_ps must be > 0, got {friction_per_ps}")
        integ = openmm.LangevinMiddleIntegrator(temperature_K * unit.kelvin, friction_per_ps / unit.picosecond, dt)
        if seed is not None:
            integ.setRandomNumberSeed(int(seed))
        return integ
    if not collision_frequency_per_ps > 0:
        raise UsageError(f"collision_frequency_per_ps must be > 0, got {collision_frequency_per_ps}")
    return openmm.NoseHooverIntegrator(temperature_K * unit.kelvin, collision_frequency_per_ps / unit.picosecond, dt)


def make_barostat(kind: str, pressure_bar: float, temperature_K: float, interval_steps: int = 25,
                  seed: int | None = None) -> openmm.Force:
    """OpenMM's own Monte Carlo barostat force, for scripts that build their System by hand:
    ``isotropic`` (volume), ``anisotropic`` (three box lengths) or ``flexible`` (all six cell
    degrees of freedom).  Protocols use :class:`sus2md.engine.barostat.CellBarostat` instead: it
    reports acceptance and moves atoms affinely; OpenMM's flexible barostat scales atoms along the
    diagonal only and does not move a crystal's box (see that module)."""
    if kind not in BAROSTATS:
        raise UsageError(f"barostat must be one of {', '.join(BAROSTATS)}, got {kind!r}")
    if not temperature_K > 0:
        raise UsageError(f"a barostat needs temperature_K > 0, got {temperature_K}")
    if int(interval_steps) < 1:
        raise UsageError(f"barostat interval_steps must be >= 1, got {interval_steps}")
    p, t, n = pressure_bar * unit.bar, temperature_K * unit.kelvin, int(interval_steps)
    if kind == "isotropic":
        baro = openmm.MonteCarloBarostat(p, t, n)
    elif kind == "anisotropic":
        baro = openmm.MonteCarloAnisotropicBarostat(openmm.Vec3(pressure_bar, pressure_bar, pressure_bar) * unit.bar,
                                                    t, True, True, True, n)
    else:
        baro = openmm.MonteCarloFlexibleBarostat(p, t, n, False)
    if seed is not None:
        baro.setRandomNumberSeed(int(seed))
    return baro


def make_platform(name: str = "CPU", precision: str | None = None, threads: int | None = None,
                  cuda_graphs: bool = False) -> tuple[openmm.Platform, dict[str, str]]:
    """OpenMM platform by name (case-insensitive) and its properties.

    ``precision`` (single/mixed/double) is set where the platform has a ``Precision`` property
    (CUDA, OpenCL) and ignored otherwise (Reference is double; the model's own precision is its
    dtype).  ``threads`` sets the CPU platform's ``Threads`` and torch's intra-op thread count
    (the model runs in torch): one setting for both; None = the usable cores that are idle
    (:func:`sus2md.engine.threads.default_threads`).  ``cuda_graphs`` is only valid for CUDA.
    """
    names = [openmm.Platform.getPlatform(k).getName() for k in range(openmm.Platform.getNumPlatforms())]
    match = [n for n in names if n.lower() == name.lower()]
    if not match:
        raise UsageError(f"OpenMM platform {name!r} is not available; this installation has {', '.join(names)}")
    platform = openmm.Platform.getPlatformByName(match[0])
    props: dict[str, str] = {}
    if precision is not None:
        if precision not in PRECISIONS:
            raise UsageError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        if "Precision" in platform.getPropertyNames():
            props["Precision"] = precision
        else:
            log.debug("platform %s has no Precision property; precision=%s ignored", match[0], precision)
    if threads is not None and int(threads) < 1:
        raise UsageError(f"threads must be >= 1, got {threads}")
    n = apply_threads(threads)
    if "Threads" in platform.getPropertyNames():
        props["Threads"] = str(n)
    if cuda_graphs and match[0] != "CUDA":
        raise UsageError(f"CUDA graphs need the CUDA platform, got {match[0]}")
    return platform, props


def model_device(platform: openmm.Platform) -> str:
    """Where a PythonForce model runs: the GPU for OpenMM's CUDA platform, else the CPU."""
    return "cuda" if platform.getName() == "CUDA" else "cpu"


def create_simulation(atoms: Atoms, model: str | Path | SUS2Potential | torch.jit.ScriptModule, *, backend: str = "auto",
                      dtype: str | None = None, platform: str = "CPU", precision: str | None = None,
                      threads: int | None = None, integrator: openmm.Integrator,
                      barostat: openmm.Force | None = None, remove_com_motion: bool = True,
                      species: Sequence[str] | None = None, cuda_graphs: bool = False) -> app.Simulation:
    """A ``Simulation`` of ``atoms`` (Å) under ``model`` with positions set (velocities are not).

    ``model`` is anything :func:`~sus2md.engine.force.to_openmm_force` takes; ``dtype`` None
    keeps a compiled model's dtype (float64 for ``.mtp``/eager models); ``species`` names the
    model's elements when the model file has none.  ``sim.sus2md_force_info`` is the
    :class:`~sus2md.engine.force.ForceInfo` of the force (backend, dtype, device that ran) and
    ``sim.sus2md_threads`` the thread count.
    """
    plat, props = make_platform(platform, precision, threads, cuda_graphs)
    periodic = bool(atoms.pbc.all())
    if barostat is not None and not periodic:
        raise UsageError("a barostat needs a periodic structure (pbc on all three axes)")
    force, info = make_force(model, atoms, backend=backend, dtype=dtype, device=model_device(plat),
                             use_cuda_graphs=cuda_graphs, species=species, periodic=periodic,
                             threads=torch.get_num_threads())  # make_platform applied the thread setting
    top, system, pos_nm = build_system(atoms, force, remove_com_motion=remove_com_motion)
    if barostat is not None:
        system.addForce(barostat)
    sim = app.Simulation(top, system, integrator, plat, props)
    sim.context.setPositions(pos_nm * unit.nanometer)
    sim.sus2md_force_info: ForceInfo = info
    sim.sus2md_threads = torch.get_num_threads()
    return sim


@dataclass
class MinimizeResult:
    """What :func:`minimize` did: energies (kJ/mol), L-BFGS iterations, the force criterion at the
    end (RMS and largest atomic force, kJ/mol/nm), whether it converged, and whether ``should_stop``
    ended it early."""

    energy_before_kJ_mol: float
    energy_after_kJ_mol: float
    iterations: int
    rms_force_kJ_mol_nm: float
    max_force_kJ_mol_nm: float
    converged: bool
    stopped: bool


class _Progress(openmm.MinimizationReporter):
    """Logs energy and max |F| every ``every`` iterations; asks ``should_stop`` at each one."""

    def __init__(self, every: int, should_stop: Callable[[], bool] | None, label: str):
        super().__init__()
        self.every, self.should_stop, self.label = int(every), should_stop, label
        self.iterations = 0
        self.stopped = False

    def report(self, iteration, x, grad, args):  # noqa: ANN001 - OpenMM's signature
        self.iterations = int(iteration) + 1
        if self.every and iteration % self.every == 0:
            g = np.asarray(grad, dtype=float).reshape(-1, 3)
            fmax = float(np.sqrt((g * g).sum(1)).max()) if len(g) else 0.0
            log.info("%sminimize: iteration %d, E = %.6f eV, max |F| = %.4g eV/Å", self.label, iteration,
                     args["system energy"] * KJ_PER_MOL_TO_EV, fmax / EV_PER_A_TO_KJ_PER_MOL_NM)
        if self.should_stop is not None and self.should_stop():
            self.stopped = True
            return True
        return False


def minimize(simulation: app.Simulation, tolerance_kJ_mol_nm: float = 10.0, max_iterations: int = 1000, *,
             log_interval: int = 100, should_stop: Callable[[], bool] | None = None,
             label: str = "") -> MinimizeResult:
    """L-BFGS energy minimization in place (OpenMM's ``LocalEnergyMinimizer``).

    It stops when the root-mean-square of all force components is below ``tolerance_kJ_mol_nm``,
    after ``max_iterations`` iterations (0: no cap), or when ``should_stop()`` returns True (it
    is asked at every iteration, so a signal handler that sets a flag ends even a minimization
    that would never converge within one iteration).  Progress is logged every ``log_interval``
    iterations (0: never).  An unconverged end is reported in the result, not raised.
    """
    def energy() -> float:
        st = simulation.context.getState(getEnergy=True)
        return st.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)

    before = energy()
    progress = _Progress(log_interval, should_stop, label)
    simulation.minimizeEnergy(tolerance=tolerance_kJ_mol_nm * unit.kilojoule_per_mole / unit.nanometer,
                              maxIterations=int(max_iterations), reporter=progress)
    st = simulation.context.getState(getEnergy=True, getForces=True)
    f = np.asarray(st.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer))
    rms = float(np.sqrt(np.mean(f * f))) if f.size else 0.0
    fmax = float(np.sqrt((f * f).sum(1)).max()) if f.size else 0.0
    after = st.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    converged = bool(np.isfinite(rms) and rms <= tolerance_kJ_mol_nm)
    return MinimizeResult(before, after, progress.iterations, rms, fmax, converged, progress.stopped)
