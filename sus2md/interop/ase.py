"""ASE calculator over the eager SUS2 model.

>>> from sus2md import SUS2Calculator
>>> atoms.calc = SUS2Calculator("cu2se.mtp", species=["Cu", "Se"])
>>> atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()

Results (ASE units: eV, Å): ``energy`` = ``free_energy`` (eV), ``forces`` (N, 3) eV/Å,
``energies`` (N,) site energies in eV, ``virial`` (3, 3) eV in the ``.cfg`` PlusStress convention
(``W = -dE/dstrain``) and, for cells periodic in all three directions only, ``stress`` in ASE's
convention (tensile positive, eV/Å^3, Voigt order xx yy zz yz xz xy): ``sigma = -W / V``.  For
other boundary conditions ``get_stress`` raises ASE's ``PropertyNotImplementedError``.

Elements map to model species by symbol (``species[k]`` is type k); atoms whose element the
model does not know raise :class:`~sus2md.errors.UnknownSpeciesError`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes

from sus2md.errors import UsageError
from sus2md.io.data import species_index
from sus2md.nn.calc import build_graph, evaluate
from sus2md.nn.potential import SUS2Potential

__all__ = ["SUS2Calculator"]

_VOIGT = ([0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1])


def _resolve_model(model: str | Path | SUS2Potential, species: Sequence[str] | None, dtype: str) -> SUS2Potential:
    if isinstance(model, SUS2Potential):
        if species is not None:
            names = list(model.species_names)
            if names and names != list(species):
                raise UsageError(f"species {', '.join(species)} differ from the model's own element names "
                                 f"{', '.join(names)}; leave species out or load the model with these names")
            if len(species) != model.n_species:
                raise UsageError(f"{len(species)} species names given ({', '.join(species)}) but the model "
                                 f"has {model.n_species} species")
        return model
    from sus2md.model import load_model

    return load_model(model, species=species, dtype=dtype)


class SUS2Calculator(Calculator):
    """ASE calculator for a SUS2 model (an ``.mtp`` path or a :class:`SUS2Potential`).

    Args:
        model: ``.mtp`` file or an eager model (used as is, in its own dtype and device).
        species: element symbols of the model's species in type order, e.g. ``["Cu", "Se"]``;
            needed when the ``.mtp`` file does not name its elements.
        dtype: ``"float64"`` (default) or ``"float32"`` when ``model`` is a path.
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress", "energies"]

    def __init__(self, model: str | Path | SUS2Potential, species: Sequence[str] | None = None,
                 dtype: str = "float64", **kwargs):
        super().__init__(**kwargs)
        self.model = _resolve_model(model, list(species) if species is not None else None, dtype)
        names = list(species) if species is not None else list(self.model.species_names)
        if not names:
            raise UsageError("the model does not name its elements; pass species=[...] (element symbols in "
                             "type order, e.g. species=['Cu', 'Se'])")
        self.species: list[str] = names
        param = next(self.model.parameters())
        self._dtype: torch.dtype = param.dtype
        self._device = param.device

    def calculate(self, atoms: Atoms | None = None, properties: Sequence[str] = ("energy",),
                  system_changes: Sequence[str] = all_changes) -> None:
        """Evaluate energy, forces, site energies and virial (and stress for 3D-periodic cells)."""
        super().calculate(atoms, properties, system_changes)
        a = self.atoms
        types = species_index(a, self.species, source="atoms")
        graph = build_graph([types], [a.positions], [np.asarray(a.cell)], [a.pbc], self.model.cutoff,
                            dtype=self._dtype, device=self._device)
        res = evaluate(self.model, graph, forces=True, virial=True)
        energy = float(res.energy[0].detach())
        w = res.virial[0].detach().double().cpu().numpy()
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "forces": res.forces.detach().double().cpu().numpy(),
            "energies": res.site_energies.detach().double().cpu().numpy(),
            "virial": w,
        }
        if a.pbc.all():
            self.results["stress"] = (-w / a.get_volume())[_VOIGT]
