"""Batched evaluation: many small cells (training, ``sus2md eval``) or one large cell (MD).

A :class:`Graph` packs B configurations into one set of atoms and directed edges; ``evaluate``
returns energies, forces and virials.  Forces and the virial come from one autograd pass over
the edge vectors (SPEC-sus2 6.2, 6.3)::

    d_e = dE/dr_e,   F_i += d_e,  F_j -= d_e,   W = -sum_e d_e (x) r_e     (eV)

Stress in ASE's convention (tensile positive, eV/Å^3) is ``-W / V``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from sus2md.nn.neighbors import neighbor_list
from sus2md.nn.potential import SUS2Potential


@dataclass
class Graph:
    """B configurations as one graph (tensors on one device, positions in Å)."""

    species: Tensor  # (N,) int64
    positions: Tensor  # (N, 3)
    cells: Tensor  # (B, 3, 3) rows = lattice vectors
    pbc: Tensor  # (B, 3) bool
    batch: Tensor  # (N,) int64 configuration of each atom
    edge_i: Tensor  # (E,)
    edge_j: Tensor  # (E,)
    shifts: Tensor  # (E, 3) image shifts in lattice vectors
    n_atoms: Tensor  # (B,)

    @property
    def n_configs(self) -> int:
        return int(self.cells.shape[0])

    def to(self, device=None, dtype: Optional[torch.dtype] = None) -> "Graph":
        fl = lambda t: t.to(device=device, dtype=dtype) if dtype is not None else t.to(device)
        return Graph(
            self.species.to(device), fl(self.positions), fl(self.cells), self.pbc.to(device), self.batch.to(device),
            self.edge_i.to(device), self.edge_j.to(device), fl(self.shifts), self.n_atoms.to(device),
        )

    def edge_vectors(self) -> Tensor:
        cell_e = self.cells.index_select(0, self.batch.index_select(0, self.edge_i))
        d = self.positions.index_select(0, self.edge_j) - self.positions.index_select(0, self.edge_i)
        return d + torch.bmm(self.shifts.to(d.dtype).unsqueeze(1), cell_e).squeeze(1)


def build_graph(
    species: Sequence[np.ndarray],
    positions: Sequence[np.ndarray],
    cells: Sequence[np.ndarray],
    pbcs: Sequence[np.ndarray],
    cutoff: float,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> Graph:
    """Pack configurations (numpy arrays, Å) into a :class:`Graph` with neighbor lists."""
    sp, pos, cel, pb, bat, ei, ej, sh, na = [], [], [], [], [], [], [], [], []
    offset = 0
    for b, (s, x, c, p) in enumerate(zip(species, positions, cells, pbcs)):
        x_t = torch.as_tensor(np.asarray(x, dtype=np.float64))
        c_t = torch.as_tensor(np.asarray(c, dtype=np.float64)).reshape(3, 3)
        p_t = torch.as_tensor(np.asarray(p, dtype=bool)).reshape(3)
        i, j, shift = neighbor_list(x_t, c_t, p_t, cutoff)
        n = x_t.shape[0]
        sp.append(torch.as_tensor(np.asarray(s, dtype=np.int64)))
        pos.append(x_t)
        cel.append(c_t)
        pb.append(p_t)
        bat.append(torch.full((n,), b, dtype=torch.long))
        ei.append(i + offset)
        ej.append(j + offset)
        sh.append(shift)
        na.append(n)
        offset += n
    g = Graph(
        torch.cat(sp), torch.cat(pos), torch.stack(cel), torch.stack(pb), torch.cat(bat),
        torch.cat(ei), torch.cat(ej), torch.cat(sh), torch.as_tensor(na, dtype=torch.long),
    )
    return g.to(device=device, dtype=dtype)


@dataclass
class Results:
    energy: Tensor  # (B,) eV
    site_energies: Tensor  # (N,) eV
    forces: Optional[Tensor] = None  # (N, 3) eV/Å
    virial: Optional[Tensor] = None  # (B, 3, 3) eV, PlusStress convention

    def stress(self, cells: Tensor) -> Tensor:
        """ASE stress (B, 3, 3), eV/Å^3, tensile positive: -W/V."""
        assert self.virial is not None
        vol = torch.abs(torch.linalg.det(cells))
        return -self.virial / vol.reshape(-1, 1, 1)


def edge_forces(n_atoms: int, edge_i: Tensor, edge_j: Tensor, d: Tensor) -> Tensor:
    """Forces (N, 3) from edge gradients d_e = dE/dr_e: ``F_i += d_e``, ``F_j -= d_e``."""
    f = torch.zeros((n_atoms, 3), dtype=d.dtype, device=d.device)
    return f.index_add(0, edge_i, d).index_add(0, edge_j, -d)


def edge_virials(graph: Graph, d: Tensor, vec: Tensor) -> Tensor:
    """Virial of every configuration (B, 3, 3), eV: ``W = -sum_e d_e (x) r_e``."""
    w_e = -d.unsqueeze(2) * vec.unsqueeze(1)  # (E, 3, 3): -d_a r_b
    eb = graph.batch.index_select(0, graph.edge_i)
    return torch.zeros((graph.n_configs, 3, 3), dtype=d.dtype, device=d.device).index_add(0, eb, w_e)


def edge_gradients(
    model: SUS2Potential, graph: Graph, create_graph: bool = False, analytic: bool = False
) -> Tuple[Tensor, Tensor, Tensor]:
    """Site energies (N,) eV, edge gradients d_e = dE/dr_e (E, 3) eV/Å and edge vectors (E, 3) Å.

    ``create_graph=True`` keeps the graph so d_e can be differentiated again (training);
    ``analytic=True`` uses the model's explicit reverse pass instead of autograd.
    """
    vec = graph.edge_vectors()
    if analytic and not create_graph:
        with torch.no_grad():
            e_site, d = model.energies_and_edge_gradients(graph.species, graph.edge_i, graph.edge_j, vec.detach())
        return e_site, d, vec.detach()
    vec = vec.requires_grad_(True) if create_graph else vec.detach().requires_grad_(True)
    e_site = model(graph.species, graph.edge_i, graph.edge_j, vec)
    (d,) = torch.autograd.grad(e_site.sum(), vec, create_graph=create_graph)
    return e_site, d, vec


def evaluate(
    model: SUS2Potential,
    graph: Graph,
    forces: bool = True,
    virial: bool = True,
    create_graph: bool = False,
    analytic: bool = False,
) -> Results:
    """Energies (and forces/virial) of every configuration in ``graph``.

    ``create_graph=True`` keeps the graph of the force computation so a loss on forces can be
    differentiated with respect to the parameters (training).  ``analytic=True`` uses the
    model's explicit reverse pass instead of autograd (same numbers; on CPU autograd is as fast).
    """
    if not (forces or virial):
        e_site = model(graph.species, graph.edge_i, graph.edge_j, graph.edge_vectors())
    else:
        e_site, d, vec = edge_gradients(model, graph, create_graph=create_graph, analytic=analytic)
    energy = torch.zeros(graph.n_configs, dtype=e_site.dtype, device=e_site.device).index_add(0, graph.batch, e_site)
    res = Results(energy=energy, site_energies=e_site)
    if forces:
        res.forces = edge_forces(graph.positions.shape[0], graph.edge_i, graph.edge_j, d)
    if virial:
        res.virial = edge_virials(graph, d, vec)
    return res


def frame_batches(n_atoms: Sequence[int], batch_atoms: int) -> list[tuple[int, int]]:
    """(start, stop) ranges of consecutive configurations with at most ``batch_atoms`` atoms each
    (a larger configuration gets a range of its own)."""
    ranges, start = [], 0
    while start < len(n_atoms):
        stop, n = start, 0
        while stop < len(n_atoms) and (n == 0 or n + n_atoms[stop] <= batch_atoms):
            n += n_atoms[stop]
            stop += 1
        ranges.append((start, stop))
        start = stop
    return ranges


def graph_from_atoms(atoms_list, cutoff: float, dtype: torch.dtype = torch.float64, device="cpu") -> Graph:
    """:class:`Graph` from ASE Atoms carrying ``arrays['mtp_type']`` (see :mod:`sus2md.io.data`)."""
    return build_graph(
        [a.arrays["mtp_type"] for a in atoms_list],
        [a.positions for a in atoms_list],
        [np.asarray(a.cell) for a in atoms_list],
        [a.pbc for a in atoms_list],
        cutoff,
        dtype=dtype,
        device=device,
    )
