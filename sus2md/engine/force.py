"""A SUS2 model as an OpenMM force, on the fastest backend that works.

Backends:

* ``compiled``: ``openmm.PythonForce`` over :class:`sus2md.export.padded.PaddedAdapter` (a padded
  per-centre Verlet list, analytic forces) whose per-chunk step is compiled ahead of time by
  AOTInductor and cached on disk (:mod:`sus2md.export.aot`): the fastest on a CPU, 6-8x the
  TorchScript backends, with a per-atom cost that does not grow with N.  The first use of a model
  compiles it (40-60 s on a CPU); later runs load the package in milliseconds.
* ``torch``: openmm-torch's ``TorchForce`` over the scripted :class:`sus2md.export.OpenMMAdapter`
  (no Python per step; can be serialized with the System).
* ``python``: ``openmm.PythonForce`` over the same scripted adapter; works with any torch.
* ``auto`` (the default): ``compiled``; where it cannot be had (no C++ compiler and nothing
  cached, a compiled ``.pt`` made before sus2md embedded its model, a scripted module) ``torch``,
  and ``python`` where openmm-torch cannot load.  :class:`ForceInfo` says what ran and why.

The model runs on ``device`` (``cuda`` for OpenMM's CUDA platform); PythonForce backends receive
positions on the host from OpenMM and return forces there, once per step.
"""
from __future__ import annotations

import io
import logging
import zipfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

import openmm  # isort: skip

from ase import Atoms

from sus2md.errors import CompileError, UsageError
from sus2md.export import DTYPES, frozen_model, load_compiled, scripted_adapter
from sus2md.export.torchscript import eager_model_of_compiled
from sus2md.io.data import species_index
from sus2md.nn.potential import SUS2Potential

__all__ = ["to_openmm_force", "make_force", "ForceInfo", "bound_adapter", "BACKENDS"]

log = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "python", "compiled")
DEVICES = ("cpu", "cuda")


