"""The ``compiled`` backend's per-chunk step, compiled ahead of time by AOTInductor and cached.

``torch.export`` traces :meth:`PaddedAdapter.step_eager` with the sizes of a chunk symbolic
(atoms N, centres C, neighbour slots J) and the model's trainable parameters as inputs, and
AOTInductor compiles the graph into a shared library packaged as a ``.pt2`` file (the route of
``nequip-compile --mode aotinductor``).  The library depends on the model's *shape* only (basis,
radial basis size, species count, cutoff), not on its coefficients, so a retrained or fine-tuned
model of the same shape reuses it.  Compiling costs 20-60 s on a CPU; loading a package takes
milliseconds and needs no compiler, so a run pays the compile once per model shape.

The cache (:func:`cache_dir`: ``$SUS2MD_CACHE_DIR``, else ``$XDG_CACHE_HOME/sus2md``, else
``~/.cache/sus2md``) holds one package per :func:`artefact_key`: the sha256 of the model's shape
(:func:`shape_sha256`), dtype, device type, torch version, the CPU's vector features (a library
built for AVX-512 must not run on an AVX2 node sharing the cache) or the GPU's compute capability,
:data:`STEP_FORMAT` and a digest of the source that traces into the step (:func:`code_digest`:
``sus2md/nn`` and ``sus2md/export``), so an upgraded sus2md never loads a package compiled from
older code (it compiles again).  A package is
written to a temporary file and renamed into place under a lock file, so jobs of an array that
start together compile once and never read a half-written package.  ``sus2md compile MODEL.mtp
--cache`` fills the cache ahead of a run (e.g. on a login node, with ``SUS2MD_CACHE_DIR`` on a
shared file system).

A chunk with fewer than two centres or atoms (the compiled graph's sizes start at 2) runs the
eager step; results are the same.
"""
from __future__ import annotations

import contextlib
import datetime
import functools
import hashlib
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

from sus2md.errors import CompileError
from sus2md.export.adapter import DTYPES
from sus2md.export.padded import PaddedAdapter
from sus2md.export.torchscript import frozen_model
from sus2md.nn.potential import SUS2Potential

__all__ = ["CompiledStep", "StepArtefact", "artefact_key", "cache_dir", "compiled_adapter", "shape_sha256",
           "load_step", "parameter_tensors", "PARAMETERS", "STEP_FORMAT"]

log = logging.getLogger(__name__)

#: bump when the step's signature or semantics change (old packages are then never loaded)
STEP_FORMAT = 1
_EXAMPLE = {"atoms": 17, "centres": 6, "slots": 16}  # distinct sizes: export must not unify them


def cache_dir() -> Path:
    """Where compiled packages live (see the module docstring)."""
    env = os.environ.get("SUS2MD_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "sus2md"


#: CPU features inductor's generated code may use: packages built where one is present must not
#: load where it is absent
_ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_vnni", "avx512_bf16",
              "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8", "asimd", "sve", "sve2")


