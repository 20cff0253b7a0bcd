"""Compile a SUS2 model to a self-describing TorchScript file for OpenMM's ``TorchForce``.

The file holds :class:`sus2md.export.adapter.OpenMMAdapter` (the model plus a unit/neighbor-list
shell) and a JSON member ``sus2md_metadata.json`` (species, cutoff, units, dtype, versions, source
model hash).
"""
from __future__ import annotations

import copy
import datetime
import json
import tempfile
import zipfile
import warnings
from pathlib import Path
from typing import Sequence

import torch

import sus2md
from sus2md.errors import CompileError, ModelFileError, UsageError
from sus2md.export.adapter import DTYPES, UNITS, OpenMMAdapter
from sus2md.io.mtp import MTPFile, file_sha256, format_mtp, read_mtp
from sus2md.nn.potential import SUS2Potential

__all__ = ["compile_for_openmm", "load_compiled", "scripted_adapter", "frozen_model", "FORMAT_VERSION", "METADATA_NAME"]

FORMAT_VERSION = 1
METADATA_NAME = "sus2md_metadata.json"
#: the source model's .mtp text, so the compiled backend can rebuild the eager model
MODEL_NAME = "sus2md_model.mtp"
_RECOMPILE = "recompile it with `sus2md compile MODEL.mtp -o MODEL.pt`"


def frozen_model(model: SUS2Potential | str | Path, species: Sequence[str] | None, dtype: torch.dtype) -> SUS2Potential:
    """A private copy of ``model`` in ``dtype`` with element names attached (checked: element
    symbols, once each, as many as the model's species)."""
    if species is not None:
        from sus2md.io.cfg import _species_numbers

        _species_numbers(species)
    if isinstance(model, SUS2Potential):
        pot = copy.deepcopy(model).to(dtype)
        if species is not None:
            if len(species) != pot.n_species:
                raise UsageError(f"{len(species)} species names given ({', '.join(species)}) but the model has {pot.n_species} species")
            pot.species_names = list(species)
    else:
        pot = SUS2Potential.from_mtp(str(model), dtype=dtype, species=list(species) if species else None)
    if not pot.species_names:
        raise UsageError(
            f"the model names no elements ({pot.n_species} species); pass species=[...] "
            "(`--species Cu,Se`), in the model's type order")
    for p in pot.parameters():
        p.requires_grad_(False)
    return pot.eval()


def scripted_adapter(model: SUS2Potential | str | Path, species: Sequence[str] | None = None,
                     dtype: str = "float64") -> torch.jit.ScriptModule:
    """:class:`OpenMMAdapter` for ``model`` (an ``.mtp`` path or a model), scripted, in memory."""
    if dtype not in DTYPES:
        raise UsageError(f"dtype must be float32 or float64, got {dtype!r}")
    return torch.jit.script(OpenMMAdapter(frozen_model(model, species, DTYPES[dtype])))


def compile_for_openmm(model: SUS2Potential | str | Path, path_out: str | Path, *,
                       species: Sequence[str] | None = None, dtype: str = "float32") -> dict:
    """Write ``model`` as a TorchScript file for ``TorchForce`` and return its metadata.

    Args:
        model: an ``.mtp`` path or a :class:`SUS2Potential` (copied, not modified).
        path_out: the ``.pt`` file to write.
        species: element symbols in type order; required when the model names none.
        dtype: ``float32`` or ``float64``, the precision the model evaluates in.
    """
    module = scripted_adapter(model, species, dtype)
    source = None if isinstance(model, SUS2Potential) else Path(model)
    meta = {
        "format": "sus2md-openmm",
        "format_version": FORMAT_VERSION,
        "species": list(module.model.species_names),
        "cutoff_A": float(module.cutoff),
        "units": UNITS,
        "outputs_forces": True,
        "dtype": dtype,
        "sus2md_version": sus2md.__version__,
        "torch_version": torch.__version__,
        "source_model": {"path": str(source.resolve()) if source else None,
                         "sha256": file_sha256(source) if source else None},
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    path_out = Path(path_out)
    mtp_text = format_mtp(module_model_mtp(model, module))
    try:
        torch.jit.save(module, str(path_out), _extra_files={METADATA_NAME: json.dumps(meta, indent=1),
                                                            MODEL_NAME: mtp_text})
    except (OSError, RuntimeError) as e:
        raise UsageError(f"cannot write {path_out}: {e}") from None
    return meta


def load_compiled(path: str | Path) -> tuple[torch.jit.ScriptModule, dict]:
    """Load a file written by :func:`compile_for_openmm` and check its metadata.

    Raises:
        ModelFileError: missing file, not TorchScript, not a sus2md model, or another format_version.
    Warns:
        UserWarning: the file was made with another torch major.minor than the running one.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(path, None, "file not found")
    extra = {METADATA_NAME: ""}
    try:
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except RuntimeError:
        raise ModelFileError(path, None, f"not a TorchScript file; {_RECOMPILE}") from None
    raw = extra[METADATA_NAME]
    try:
        meta = json.loads(raw) if raw else None
    except ValueError:
        meta = None
    if not isinstance(meta, dict) or meta.get("format") != "sus2md-openmm":
        raise ModelFileError(path, None, f"not a sus2md compiled model (no valid {METADATA_NAME}); {_RECOMPILE}")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(
            path, None, f"made by sus2md {meta.get('sus2md_version', '?')} with format_version "
            f"{meta.get('format_version')}, this sus2md {sus2md.__version__} reads format_version {FORMAT_VERSION}; {_RECOMPILE}")
    made, running = _major_minor(str(meta.get("torch_version", "?"))), _major_minor(torch.__version__)
    if made != running:
        warnings.warn(f"{path}: compiled with torch {made}, running torch {running}; if loading or "
                      f"evaluation fails, {_RECOMPILE}", stacklevel=2)
    return module, meta


def module_model_mtp(model: SUS2Potential | str | Path, module: torch.jit.ScriptModule) -> MTPFile:
    """The model a compiled file is made from, as an :class:`MTPFile` with its element names."""
    mtp = model.to_mtp() if isinstance(model, SUS2Potential) else read_mtp(model)
    mtp.species_names = list(module.model.species_names)
    return mtp


def eager_model_of_compiled(path: str | Path) -> tuple[SUS2Potential, dict]:
    """The eager model embedded in a compiled ``.pt`` (float64) and the file's metadata.

    Raises:
        CompileError: the file was made before sus2md embedded the model (recompile it).
    """
    _, meta = load_compiled(path)
    with zipfile.ZipFile(path) as z:  # TorchScript keeps extra files at <archive>/extra/<name>
        members = [n for n in z.namelist() if n.endswith(f"/extra/{MODEL_NAME}")]
        text = z.read(members[0]).decode() if members else ""
    if not text:
        raise CompileError(f"{path} holds no source model (made by an older sus2md); {_RECOMPILE}")
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "model.mtp").write_text(text)
        mtp = read_mtp(Path(tmp) / "model.mtp")
    return SUS2Potential.from_mtp(mtp, species=list(meta["species"])), meta


def _major_minor(version: str) -> str:
    return ".".join(version.split("+")[0].split(".")[:2])
