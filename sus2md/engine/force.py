"""A SUS2 model as an OpenMM force: ``TorchForce`` (default) or ``PythonForce``.

Both backends evaluate the same scripted :class:`sus2md.export.OpenMMAdapter`, so they give the
same energies and forces: ``TorchForce`` calls it from C++ (no Python per step), ``PythonForce``
(OpenMM >= 8.5) calls it from Python and works with any torch, which keeps a path open after
TorchScript is retired.  The adapter returns (energy, forces); measured on the 1500-atom Cu2Se
cell this is as fast or faster than letting ``TorchForce`` backpropagate an energy-only model.

The third backend, ``compiled``, is a ``PythonForce`` over :class:`sus2md.export.PaddedAdapter`:
a padded per-centre Verlet list in cache-sized chunks of atoms, evaluated by
:meth:`SUS2Potential.padded_energies_and_gradients` (analytic forces) compiled with
``torch.compile``; the fastest on a CPU, with a per-atom cost that does not grow with N.
"""
from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np
import torch  # noqa: F401  (must precede openmm: the Torch plugin fails to load otherwise)

import openmm  # isort: skip

from ase import Atoms

from sus2md.errors import UsageError
from sus2md.export import DTYPES, OpenMMAdapter, PaddedAdapter, _as_model, load_compiled, scripted_adapter
from sus2md.io.data import species_index
from sus2md.nn.potential import SUS2Potential

__all__ = ["to_openmm_force", "bound_adapter"]

BACKENDS = ("auto", "torch", "python", "compiled")


def resolve_backend(backend: str) -> str:
    """The backend ``auto`` stands for (interim: ``torch`` until the compiled artefact is cached)."""
    if backend not in BACKENDS:
        raise UsageError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    return "torch" if backend == "auto" else backend


class _PythonForceFunction:
    """The callable of a ``PythonForce``: State -> (energy kJ/mol, forces (N, 3) kJ/mol/nm).

    Pickles (for ``XmlSerializer``) by saving the scripted module to bytes.
    """

    def __init__(self, module: torch.jit.ScriptModule, periodic: bool):
        self.module = module
        self.periodic = periodic

    def __call__(self, state: openmm.State) -> tuple[float, np.ndarray]:
        pos = torch.from_numpy(np.asarray(state.getPositions(asNumpy=True)._value))
        box = None
        if self.periodic:
            box = torch.from_numpy(np.asarray(state.getPeriodicBoxVectors(asNumpy=True)._value))
        energy, forces = self.module(pos, box)
        return float(energy), forces.detach().to(torch.float64).numpy()

    def __reduce__(self):
        buf = io.BytesIO()
        torch.jit.save(self.module, buf)
        return (_restore_function, (buf.getvalue(), self.periodic))


def _restore_function(data: bytes, periodic: bool) -> _PythonForceFunction:
    return _PythonForceFunction(torch.jit.load(io.BytesIO(data)), periodic)


class _CompiledFunction(_PythonForceFunction):
    """PythonForce callable over an eager adapter whose analytic path is ``torch.compile``d.

    Not picklable (a compiled function cannot be serialized): ``XmlSerializer`` of such a
    System fails; use the torch or python backend where the System must be serialized.
    """

    def __reduce__(self):
        raise TypeError("a SUS2 force with backend='compiled' cannot be serialized; use backend='python'")


def compiled_adapter(model: str | Path | SUS2Potential, particles: Atoms | Sequence[str], *,
                     dtype: str | None = None, species: Sequence[str] | None = None) -> OpenMMAdapter:
    """Eager adapter (:class:`sus2md.export.PaddedAdapter`) with species bound and its per-step
    evaluation (padded Verlet list -> energy and analytic forces) compiled by ``torch.compile``
    (inductor: fused C++ kernels; the first call compiles, ~0.5–1 min on a CPU)."""
    if isinstance(model, (str, Path)) and zipfile.is_zipfile(model):
        raise UsageError(f"{model}: backend 'compiled' needs the .mtp model (a compiled .pt is TorchScript); pass the .mtp")
    adapter = PaddedAdapter(_as_model(model, species, DTYPES[dtype or "float64"]))
    adapter.step = torch.compile(adapter._step, dynamic=True)
    adapter.set_species(torch.from_numpy(species_index(_as_atoms(particles), list(adapter.model.species_names), source="system")))
    return adapter


def _import_openmmtorch():
    """``import openmmtorch`` without the root-logger warning of its legacy ``simtk`` import."""
    import logging

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        import openmmtorch
    finally:
        root.setLevel(level)
    return openmmtorch