def _vec_isa(device: torch.device) -> str:
    """What compiled code for ``device`` may assume: the CUDA compute capability, or a digest of
    the CPU's vector features (/proc/cpuinfo; inductor's own probe compiles test programs, ~10 s)."""
    if device.type == "cuda":
        return "sm%d%d" % torch.cuda.get_device_capability(device)
    if device.type != "cpu":
        return device.type
    import platform

    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                flags.update(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    have = ",".join(f for f in _ISA_FLAGS if f in flags)
    return f"{platform.machine()}-{hashlib.sha256(have.encode()).hexdigest()[:8]}"


#: the trainable parameters of :class:`SUS2Potential`, passed to the compiled step at every call
PARAMETERS = ("shift", "alpha", "r0", "radial", "species_weight", "scaling", "species_coeffs", "moment_coeffs")


def shape_sha256(model: SUS2Potential) -> str:
    """sha256 of what the compiled step depends on: the model's basis and sizes, not its
    coefficients (everything of the ``.mtp`` but the trained arrays and the name)."""
    m = model._mtp_template
    h = hashlib.sha256()
    h.update(repr((m.L, m.scaling_map, m.species_count, m.radial_basis_type, float(m.min_dist), float(m.max_dist),
                   m.radial_basis_size, m.radial_funcs_count, m.alpha_moments_count)).encode())
    for a in (m.alpha_index_basic, m.alpha_index_times, m.alpha_moment_mapping):
        h.update(np.ascontiguousarray(a, dtype=np.int64).tobytes())
    return h.hexdigest()


@functools.lru_cache(maxsize=1)
def code_digest() -> str:
    """sha256 (8 hex digits) of the source files the compiled step is traced from: a package
    compiled by other code (an older sus2md, a local edit) gets another key."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for f in sorted([*(root / "nn").glob("*.py"), *(root / "export").glob("*.py")]):
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:8]


def artefact_key(model: SUS2Potential, device: torch.device) -> str:
    """The cache key of ``model``'s shape (in its own dtype) compiled for ``device``."""
    dtype = str(model.shift.dtype).removeprefix("torch.")
    torch_v = torch.__version__.split("+")[0]
    return f"{shape_sha256(model)[:20]}-{dtype}-{device.type}-{_vec_isa(device)}-torch{torch_v}-s{STEP_FORMAT}-c{code_digest()}"


def parameter_tensors(model: SUS2Potential) -> list[Tensor]:
    """The model's :data:`PARAMETERS`, in order (the compiled step's last inputs), contiguous: the
    compiled code assumes the strides it was exported with (AOTInductor does not check them), so
    every tensor it receives is contiguous.  Contiguous parameters are shared, not copied, so
    in-place updates of the model are seen."""
    named = dict(model.named_parameters())
    if set(named) != set(PARAMETERS):
        raise CompileError(f"the model's parameters {sorted(named)} are not the ones the compiled step takes "
                           f"{sorted(PARAMETERS)}; update sus2md.export.aot.PARAMETERS and STEP_FORMAT")
    return [named[n].detach().contiguous() for n in PARAMETERS]


@dataclass
class StepArtefact:
    """A compiled step on disk: where, whether it came from the cache, and what it cost."""

    path: Path
    key: str
    cached: bool
    compile_s: float
    load_s: float


class CompiledStep:
    """:data:`StepFunction` calling the AOTInductor package with ``adapter``'s model parameters,
    and its eager step for chunks of fewer than two centres or atoms."""

    def __init__(self, runner: Any, adapter: PaddedAdapter):
        self.runner = runner
        self.eager = adapter.step_eager
        self.params = parameter_tensors(adapter.model)

    def __call__(self, pos: Tensor, forces: Tensor, centre: Tensor, species: Tensor, nbr: Tensor,
                 nbr_shift: Tensor, nbr_species: Tensor) -> tuple[Tensor, Tensor]:
        if centre.shape[0] < 2 or pos.shape[0] < 2:
            return self.eager(pos, forces, centre, species, nbr, nbr_shift, nbr_species)
        chunk = (pos, forces, centre, species, nbr, nbr_shift, nbr_species)
        if not all(t.is_contiguous() for t in chunk):  # the compiled code assumes contiguous strides
            raise ValueError("sus2md: the compiled step takes contiguous tensors only")
        return self.runner(*chunk, *self.params)


class _Chunk(torch.nn.Module):
    """:meth:`PaddedAdapter.step_eager` as a module's forward (for ``functional_call``)."""

    def __init__(self, adapter: PaddedAdapter):
        super().__init__()
        self.adapter = adapter

    def forward(self, *chunk: Tensor) -> tuple[Tensor, Tensor]:
        return self.adapter.step_eager(*chunk)


class _Step(torch.nn.Module):
    """The module torch.export traces: one chunk, with the model's parameters as inputs."""

    def __init__(self, adapter: PaddedAdapter):
        super().__init__()
        self.chunk = _Chunk(adapter)

    def forward(self, pos: Tensor, forces: Tensor, centre: Tensor, species: Tensor, nbr: Tensor, nbr_shift: Tensor,
                nbr_species: Tensor, shift: Tensor, alpha: Tensor, r0: Tensor, radial: Tensor,
                species_weight: Tensor, scaling: Tensor, species_coeffs: Tensor,
                moment_coeffs: Tensor) -> tuple[Tensor, Tensor]:
        values = (shift, alpha, r0, radial, species_weight, scaling, species_coeffs, moment_coeffs)
        params = {f"adapter.model.{n}": v for n, v in zip(PARAMETERS, values)}
        return torch.func.functional_call(self.chunk, params, (pos, forces, centre, species, nbr, nbr_shift,
                                                               nbr_species))


def _example_chunk(model: SUS2Potential, device: torch.device) -> tuple[Tensor, ...]:
    """A synthetic chunk with the example sizes (values do not matter: the step has no
    data-dependent control flow)."""
    g = torch.Generator().manual_seed(0)
    n, c, j = _EXAMPLE["atoms"], _EXAMPLE["centres"], _EXAMPLE["slots"]
    pos = (torch.rand((n, 3), generator=g, dtype=torch.float64) * 6.0).to(device)
    forces = torch.zeros((n, 3), dtype=model.shift.dtype, device=device)
    centre = torch.arange(c, device=device)
    species = (torch.arange(c) % model.n_species).to(device)
    nbr = ((torch.arange(c).unsqueeze(1) + 1 + torch.arange(j).unsqueeze(0)) % n).to(device)
    shift = torch.zeros((c, 3, j), dtype=torch.float64)
    shift[:, 0, j // 2:] = model.cutoff + 1.0  # half the slots are padding
    nbr_species = (nbr.cpu() % model.n_species).to(device)
    return pos, forces, centre, species, nbr, shift.to(device), nbr_species


def _compile(model: SUS2Potential, device: torch.device, path: Path) -> None:
    """Export the step of ``model`` (on ``device``) and write its AOTInductor package to ``path``."""
    from torch.export import Dim

    adapter = PaddedAdapter(model).to(device)
    n, c, j = Dim("atoms", min=2), Dim("centres", min=2), Dim("slots", min=2)
    shapes = {"pos": {0: n}, "forces": {0: n}, "centre": {0: c}, "species": {0: c}, "nbr": {0: c, 1: j},
              "nbr_shift": {0: c, 2: j}, "nbr_species": {0: c, 1: j}, **{p: None for p in PARAMETERS}}
    args = (*_example_chunk(model, device), *parameter_tensors(model))
    with torch.no_grad(), _quiet_torch_logs():
        program = torch.export.export(_Step(adapter), args, dynamic_shapes=shapes, strict=False)
        torch._inductor.aoti_compile_and_package(program, package_path=str(path))


@contextlib.contextmanager
def _quiet_torch_logs() -> Iterator[None]:
    """Silence torch's warnings about a missing CUDA toolkit while compiling for a CPU."""
    names = ("torch.utils.cpp_extension", "torch._inductor", "torch._export", "torch.export")
    old = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).setLevel(logging.ERROR)
    try:
        yield
    finally:
        for n, level in old.items():
            logging.getLogger(n).setLevel(level)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` (no-op where the file system has no locks)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX)
        except OSError:
            pass
        yield


def load_step(model: SUS2Potential, device: torch.device | str = "cpu", *, compile_if_missing: bool = True,
              directory: Path | None = None) -> tuple[Any, StepArtefact]:
    """The AOTInductor runner of ``model``'s step (its dtype) for ``device``, from the cache or
    compiled now; wrap it in :class:`CompiledStep` to call it.

    Raises:
        CompileError: the package is absent and ``compile_if_missing`` is False, or compiling
            failed (the message says why: e.g. no C++ compiler).
    """
    device = torch.device(device)
    key = artefact_key(model, device)
    where = Path(directory) if directory is not None else cache_dir() / "compiled"
    path = where / f"{key}.pt2"
    compile_s = 0.0
    cached = path.is_file()
    if not cached:
        if not compile_if_missing:
            raise CompileError(f"no compiled step for this model in {where} (key {key}); run `sus2md compile "
                               "MODEL.mtp --cache` first")
        try:
            where.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CompileError(f"cannot create the compile cache {where}: {exc.strerror}; set SUS2MD_CACHE_DIR "
                               "to a writable directory") from None
        with _locked(where / f"{key}.lock"):
            cached = path.is_file()  # another process may have compiled it while we waited
            if not cached:
                log.warning("compiling the SUS2 model for %s %s (once per model; about a minute on a CPU) into %s",
                            device.type, str(model.shift.dtype).removeprefix("torch."), where)
                t0 = time.perf_counter()
                fd, tmp = tempfile.mkstemp(suffix=".pt2", dir=where)
                os.close(fd)
                try:
                    _compile(model, device, Path(tmp))
                    compile_s = time.perf_counter() - t0
                    _write_metadata(path.with_suffix(".json"), model, device, key, compile_s)
                    os.replace(tmp, path)
                except Exception as exc:  # noqa: BLE001 - any compiler failure becomes one message
                    Path(tmp).unlink(missing_ok=True)
                    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                    raise CompileError(f"AOTInductor could not compile the model for {device.type}: "
                                       f"{type(exc).__name__}: {first[:300]}") from exc
    t0 = time.perf_counter()
    with _quiet_torch_logs():
        runner = torch._inductor.aoti_load_package(str(path))
    return runner, StepArtefact(path, key, cached, compile_s, time.perf_counter() - t0)


