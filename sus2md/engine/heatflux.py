r"""Per-atom (centroid) virials and the heat current of a SUS2 site-energy potential.

Derivation
----------
The potential energy is a sum of site energies, ``E = sum_i E_i``, and ``E_i`` depends on the
positions only through the directed edges ``e = (i -> j, T)`` with ``r_e = r_j + T - r_i``
(SPEC-sus2 6.2).  Write ``d_e = dE_i/dr_e`` (eV/Å).  The edge moves the forces
``F_i += d_e``, ``F_j -= d_e`` and the total virial is ``W = -sum_e d_e (x) r_e`` (eV).

With the per-atom energy ``e_i = E_i + m_i v_i^2 / 2``, the heat current of an isolated system is
the time derivative of the energy dipole::

    J = d/dt sum_i r_i e_i = sum_i e_i v_i + sum_i r_i de_i/dt
    de_i/dt = F_i . v_i + sum_k (dE_i/dr_k) . v_k           (Newton: m a_i = F_i)
            = -sum_k (dE_k/dr_i) . v_i + sum_k (dE_i/dr_k) . v_k

Swapping the summation labels of the first sum gives
``sum_i r_i de_i/dt = sum_i sum_k (r_i - r_k) (dE_i/dr_k . v_k)``.  Only edges carry the
dependence, ``dE_i/dr_j = sum_{e: i->j} d_e`` for j != i (the i = k term has r_i - r_k = 0), and
``r_i - r_j = -r_e``::

    J = sum_i e_i v_i - sum_e r_e (d_e . v_{j(e)})
      = sum_i e_i v_i + sum_j W_j v_j,        W_j[a, b] = -sum_{e: i->j} r_e,a d_e,b    (eV)

The edge term of *centre* i's site energy is attributed to the *neighbour* j: atom j's per-atom
virial is built from the derivatives of the other atoms' site energies with respect to their
edge vectors pointing at j.  This is the form of Fan et al., Phys. Rev. B 92, 094301 (2015)
(``W_i = sum_j r_ij (x) dU_j/dr_ji``), exact for many-body potentials, and what LAMMPS calls the
*centroid* per-atom virial (``compute centroid/stress/atom``: component ``xy`` is
``r_x f_y``, and ``compute heat/flux`` forms ``J_a -= S_ab v_b`` with ``S = -W``).  Using the
edge vectors rather than positions makes the same formula the correct periodic heat current
(images included, so cells thinner than 2 r_c are fine).  Attributing the term to the centre
atom instead (the old ``stress/atom`` for many-body potentials) is wrong; the tests show it.

Conventions of this module:

* ``sum_j W_j = W^T = W`` (the total PlusStress virial; symmetric for a rotation-invariant model);
* ``J = sum_i e_i v_i + sum_i W_i v_i`` in eV*Å/ps, the *total* current (not divided by V).  In
  LAMMPS words, ``J = sum_i e_i v_i - sum_i S_i v_i`` with ``S_i = -W_i`` the per-atom
  stress*volume; the Green-Kubo helper uses ``kappa = <J(0).J(t)> / (3 V kB T^2)`` integrated.

Multi-component caveat: the convective term ``sum_i e_i v_i`` includes the per-species constants
``shift + c`` of the site energies.  In a solid without diffusion they average out; in a
superionic conductor (Cu2Se) they couple the mass current into J.  ``convective=False`` drops
the term (GPUMD's practice for solids); with it kept the result equals LAMMPS' ``heat/flux``.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from ase import Atoms
from ase import units as _ase_units
from ase.data import atomic_masses, atomic_numbers

from sus2md.errors import UsageError
from sus2md.nn.calc import Graph, build_graph, edge_gradients
from sus2md.nn.potential import SUS2Potential
from sus2md.units import NM_TO_ANGSTROM

__all__ = ["per_atom_virials", "heat_current", "heat_current_from_state", "edge_derivatives"]

#: kinetic energy of 1 amu moving at 1 Å/ps, in eV (1 ps = 1000 fs in ASE time units)
AMU_A2_PER_PS2_TO_EV: float = 1.0 / (1000.0 * _ase_units.fs) ** 2


def _dtype(model: SUS2Potential) -> torch.dtype:
    return next(model.parameters()).dtype


def _device(model: SUS2Potential) -> torch.device:
    return next(model.parameters()).device


def _types(model: SUS2Potential, atoms: Atoms) -> np.ndarray:
    """Species index of every atom: ``arrays['mtp_type']``, else element symbols via the model."""
    if "mtp_type" in atoms.arrays:
        return np.asarray(atoms.arrays["mtp_type"], dtype=np.int64)
    if not model.species_names:
        raise UsageError("the atoms carry no arrays['mtp_type'] and the model does not name its elements; "
                         "load the model with species=[...]")
    from sus2md.io.data import species_index

    return species_index(atoms, model.species_names)


def _graph(model: SUS2Potential, atoms_or_graph: Atoms | Graph) -> Graph:
    if isinstance(atoms_or_graph, Graph):
        return atoms_or_graph.to(device=_device(model), dtype=_dtype(model))
    a = atoms_or_graph
    return build_graph([_types(model, a)], [a.positions], [np.asarray(a.cell)], [a.pbc], model.cutoff,
                       dtype=_dtype(model), device=_device(model))


def edge_derivatives(model: SUS2Potential, graph: Graph) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Site energies and per-edge derivatives of one graph.

    Returns:
        ``E_i`` (N,) eV, ``d_e = dE_{i(e)}/dr_e`` (E, 3) eV/Å and ``r_e`` (E, 3) Å, all detached.
    """
    e_site, d, vec = edge_gradients(model, graph)
    return e_site.detach(), d, vec.detach()