def _as_atoms(particles: Atoms | Sequence[str]) -> Atoms:
    if isinstance(particles, Atoms):
        return particles
    try:
        return Atoms(symbols=list(particles))
    except (KeyError, ValueError) as e:
        raise UsageError(f"particles must be ASE Atoms or element symbols; {e} is not an element") from None


def bound_adapter(model: str | Path | SUS2Potential | torch.jit.ScriptModule,
                  particles: Atoms | Sequence[str], *, dtype: str | None = None,
                  species: Sequence[str] | None = None) -> torch.jit.ScriptModule:
    """Scripted adapter for ``model`` with the particles' species bound.

    Args:
        model: compiled ``.pt`` file, ``.mtp`` file, :class:`SUS2Potential`, or a scripted adapter.
        particles: ASE Atoms or one element symbol per particle.
        dtype: ``float32``/``float64``; None = the dtype of a compiled file or scripted adapter,
            float64 for ``.mtp`` files and eager models.
        species: the model's element symbols in type order (needed when the model names none).
    """
    if dtype is not None and dtype not in DTYPES:
        raise UsageError(f"dtype must be float32 or float64, got {dtype!r}")
    if isinstance(model, torch.jit.ScriptModule):
        buf = io.BytesIO()  # a private copy: binding species must not rebind the caller's module
        torch.jit.save(model, buf)
        buf.seek(0)
        module = torch.jit.load(buf)
    elif isinstance(model, SUS2Potential) or not zipfile.is_zipfile(model):  # TorchScript files are zips
        module = scripted_adapter(model, species, dtype or "float64")
    else:
        module, _ = load_compiled(model)
    if dtype is not None and module.model.shift.dtype != DTYPES[dtype]:
        module = module.to(DTYPES[dtype])  # the adapter reads its dtype from the parameters
    names = list(module.model.species_names)
    if species is not None and list(species) != names:
        raise UsageError(f"species {','.join(species)} given but the model's species are {','.join(names)}")
    index = species_index(_as_atoms(particles), names, source="system")
    module.set_species(torch.from_numpy(index))
    return module


def to_openmm_force(model: str | Path | SUS2Potential | torch.jit.ScriptModule,
                    species_of_particles: Atoms | Sequence[str], *, backend: str = "torch",
                    dtype: str | None = None, use_cuda_graphs: bool = False,
                    species: Sequence[str] | None = None, periodic: bool = True) -> openmm.Force:
    """An OpenMM force evaluating ``model`` on the given particles.

    Args:
        model: compiled ``.pt`` file (``sus2md compile``), ``.mtp`` file or :class:`SUS2Potential`.
        species_of_particles: ASE Atoms or one element symbol per particle, in system order.
        backend: ``torch`` (openmmtorch ``TorchForce``), ``python`` (``openmm.PythonForce`` over
            the same TorchScript module) or ``compiled`` (``PythonForce`` over the eager model with
            ``torch.compile``d analytic forces: fastest on CPU after a one-off compile).
        dtype: model precision; None = the compiled file's dtype, float64 for other models.
        use_cuda_graphs: capture the model in a CUDA graph (TorchForce on the CUDA platform only).
        species: the model's element symbols in type order, for models that name none.
        periodic: the system has a periodic box (positions in nm, box in nm).

    Raises:
        UnknownSpeciesError: a particle's element is not one of the model's species.
        UsageError: bad backend/dtype, or CUDA graphs with the python backend.
    """
    backend = resolve_backend(backend)
    if backend == "compiled":
        if use_cuda_graphs:
            raise UsageError("CUDA graphs need backend='torch'; the compiled backend cannot use them")
        force = openmm.PythonForce(_CompiledFunction(compiled_adapter(model, species_of_particles, dtype=dtype, species=species), periodic))
        force.setUsesPeriodicBoundaryConditions(periodic)
        force.setName("SUS2 (compiled)")
        return force
    module = bound_adapter(model, species_of_particles, dtype=dtype, species=species)
    if backend == "python":
        if use_cuda_graphs:
            raise UsageError("CUDA graphs need backend='torch' on the CUDA platform; the python backend cannot use them")
        force = openmm.PythonForce(_PythonForceFunction(module, periodic))
    else:
        openmmtorch = _import_openmmtorch()
        force = openmmtorch.TorchForce(module)
        force.setOutputsForces(True)
        if use_cuda_graphs:
            force.setProperty("useCUDAGraphs", "true")
    force.setUsesPeriodicBoundaryConditions(periodic)
    force.setName(f"SUS2 ({backend})")
    return force
