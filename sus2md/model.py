"""High-level model helpers: load a model file, read data for it, evaluate ASE frames in batches,
error metrics.

Frames meet a model here: :func:`load_frames_for` reads a data set for a model (element names
through its species, every type checked against its species count, the file and line named) and
:func:`evaluate_frames` checks frames built in Python the same way
(:func:`sus2md.io.data.check_frames`), so a data set made for another model or a broken cell is
an :class:`~sus2md.errors.Sus2mdError` sentence, never an index or linear-algebra error inside
the potential.
"""
from __future__ import annotations

from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from ase import Atoms

from sus2md.errors import UsageError
from sus2md.io.cfg import _species_numbers
from sus2md.io.data import check_frames, load_frames
from sus2md.io.mtp import read_mtp
from sus2md.nn.calc import evaluate, frame_batches, graph_from_atoms
from sus2md.nn.potential import SUS2Potential

DTYPES = {"float64": torch.float64, "float32": torch.float32}


def load_model(path: str | Path, species: Sequence[str] | None = None, dtype: str = "float64") -> SUS2Potential:
    """Eager model from an ``.mtp`` file; ``species`` attaches element names (index = type)."""
    if dtype not in DTYPES:
        raise UsageError(f"dtype must be float32 or float64, got {dtype!r}")
    if species:
        _species_numbers(species)  # element symbols, each once
    mtp = read_mtp(path)
    return SUS2Potential.from_mtp(mtp, dtype=DTYPES[dtype], species=list(species) if species else None)


def load_frames_for(model: SUS2Potential, path: str | PathLike, index: str | int | slice = ":") -> list[Atoms]:
    """:func:`sus2md.io.data.load_frames` for ``model``: element names map through the model's
    species (when it names them) and every type must index one of its species.

    Raises:
        UnknownSpeciesError: an element the model lacks, or a type beyond its species (the file,
            configuration, line for ``.cfg``, types, species count and the fix are named).
    """
    return load_frames(path, species=model.species_names or None, index=index, n_species=int(model.n_species))


@dataclass
class FramePrediction:
    energy: float  # eV
    forces: np.ndarray  # (N, 3) eV/Å
    virial: np.ndarray  # (3, 3) eV (PlusStress convention)
    site_energies: np.ndarray  # (N,) eV


def evaluate_frames(
    model: SUS2Potential, frames: Sequence, batch_atoms: int = 20000, forces: bool = True
) -> list[FramePrediction]:
    """Predictions for ASE Atoms carrying ``arrays['mtp_type']``, evaluated in batches of about
    ``batch_atoms`` atoms (many small cells per call; one call for a large cell).

    Raises:
        UnknownSpeciesError: a type beyond the model's species (see :func:`load_frames_for`).
        StructureError: a non-finite position or cell, or a degenerate periodic cell.
    """
    check_frames(frames, int(model.n_species), model.species_names or None)
    dtype = next(model.parameters()).dtype
    out: list[FramePrediction] = []
    for start, stop in frame_batches([len(a) for a in frames], batch_atoms):
        chunk = frames[start:stop]
        n = sum(len(a) for a in chunk)
        g = graph_from_atoms(chunk, model.cutoff, dtype=dtype)
        res = evaluate(model, g, forces=forces, virial=forces)
        e = res.energy.detach().double().numpy()
        se = res.site_energies.detach().double().numpy()
        f = res.forces.detach().double().numpy() if res.forces is not None else np.zeros((n, 3))
        w = res.virial.detach().double().numpy() if res.virial is not None else np.zeros((len(chunk), 3, 3))
        off = 0
        for k, a in enumerate(chunk):
            m = len(a)
            out.append(FramePrediction(float(e[k]), f[off:off + m], w[k], se[off:off + m]))
            off += m
    return out


def error_metrics(frames: Sequence, preds: Sequence[FramePrediction]) -> dict:
    """Energy (per atom), force and virial errors against the labels of ``frames``.

    Energy RMSE is over configurations, sqrt(mean((dE/N)^2)); force errors over all components;
    virial errors over the 6 PlusStress components (eV).  Frames without a label are skipped for
    that quantity.
    """
    from sus2md.io.data import labels

    de, df, dw, counts = [], [], [], {"energy": 0, "forces": 0, "virial": 0}
    for a, p in zip(frames, preds):
        lab = labels(a)
        if lab["energy"] is not None:
            de.append((p.energy - lab["energy"]) / len(a))
            counts["energy"] += 1
        if lab["forces"] is not None:
            df.append((p.forces - lab["forces"]).ravel())
            counts["forces"] += 1
        if lab["virial_eV"] is not None:
            idx = ([0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1])
            dw.append(p.virial[idx] - np.asarray(lab["virial_eV"])[idx])
            counts["virial"] += 1
    m: dict = {"n_configs": len(frames), "n_atoms": int(sum(len(a) for a in frames)), "labelled": counts}
    if de:
        de_a = np.array(de)
        m["energy_rmse_meV_atom"] = 1e3 * float(np.sqrt(np.mean(de_a**2)))
        m["energy_mae_meV_atom"] = 1e3 * float(np.mean(np.abs(de_a)))
    if df:
        df_a = np.concatenate(df)
        m["force_rmse_eV_A"] = float(np.sqrt(np.mean(df_a**2)))
        m["force_mae_eV_A"] = float(np.mean(np.abs(df_a)))
    if dw:
        dw_a = np.concatenate(dw)
        m["virial_rmse_eV"] = float(np.sqrt(np.mean(dw_a**2)))
        m["virial_mae_eV"] = float(np.mean(np.abs(dw_a)))
    return m