def _per_atom_virials_t(graph: Graph, d: torch.Tensor, vec: torch.Tensor) -> torch.Tensor:
    w_e = -vec.unsqueeze(2) * d.unsqueeze(1)  # (E, 3, 3): -r_a d_b
    n = graph.positions.shape[0]
    return torch.zeros((n, 3, 3), dtype=d.dtype, device=d.device).index_add(0, graph.edge_j, w_e)


def per_atom_virials(model: SUS2Potential, atoms_or_graph: Atoms | Graph) -> np.ndarray:
    """Centroid per-atom virials ``W_j[a, b] = -sum_{e: i->j} r_e,a d_e,b`` (N, 3, 3), eV.

    ``atoms_or_graph``: ASE Atoms (types from ``arrays['mtp_type']`` or element symbols mapped
    through ``model.species_names``) or a :class:`~sus2md.nn.calc.Graph` (all its atoms).
    ``sum_j W_j`` is the transpose of the total (PlusStress) virial, i.e. the virial itself for a
    rotation-invariant model (to ~1e-12 eV).  LAMMPS' 9-component order
    (xx yy zz xy xz yz yx zx zy) is ``W[:, [0,1,2,0,0,1,1,2,2], [0,1,2,1,2,2,0,0,1]]``.
    """
    g = _graph(model, atoms_or_graph)
    _, d, vec = edge_derivatives(model, g)
    return _per_atom_virials_t(g, d, vec).double().cpu().numpy()


def _heat_current(model: SUS2Potential, graph: Graph, v: np.ndarray, masses: np.ndarray,
                  convective: bool) -> np.ndarray:
    e_site, d, vec = edge_derivatives(model, graph)
    w = _per_atom_virials_t(graph, d, vec).double().cpu().numpy()
    v = np.asarray(v, dtype=np.float64)
    j = np.einsum("iab,ib->a", w, v)
    if convective:
        kin = 0.5 * np.asarray(masses, dtype=np.float64) * (v * v).sum(axis=1) * AMU_A2_PER_PS2_TO_EV
        e = e_site.double().cpu().numpy() + kin
        j = j + (e[:, None] * v).sum(axis=0)
    return j


def _check_velocities(v: np.ndarray, n: int) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    if v.shape != (n, 3):
        raise UsageError(f"velocities must have shape ({n}, 3), got {v.shape}")
    return v


