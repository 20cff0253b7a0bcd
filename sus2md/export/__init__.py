"""Models as engine-ready modules.

``adapter``: :class:`OpenMMAdapter`, the OpenMM unit and Verlet-list shell (TorchScript);
``torchscript``: self-describing TorchScript files for ``TorchForce`` (``sus2md compile -o x.pt``);
``padded``: :class:`PaddedAdapter`, the padded per-centre Verlet list of the ``compiled`` backend;
``aot``: its per-chunk step compiled ahead of time by AOTInductor and cached on disk.
"""
from sus2md.export.adapter import DEFAULT_SKIN_A, DTYPES, UNITS, OpenMMAdapter
from sus2md.export.padded import PaddedAdapter
from sus2md.export.torchscript import (FORMAT_VERSION, METADATA_NAME, compile_for_openmm, frozen_model, load_compiled,
                                       scripted_adapter)

__all__ = ["OpenMMAdapter", "PaddedAdapter", "compile_for_openmm", "load_compiled", "scripted_adapter",
           "frozen_model", "FORMAT_VERSION", "METADATA_NAME", "UNITS", "DTYPES", "DEFAULT_SKIN_A"]
