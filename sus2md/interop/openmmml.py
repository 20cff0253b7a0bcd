"""openmm-ml plugin: ``MLPotential('sus2', modelPath=..., species=[...])``.

Registered through the ``openmmml.potentials`` entry point (``pyproject.toml``), so::

    from openmmml import MLPotential
    potential = MLPotential("sus2", modelPath="cu2se.mtp", species=["Cu", "Se"])
    system = potential.createSystem(topology)                        # default backend (auto), float64
    system = potential.createSystem(topology, backend="python", dtype="float32")

Arguments of ``MLPotential``: ``modelPath`` (``.mtp`` or a ``sus2md compile`` file), ``species``
(the model's element symbols in type order, for ``.mtp`` files that name none) and ``dtype``.
Arguments of ``createSystem``/``createMixedSystem``: ``backend`` (``auto``, ``compiled``, ``torch`` or ``python``),
``dtype`` (overrides the constructor's) and ``useCudaGraphs``.  Particles map to species by
their topology element.  The force is built by :func:`sus2md.engine.force.to_openmm_force`;
this module only adapts openmm-ml's calling convention (nm and kJ/mol are already the adapter's).

openmm-ml imports ``openmm`` before this module is loaded; :mod:`sus2md.engine.plugins` makes
``TorchForce`` usable whatever the import order.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Sequence

import torch  # noqa: F401  (before openmm's Torch plugin is (re)loaded)

import openmm  # isort: skip
import openmm.app  # isort: skip
from openmmml.mlpotential import MLPotentialImpl, MLPotentialImplFactory  # isort: skip

from sus2md.errors import UsageError

__all__ = ["SUS2PotentialImplFactory", "SUS2PotentialImpl"]

log = logging.getLogger(__name__)


class SUS2PotentialImpl(MLPotentialImpl):
    """Adds one SUS2 force for the selected atoms of a topology."""

    def __init__(self, name: str, modelPath: str, species: Sequence[str] | None = None, dtype: str | None = None):
        self.name = name
        self.modelPath = str(modelPath)
        self.species = list(species) if species is not None else None
        self.dtype = dtype

    def addForces(self, topology: openmm.app.Topology, system: openmm.System, atoms: Iterable[int] | None,
                  forceGroup: int, backend: str = "auto", dtype: str | None = None, useCudaGraphs: bool = False,
                  **args) -> None:
        """Add the force (openmm-ml calls this from ``createSystem``/``createMixedSystem``).

        ``backend`` is that of :func:`sus2md.engine.force.to_openmm_force` (default ``auto``).  A
        subset of ``atoms`` needs a PythonForce backend (``auto``/``compiled``/``python``:
        ``PythonForce.setParticles``): the TorchForce adapter always receives every particle.
        """
        from sus2md.engine.force import to_openmm_force

        included = list(topology.atoms())
        if atoms is not None:
            atoms = list(atoms)
            included = [included[i] for i in atoms]
            if backend == "torch" and len(atoms) != system.getNumParticles():
                raise UsageError("a SUS2 potential on a subset of the atoms needs a PythonForce backend "
                                 "(createSystem(..., backend='auto', 'compiled' or 'python'))")
        missing = [a.index for a in included if a.element is None]
        if missing:
            raise UsageError(f"topology atoms {missing[:5]} have no element; SUS2 maps particles to species by element")
        periodic = topology.getPeriodicBoxVectors() is not None or system.usesPeriodicBoundaryConditions()
        force = to_openmm_force(self.modelPath, [a.element.symbol for a in included], backend=backend,
                                dtype=dtype or self.dtype, use_cuda_graphs=useCudaGraphs, species=self.species,
                                periodic=periodic)
        if atoms is not None and len(atoms) != system.getNumParticles():
            if not isinstance(force, openmm.PythonForce):  # auto fell back to TorchForce
                raise UsageError("a SUS2 potential on a subset of the atoms needs a PythonForce backend, but the "
                                 "compiled backend is not available here; pass backend='python'")
            force.setParticles(atoms)
        force.setForceGroup(forceGroup)
        system.addForce(force)

    def getMLLongRange(self) -> bool:
        """SUS2 is local: every interaction is within the cutoff."""
        return False


class SUS2PotentialImplFactory(MLPotentialImplFactory):
    """Creates :class:`SUS2PotentialImpl` for ``MLPotential('sus2', modelPath=..., species=..., dtype=...)``."""

    def createImpl(self, name: str, modelPath: str | None = None, species: Sequence[str] | None = None,
                   dtype: str | None = None, **args) -> MLPotentialImpl:
        if modelPath is None:
            raise UsageError("MLPotential('sus2') needs modelPath= (an .mtp file or a sus2md-compiled model)")
        if args:
            raise UsageError(f"MLPotential('sus2') got unknown arguments {', '.join(sorted(args))}; "
                             "it takes modelPath, species and dtype")
        return SUS2PotentialImpl(name, modelPath, species, dtype)
