"""What a run reads from the Context at an event: a :class:`Snapshot`, the physical columns of a
thermo row (eV, K, Å^3, g/cm^3, bar), and the blow-up check that guards every write."""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from ase import units as ase_units

from sus2md.units import EV_PER_A3_TO_BAR, KB_EV, KJ_PER_MOL_TO_EV, NM_TO_ANGSTROM

#: g/cm^3 per (amu / Å^3), from ASE's CODATA amu
AMU_PER_A3_TO_G_PER_CM3: float = ase_units._amu * 1e3 / 1e-24
#: |F| above this (eV/Å) counts as a blow-up even when finite (atoms fused together)
MAX_FORCE_EV_A: float = 1.0e3
#: temperature ceilings: a thermostatted stage may reach this multiple of its target; NVE a fixed cap
MAX_T_FACTOR: float = 5.0
MAX_T_NVE_K: float = 10000.0

#: heat-flux hook: (positions (N, 3) nm, velocities (N, 3) nm/ps, box (3, 3) nm or None) -> J (3,) eV·Å/ps
HeatFluxFunction = Callable[[np.ndarray, np.ndarray, "np.ndarray | None"], np.ndarray]


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


#: virial source: (positions (N, 3) Å, cell (3, 3) Å) -> W (3, 3) eV
VirialFunction = Callable[[np.ndarray, np.ndarray], np.ndarray]


def eager_virial(model: Any, species_index: np.ndarray) -> VirialFunction:
    """W from the eager (or scripted) model by autograd over a fresh edge list."""
    def virial(positions_A: np.ndarray, cell_A: np.ndarray) -> np.ndarray:
        import torch

        from sus2md.nn.calc import build_graph, evaluate

        dtype = next(model.parameters()).dtype
        g = build_graph([species_index], [positions_A], [cell_A], [np.ones(3, dtype=bool)], float(model.cutoff),
                        dtype=dtype)
        with torch.enable_grad():
            w = evaluate(model, g, forces=False, virial=True).virial
        return w[0].detach().double().cpu().numpy()

    return virial


def adapter_virial(adapter: Any) -> VirialFunction:
    """W from a :class:`sus2md.export.padded.PaddedAdapter` (the compiled backend's own step and
    Verlet list: one more force evaluation, ~15x cheaper than the eager autograd virial)."""
    def virial(positions_A: np.ndarray, cell_A: np.ndarray) -> np.ndarray:
        import torch

        device = adapter.species.device
        f64 = dict(dtype=torch.float64, device=device)
        _, _, w = adapter.compute(torch.tensor(positions_A, **f64), torch.tensor(cell_A, **f64),
                                  torch.ones(3, dtype=torch.bool, device=device))
        return w.cpu().numpy()

    return virial


def virial_pressure_bar(virial: VirialFunction, snap: Snapshot) -> float | None:
    """Instantaneous pressure (bar), ``P = (2 KE + tr W) / 3V``, with the virial ``W`` (eV) of
    ``virial`` (OpenMM's forces carry no virial); None for a non-periodic system."""
    if snap.box_nm is None:
        return None
    cell = snap.box_nm * NM_TO_ANGSTROM
    trace_w = float(np.trace(virial(snap.positions_nm * NM_TO_ANGSTROM, cell)))
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
