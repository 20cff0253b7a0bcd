"""The OpenMM layer: the only part of sus2md that imports ``openmm`` (always after ``torch``).

``force`` turns a model into an OpenMM force, ``system`` builds the Topology/System from ASE
Atoms, ``integrators`` makes integrators, barostats, platforms and a ready Simulation.  Names are
loaded lazily so ``import sus2md.engine`` does not import openmm until one is used.
"""
from __future__ import annotations

import importlib

import torch  # noqa: F401  (must precede openmm)

_EXPORTS = {
    "to_openmm_force": "sus2md.engine.force",
    "build_system": "sus2md.engine.system",
    "write_topology_pdb": "sus2md.engine.system",
    "make_integrator": "sus2md.engine.integrators",
    "make_barostat": "sus2md.engine.integrators",
    "make_platform": "sus2md.engine.integrators",
    "create_simulation": "sus2md.engine.integrators",
    "minimize": "sus2md.engine.integrators",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'sus2md.engine' has no attribute {name!r}")
