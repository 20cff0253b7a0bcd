"""ASE calculator over the SUS2 model, on the same fast path as ``sus2md run``.

>>> from sus2md import SUS2Calculator
>>> atoms.calc = SUS2Calculator("cu2se.mtp", species=["Cu", "Se"])
>>> atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()

Results (ASE units: eV, Å): ``energy`` = ``free_energy`` (eV), ``forces`` (N, 3) eV/Å,
``energies`` (N,) site energies in eV, ``virial`` (3, 3) eV in the ``.cfg`` PlusStress convention
(``W = -dE/dstrain``) and, for cells periodic in all three directions only, ``stress`` in ASE's
convention (tensile positive, eV/Å^3, Voigt order xx yy zz yz xz xy): ``sigma = -W / V``.  For
other boundary conditions ``get_stress`` raises ASE's ``PropertyNotImplementedError``.

The evaluation is :class:`sus2md.export.padded.PaddedAdapter`: analytic forces and virial over a
Verlet list (pairs within r_c + skin) that is kept between calls until an atom moved more than
skin/2 or the cell changed, so MD and relaxations do not rebuild it at every step.  ``backend``
``auto`` (default) runs its per-chunk step compiled ahead of time (:mod:`sus2md.export.aot`:
compiled once per model shape, ~20-60 s, then loaded from the cache in milliseconds) and falls
back to the eager step where it cannot be compiled; ``compiled`` insists, ``eager`` never
compiles.  ``threads`` sets torch's threads once, as ``sus2md run`` does (None: the usable cores
that are idle, :func:`sus2md.engine.threads.default_threads`).

Elements map to model species by symbol (``species[k]`` is type k); atoms whose element the
model does not know raise :class:`~sus2md.errors.UnknownSpeciesError`.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes

from sus2md.engine.threads import apply_threads
from sus2md.errors import CompileError, UsageError
from sus2md.export.adapter import DEFAULT_SKIN_A
from sus2md.export.padded import PaddedAdapter
from sus2md.io.data import check_frames, species_index
from sus2md.nn.potential import SUS2Potential

__all__ = ["SUS2Calculator", "BACKENDS"]

log = logging.getLogger(__name__)

BACKENDS = ("auto", "compiled", "eager")

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
        model: ``.mtp`` file or an eager model (used as is, in its own dtype and device: later
            in-place changes of its parameters are seen).
        species: element symbols of the model's species in type order, e.g. ``["Cu", "Se"]``;
            needed when the ``.mtp`` file does not name its elements.
        dtype: ``"float64"`` (default) or ``"float32"`` when ``model`` is a path.
        backend: ``auto`` (default), ``compiled`` or ``eager`` (module docstring).
        threads: torch threads (None: the usable cores that are idle).
        skin_A: Verlet skin (Å) of the kept neighbour list; 0 rebuilds it at every call.
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress", "energies"]

    def __init__(self, model: str | Path | SUS2Potential, species: Sequence[str] | None = None,
                 dtype: str = "float64", backend: str = "auto", threads: int | None = None,
                 skin_A: float = DEFAULT_SKIN_A, **kwargs):
        super().__init__(**kwargs)
        if backend not in BACKENDS:
            raise UsageError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        self.model = _resolve_model(model, list(species) if species is not None else None, dtype)
        names = list(species) if species is not None else list(self.model.species_names)
        if not names:
            raise UsageError("the model does not name its elements; pass species=[...] (element symbols in "
                             "type order, e.g. species=['Cu', 'Se'])")
        self.species: list[str] = names
        self.threads = apply_threads(threads)
        param = next(self.model.parameters())
        self._device = param.device
        self.adapter = PaddedAdapter(self.model, skin_A=skin_A)
        self.backend = "eager"
        if backend != "eager":
            from sus2md.export.aot import CompiledStep, load_step

            try:
                runner, _ = load_step(self.model, self._device)
            except CompileError as exc:
                if backend == "compiled":
                    raise
                log.warning("SUS2Calculator: not compiled (%s); evaluating eagerly", exc)
            else:
                self.adapter.step = CompiledStep(runner, self.adapter)
                self.backend = "compiled"
        self._types: np.ndarray | None = None

    def calculate(self, atoms: Atoms | None = None, properties: Sequence[str] = ("energy",),
                  system_changes: Sequence[str] = all_changes) -> None:
        """Evaluate energy, forces, site energies and virial (and stress for 3D-periodic cells)."""
        super().calculate(atoms, properties, system_changes)
        a = self.atoms
        check_frames([a], source="atoms")  # finite positions, a cell that spans its periodic directions
        types = species_index(a, self.species, source="atoms")
        if self._types is None or not np.array_equal(types, self._types):
            self.adapter.set_species(torch.from_numpy(types).to(self._device))
            self._types = types
        f64 = dict(dtype=torch.float64, device=self._device)
        e_site, forces, w = self.adapter.compute(torch.tensor(a.positions, **f64), torch.tensor(a.cell.array, **f64),
                                                 torch.tensor(np.asarray(a.pbc, dtype=bool), device=self._device))
        energy = float(e_site.sum())
        w = w.cpu().numpy()
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "forces": forces.double().cpu().numpy(),
            "energies": e_site.cpu().numpy(),
            "virial": w,
        }
        if a.pbc.all():
            self.results["stress"] = (-w / a.get_volume())[_VOIGT]
