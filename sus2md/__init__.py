"""sus2md: SUS2-MLIP moment-tensor potentials as a deployable MD engine.

``torch`` is imported first on purpose: importing ``openmm``/``openmmtorch`` before torch makes
the OpenMM Torch plugin fail to load (see INSTALL-NOTES); where a script imported ``openmm``
first, the plugin is loaded again here (:mod:`sus2md.engine.plugins`).  Public names are loaded
lazily so ``import sus2md`` stays cheap and does not import openmm itself.
"""
from __future__ import annotations

import importlib
import sys

import torch  # noqa: F401  (must precede any openmm import)

if "openmm" in sys.modules:  # imported before torch: reload OpenMM's Torch plugin now
    from sus2md.engine.plugins import ensure_torch_plugin

    ensure_torch_plugin()

__version__ = "0.1.0"

_EXPORTS = {
    "SUS2Potential": "sus2md.nn.potential",
    "read_mtp": "sus2md.io.mtp",
    "write_mtp": "sus2md.io.mtp",
    "load_model": "sus2md.model",
    "evaluate_frames": "sus2md.model",
    "SUS2Calculator": "sus2md.interop.ase",
    "compile_for_openmm": "sus2md.export",
    "load_compiled": "sus2md.export",
    "to_openmm_force": "sus2md.engine.force",
    "load_protocol": "sus2md.protocol",
    "run_protocol": "sus2md.engine.run",
    "Sus2mdError": "sus2md.errors",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'sus2md' has no attribute {name!r}")