@dataclass
class ForceInfo:
    """What :func:`make_force` built: the backend that runs (``requested`` is what was asked),
    the model's dtype and device, the compiled artefact (compiled backend) and, when ``auto``
    did not get ``compiled``, why."""

    backend: str
    requested: str
    dtype: str
    device: str
    artefact: dict[str, Any] | None = None
    fallback_reason: str | None = None
    #: the compiled backend's PaddedAdapter (the same evaluation gives virials for pressures)
    adapter: Any = field(default=None, repr=False, compare=False)

    def as_dict(self) -> dict[str, Any]:
        """The JSON-able fields (no adapter)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "adapter"}

    def describe(self) -> str:
        """One line for the log."""
        text = f"SUS2 force: backend {self.backend}"
        if self.requested != self.backend:
            text += f" (asked: {self.requested})"
        text += f", {self.dtype}, device {self.device}"
        if self.artefact:
            a = self.artefact
            text += (f", compiled step loaded from cache in {a['load_s']:.2f} s" if a["cached"]
                     else f", compiled now in {a['compile_s']:.0f} s and cached")
        if self.fallback_reason:
            text += f"; not compiled: {self.fallback_reason}"
        return text


class _PythonForceFunction:
    """The callable of a ``PythonForce``: State -> (energy kJ/mol, forces (N, 3) kJ/mol/nm).

    Pickles (for ``XmlSerializer``) by saving the scripted module to bytes.
    """

    def __init__(self, module: Any, periodic: bool):
        self.module = module
        self.periodic = periodic

    def __call__(self, state: openmm.State) -> tuple[float, np.ndarray]:
        pos = torch.from_numpy(np.asarray(state.getPositions(asNumpy=True)._value))
        box = None
        if self.periodic:
            box = torch.from_numpy(np.asarray(state.getPeriodicBoxVectors(asNumpy=True)._value))
        energy, forces = self.module(pos, box)
        return float(energy), forces.detach().to(device="cpu", dtype=torch.float64).numpy()

    def __reduce__(self):
        buf = io.BytesIO()
        torch.jit.save(self.module, buf)
        return (_restore_function, (buf.getvalue(), self.periodic))


def _restore_function(data: bytes, periodic: bool) -> _PythonForceFunction:
    return _PythonForceFunction(torch.jit.load(io.BytesIO(data)), periodic)


class _CompiledFunction(_PythonForceFunction):
    """PythonForce callable over the compiled :class:`PaddedAdapter` (an AOTInductor library)."""

    def __reduce__(self):
        raise TypeError("a SUS2 force with backend='compiled' cannot be serialized; use backend='torch' or 'python'")


def _import_openmmtorch():
    """``import openmmtorch`` (plugin loaded whatever the import order) without the root-logger
    warning of its legacy ``simtk`` import."""
    from sus2md.engine.plugins import ensure_torch_plugin

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        import openmmtorch
    finally:
        root.setLevel(level)
    ensure_torch_plugin()
    return openmmtorch


def _as_atoms(particles: Atoms | Sequence[str]) -> Atoms:
    if isinstance(particles, Atoms):
        return particles
    try:
        return Atoms(symbols=list(particles))
    except (KeyError, ValueError) as e:
        raise UsageError(f"particles must be ASE Atoms or element symbols; {e} is not an element") from None


def _is_torchscript_file(model: Any) -> bool:
    return isinstance(model, (str, Path)) and Path(model).is_file() and zipfile.is_zipfile(model)


def bound_adapter(model: Any, particles: Atoms | Sequence[str], *, dtype: str | None = None,
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
    elif isinstance(model, SUS2Potential) or not _is_torchscript_file(model):
        module = scripted_adapter(model, species, dtype or "float64")
    else:
        module, _ = load_compiled(model)
    if dtype is not None and module.model.shift.dtype != DTYPES[dtype]:
        module = module.to(DTYPES[dtype])  # the adapter reads its dtype from the parameters
    names = list(module.model.species_names)
    if species is not None and list(species) != names:
        raise UsageError(f"species {','.join(species)} given but the model's species are {','.join(names)}")
    module.set_species(torch.from_numpy(species_index(_as_atoms(particles), names, source="system")))
    return module


def _compiled_force(model: Any, particles: Atoms | Sequence[str], dtype: str | None, device: str,
                    species: Sequence[str] | None, periodic: bool) -> tuple[openmm.Force, ForceInfo]:
    """The compiled backend; CompileError where it cannot be had for this model here."""
    from sus2md.export.aot import compiled_adapter

    if isinstance(model, torch.jit.ScriptModule):
        raise CompileError("a scripted module cannot be compiled; pass the .mtp file or the SUS2Potential")
    if _is_torchscript_file(model):
        eager, meta = eager_model_of_compiled(model)
        dtype = dtype or meta["dtype"]
        if species is not None and list(species) != list(eager.species_names):
            raise UsageError(f"species {','.join(species)} given but the model's species are "
                             f"{','.join(eager.species_names)}")
        model, species = eager, None
    dtype = dtype or "float64"
    pot = frozen_model(model, species, DTYPES[dtype])
    index = torch.from_numpy(species_index(_as_atoms(particles), list(pot.species_names), source="system"))
    adapter, artefact = compiled_adapter(pot, index, dtype=dtype, device=device)
    force = openmm.PythonForce(_CompiledFunction(adapter, periodic))
    info = ForceInfo("compiled", "compiled", dtype, device,
                     artefact={"key": artefact.key, "path": str(artefact.path), "cached": artefact.cached,
                               "compile_s": artefact.compile_s, "load_s": artefact.load_s}, adapter=adapter)
    return force, info


def _scripted_force(model: Any, particles: Atoms | Sequence[str], backend: str, dtype: str | None, device: str,
                    species: Sequence[str] | None, periodic: bool,
                    use_cuda_graphs: bool) -> tuple[openmm.Force, ForceInfo]:
    module = bound_adapter(model, particles, dtype=dtype, species=species)
    dtype = str(module.model.shift.dtype).removeprefix("torch.")
    if backend == "python":
        if use_cuda_graphs:
            raise UsageError("CUDA graphs need backend='torch' on the CUDA platform; the python backend cannot use them")
        module = module.to(torch.device(device))
        return openmm.PythonForce(_PythonForceFunction(module, periodic)), ForceInfo("python", "python", dtype, device)
    openmmtorch = _import_openmmtorch()
    force = openmmtorch.TorchForce(module)
    force.setOutputsForces(True)
    if use_cuda_graphs:
        force.setProperty("useCUDAGraphs", "true")
    return force, ForceInfo("torch", "torch", dtype, device)


def make_force(model: Any, species_of_particles: Atoms | Sequence[str], *, backend: str = "auto",
               dtype: str | None = None, device: str = "cpu", use_cuda_graphs: bool = False,
               species: Sequence[str] | None = None, periodic: bool = True,
               threads: int | None = None) -> tuple[openmm.Force, ForceInfo]:
    """:func:`to_openmm_force` and a :class:`ForceInfo` saying what was built."""
    from sus2md.engine.threads import apply_threads

    apply_threads(threads)
    if backend not in BACKENDS:
        raise UsageError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if device not in DEVICES:
        raise UsageError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("device 'cuda' asked for, but torch sees no CUDA device")
    if dtype is not None and dtype not in DTYPES:
        raise UsageError(f"dtype must be float32 or float64, got {dtype!r}")
    if use_cuda_graphs and backend in ("compiled", "python"):
        raise UsageError(f"CUDA graphs need backend='torch'; the {backend} backend cannot use them")
    reason = None
    if backend in ("auto", "compiled") and not use_cuda_graphs:
        try:
            force, info = _compiled_force(model, species_of_particles, dtype, device, species, periodic)
        except CompileError as exc:
            if backend == "compiled":
                raise
            reason = str(exc)
            log.warning("backend auto: the compiled backend is not available (%s); using TorchScript instead", exc)
        else:
            info.requested = backend
            _finish(force, info, periodic)
            return force, info
    chosen = "torch" if backend == "auto" else backend
    if backend == "auto":
        try:
            _import_openmmtorch()
        except ImportError as exc:  # e.g. a torch that openmm-torch was not built for
            chosen, reason = "python", f"{reason}; openmm-torch does not load ({exc})"
    force, info = _scripted_force(model, species_of_particles, chosen, dtype, device, species, periodic,
                                  use_cuda_graphs)
    info.requested, info.fallback_reason = backend, reason
    _finish(force, info, periodic)
    return force, info


def _finish(force: openmm.Force, info: ForceInfo, periodic: bool) -> None:
    force.setUsesPeriodicBoundaryConditions(periodic)
    force.setName(f"SUS2 ({info.backend})")
    log.debug(info.describe())


def to_openmm_force(model: Any, species_of_particles: Atoms | Sequence[str], *, backend: str = "auto",
                    dtype: str | None = None, device: str = "cpu", use_cuda_graphs: bool = False,
                    species: Sequence[str] | None = None, periodic: bool = True,
                    threads: int | None = None) -> openmm.Force:
    """An OpenMM force evaluating ``model`` on the given particles (positions nm, energy kJ/mol).

    Args:
        model: ``.mtp`` file, compiled ``.pt`` file (``sus2md compile``), :class:`SUS2Potential`
            or a scripted adapter (torch/python backends only).
        species_of_particles: ASE Atoms or one element symbol per particle, in system order.
        backend: ``auto`` (default), ``compiled``, ``torch`` or ``python`` (module docstring).
        dtype: model precision; None = the compiled file's dtype, float64 for other models.
        device: ``cpu`` or ``cuda``, where the model runs (PythonForce backends; TorchForce follows
            its platform).
        use_cuda_graphs: capture the model in a CUDA graph (TorchForce on the CUDA platform only).
        species: the model's element symbols in type order, for models that name none.
        periodic: the system has a periodic box (positions in nm, box in nm).
        threads: torch threads for the model, as ``sus2md run`` sets them (None: the usable cores
            that are idle now, :func:`sus2md.engine.threads.default_threads`; pass
            ``torch.get_num_threads()`` to keep your own).  OpenMM's CPU platform takes its own
            ``Threads`` property.

    Raises:
        UnknownSpeciesError: a particle's element is not one of the model's species.
        UsageError: bad backend/dtype/device, or CUDA graphs with a PythonForce backend.
        CompileError: ``backend='compiled'`` and the model cannot be compiled here.
    """
    return make_force(model, species_of_particles, backend=backend, dtype=dtype, device=device,
                      use_cuda_graphs=use_cuda_graphs, species=species, periodic=periodic, threads=threads)[0]