def heat_current(model: SUS2Potential, atoms: Atoms, velocities_A_per_ps: np.ndarray | None = None,
                 convective: bool = True) -> np.ndarray:
    """Total heat current ``J = sum_i e_i v_i + sum_i W_i v_i`` (3,), eV*Å/ps.

    Args:
        model: the potential (its dtype is used).
        atoms: positions/cell in Å, masses from ``atoms.get_masses()`` (amu).
        velocities_A_per_ps: (N, 3) Å/ps; default: ``atoms.get_velocities()`` converted from ASE units.
        convective: include ``sum_i e_i v_i`` (``e_i`` = site + kinetic energy, eV).
    """
    if velocities_A_per_ps is None:
        velocities_A_per_ps = atoms.get_velocities() * (1000.0 * _ase_units.fs)
    v = _check_velocities(velocities_A_per_ps, len(atoms))
    return _heat_current(model, _graph(model, atoms), v, atoms.get_masses(), convective)


def _strip(x, per_ps: bool = False) -> np.ndarray:
    """Numpy array from an array or an ``openmm.unit.Quantity`` (converted to nm or nm/ps)."""
    if hasattr(x, "value_in_unit"):
        from openmm import unit

        x = x.value_in_unit(unit.nanometer / unit.picosecond if per_ps else unit.nanometer)
    return np.asarray(x, dtype=np.float64)


def _species_indices(model: SUS2Potential, species: Sequence[int] | Sequence[str]) -> np.ndarray:
    sp = list(species)
    if sp and isinstance(sp[0], str):
        names = list(model.species_names)
        unknown = sorted(set(sp) - set(names))
        if unknown:
            raise UsageError(f"elements {', '.join(unknown)} are not among the model's species "
                             f"{', '.join(names) or '(unnamed: pass species indices)'}")
        return np.array([names.index(s) for s in sp], dtype=np.int64)
    idx = np.asarray(sp, dtype=np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= model.n_species):
        raise UsageError(f"species indices must lie in 0..{model.n_species - 1}")
    return idx


def _default_masses(model: SUS2Potential, idx: np.ndarray) -> np.ndarray:
    if not model.species_names:
        raise UsageError("masses_amu is needed: the model does not name its elements")
    per_species = np.array([atomic_masses[atomic_numbers[s]] for s in model.species_names])
    return per_species[idx]


def heat_current_from_state(model: SUS2Potential, species: Sequence[int] | Sequence[str], positions_nm,
                            velocities_nm_per_ps, box_nm=None, masses_amu: np.ndarray | None = None,
                            convective: bool = True) -> np.ndarray:
    """Heat current of an OpenMM state (for the run engine's heat-flux hook), eV*Å/ps, (3,).

    Args:
        species: per-particle species index (int) or element symbol (mapped via the model).
        positions_nm: (N, 3) nm (array or ``openmm.unit.Quantity``).
        velocities_nm_per_ps: (N, 3) nm/ps.
        box_nm: (3, 3) periodic box vectors as rows, nm; None for a non-periodic system.
        masses_amu: (N,) amu; default: standard atomic masses of the species' elements.
        convective: include ``sum_i e_i v_i``.
    """
    idx = _species_indices(model, species)
    pos = _strip(positions_nm) * NM_TO_ANGSTROM
    v = _check_velocities(_strip(velocities_nm_per_ps, per_ps=True) * NM_TO_ANGSTROM, len(idx))
    if box_nm is None:
        cell, pbc = np.zeros((3, 3)), np.zeros(3, dtype=bool)
    else:
        cell, pbc = _strip(box_nm).reshape(3, 3) * NM_TO_ANGSTROM, np.ones(3, dtype=bool)
    masses = _default_masses(model, idx) if masses_amu is None else np.asarray(masses_amu, dtype=np.float64)
    g = build_graph([idx], [pos], [cell], [pbc], model.cutoff, dtype=_dtype(model), device=_device(model))
    return _heat_current(model, g, v, masses, convective)