def _write_metadata(path: Path, model: SUS2Potential, device: torch.device, key: str, compile_s: float) -> None:
    import sus2md

    meta = {"format": "sus2md-aoti-step", "step_format": STEP_FORMAT, "key": key, "shape_sha256": shape_sha256(model),
            "compiled_from": {"potential_name": model.potential_name, "species": list(model.species_names)},
            "dtype": str(model.shift.dtype).removeprefix("torch."), "device": device.type,
            "vec_isa": _vec_isa(device), "torch_version": torch.__version__, "sus2md_version": sus2md.__version__,
            "compile_s": round(compile_s, 2),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    path.write_text(json.dumps(meta, indent=1) + "\n")


def compiled_adapter(model: str | Path | SUS2Potential, species_index: Tensor, *, dtype: str = "float64",
                     species: Sequence[str] | None = None, device: torch.device | str = "cpu",
                     compile_if_missing: bool = True) -> tuple[PaddedAdapter, StepArtefact]:
    """:class:`PaddedAdapter` of ``model`` on ``device`` with the compiled step installed and the
    (N,) species index bound.  Raises :class:`CompileError` where no step can be had."""
    if dtype not in DTYPES:
        raise CompileError(f"dtype must be float32 or float64, got {dtype!r}")
    device = torch.device(device)
    pot = frozen_model(model, species, DTYPES[dtype]).to(device)
    runner, artefact = load_step(pot, device, compile_if_missing=compile_if_missing)
    adapter = PaddedAdapter(pot).to(device)
    adapter.step = CompiledStep(runner, adapter)
    adapter.set_species(species_index.to(device))
    return adapter, artefact
