"""OpenMM's Torch plugin, whatever the user's import order.

``import openmm`` before ``import torch`` leaves the Torch plugin libraries unloaded: OpenMM loads
its plugins when it is imported, and the Torch ones need CUDA runtime libraries (``libnvrtc``)
that only ``import torch`` puts in the process.  A Context with a ``TorchForce`` then fails with
"does not support all required kernels".  :func:`ensure_torch_plugin` loads those libraries again
once torch is imported; ``import sus2md`` calls it when ``openmm`` is already imported, and every
``TorchForce`` sus2md makes is made after it.
"""
from __future__ import annotations

import logging
import re

import torch  # noqa: F401  (the libraries the plugin needs)

import openmm  # isort: skip

__all__ = ["ensure_torch_plugin"]

log = logging.getLogger(__name__)

_TRIED: set[str] = set()


def ensure_torch_plugin() -> None:
    """Load the OpenMM Torch plugin libraries that failed to load before torch was imported.
    Libraries that still cannot load (e.g. OpenCL ones without ``libOpenCL``) are left alone."""
    for message in openmm.Platform.getPluginLoadFailures():
        found = re.match(r"Error loading library (\S+?Torch\S*?\.(?:so|dylib|dll)): ", message)
        if found is None or found.group(1) in _TRIED:
            continue
        _TRIED.add(found.group(1))
        try:
            openmm.Platform.loadPluginLibrary(found.group(1))
        except Exception as e:  # noqa: BLE001 - OpenMM raises its own exception type
            log.debug("OpenMM plugin %s still does not load: %s", found.group(1), e)
