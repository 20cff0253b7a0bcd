"""The OpenMM unit/neighbour-list shell around a :class:`SUS2Potential` (``TorchForce`` contract).

The adapter speaks OpenMM's units and does the conversion at one boundary::

    r_A = 10 r_nm,     E_kJ/mol = E_eV * EV_TO_KJ_PER_MOL,     F_kJ/mol/nm = F_eV/Å * EV_TO_KJ_PER_MOL * 10

It is structure-independent: the per-particle species are bound when the force is created
(:meth:`OpenMMAdapter.set_species`).  Neighbors are all periodic images within r_c
(:func:`sus2md.nn.neighbors.neighbor_list`), so triclinic cells and cells thinner than 2 r_c work.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

from sus2md.nn.calc import edge_forces
from sus2md.nn.neighbors import edge_vectors, neighbor_list
from sus2md.nn.potential import SUS2Potential
from sus2md.units import EV_TO_KJ_PER_MOL, NM_TO_ANGSTROM

__all__ = ["OpenMMAdapter", "DEFAULT_SKIN_A", "DTYPES", "UNITS"]

#: Verlet skin of the neighbor list inside the adapter (Å); 0 rebuilds it at every call.
DEFAULT_SKIN_A = 0.5
UNITS = "positions nm, box nm, energy kJ/mol, forces kJ/mol/nm"
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def _require_species(n_bound: int, n: int) -> None:
    """The species bound to the force must cover every particle of the system."""
    if n_bound != n:
        raise RuntimeError(
            "sus2md: species are bound for " + str(n_bound) + " particles but the system has "
            + str(n) + "; create the force with sus2md.engine.to_openmm_force (or call set_species)")

class OpenMMAdapter(torch.nn.Module):
    """OpenMM ``TorchForce`` contract around a :class:`SUS2Potential`.

    ``forward(positions (N, 3) nm, boxvectors (3, 3) nm rows or None) -> (energy, forces)``:
    energy a float64 scalar in kJ/mol, forces (N, 3) kJ/mol/nm in the dtype of ``positions``
    (use ``TorchForce.setOutputsForces(True)``).  ``boxvectors=None`` means a non-periodic cluster.
    Inputs are cast to the model's dtype and device inside; site energies are summed in float64.
    """

    def __init__(self, model: SUS2Potential, skin_A: float = DEFAULT_SKIN_A):
        super().__init__()
        self.model = model
        self.cutoff = float(model.cutoff)
        self.skin = float(skin_A)
        self.nm_to_A = float(NM_TO_ANGSTROM)
        self.ev_to_kj = float(EV_TO_KJ_PER_MOL)
        self.register_buffer("species", torch.zeros(0, dtype=torch.long))
        # Verlet list: pairs within r_c + skin, kept until an atom moved more than skin/2 or the
        # box changed; each call keeps only the pairs inside r_c (cheap), so results are exact.
        self.register_buffer("nl_pos", torch.zeros((0, 3), dtype=torch.float64))
        self.register_buffer("nl_cell", torch.zeros((3, 3), dtype=torch.float64))
        self.register_buffer("nl_i", torch.zeros(0, dtype=torch.long))
        self.register_buffer("nl_j", torch.zeros(0, dtype=torch.long))
        self.register_buffer("nl_shifts", torch.zeros((0, 3), dtype=torch.float64))
        self.nl_builds = 0
        # analytic=True: forces from the model's explicit reverse pass (no autograd), which
        # torch.compile can fuse (the "compiled" python backend); TorchScript uses autograd.
        self.analytic = False

    def _neighbors(self, pos: Tensor, cell: Tensor, pbc: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """Pairs within r_c, from the cached Verlet list when it is still valid."""
        if self.skin <= 0.0:
            return neighbor_list(pos, cell, pbc, self.cutoff)
        p64 = pos.to(torch.float64)
        c64 = cell.to(torch.float64)
        stale = self.nl_pos.shape[0] != pos.shape[0] or not torch.equal(self.nl_cell, c64)
        if not stale:
            disp = p64 - self.nl_pos.to(p64.device)
            stale = bool(((disp * disp).sum(dim=1) > 0.25 * self.skin * self.skin).any())
        if stale:
            i, j, shifts = neighbor_list(pos, cell, pbc, self.cutoff + self.skin)
            self.nl_pos = p64.clone()
            self.nl_cell = c64.clone()
            self.nl_i = i
            self.nl_j = j
            self.nl_shifts = shifts.to(torch.float64)
            self.nl_builds += 1
        vec = edge_vectors(pos, cell, self.nl_i, self.nl_j, self.nl_shifts.to(pos.dtype))
        keep = torch.nonzero((vec * vec).sum(dim=1) < self.cutoff * self.cutoff).squeeze(1)
        return self.nl_i.index_select(0, keep), self.nl_j.index_select(0, keep), self.nl_shifts.index_select(0, keep).to(pos.dtype)

    @torch.jit.export
    def set_species(self, species: Tensor) -> None:
        """Bind the (N,) int64 model species index of every particle."""
        self.species = species.to(device=self.species.device, dtype=torch.long)

    def forward(self, positions: Tensor, boxvectors: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        n = positions.shape[0]
        _require_species(self.species.shape[0], n)
        dtype = self.model.shift.dtype
        device = self.species.device
        pos = positions.detach().to(device=device, dtype=dtype) * self.nm_to_A
        if boxvectors is None:
            cell = torch.zeros((3, 3), dtype=dtype, device=device)
            pbc = torch.zeros(3, dtype=torch.bool, device=device)
        else:
            cell = boxvectors.detach().to(device=device, dtype=dtype) * self.nm_to_A
            pbc = torch.ones(3, dtype=torch.bool, device=device)
        i, j, shifts = self._neighbors(pos, cell, pbc)
        if self.analytic:
            e_site, d = self.model.energies_and_edge_gradients(self.species, i, j, edge_vectors(pos, cell, i, j, shifts))
            energy = e_site.to(torch.float64).sum()
        else:
            vec = edge_vectors(pos, cell, i, j, shifts).requires_grad_(True)  # needs grad mode on
            energy = self.model(self.species, i, j, vec).to(torch.float64).sum()
            grads = torch.autograd.grad([energy], [vec])
            g = grads[0]
            d = g if g is not None else torch.zeros_like(vec)
        f = edge_forces(n, i, j, d)
        forces = (f * (self.ev_to_kj * self.nm_to_A)).to(device=positions.device, dtype=positions.dtype)
        return (energy.detach() * self.ev_to_kj).to(positions.device), forces
