"""Training data: frames -> cached mini-batch graphs with label tensors and masks.

Positions never change during training, so the neighbor list of every mini-batch is built once
(:func:`make_batches`) and the :class:`Batch` objects are reused for every loss evaluation and
linear solve.  A missing label (no energy, forces or stress in a frame) is a zero mask entry, so
the loss and the normal equations skip it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from ase import Atoms
from torch import Tensor

from sus2md.io.data import labels, load_frames
from sus2md.nn.calc import Graph, frame_batches, graph_from_atoms

__all__ = ["Batch", "make_batches", "load_split", "shard"]


@dataclass
class Batch:
    """B configurations, one cached graph, labels (eV, eV/Å, eV) and 0/1 masks."""

    graph: Graph
    energy: Tensor  # (B,) eV (0 where missing)
    energy_mask: Tensor  # (B,)
    forces: Tensor  # (N, 3) eV/Å
    force_mask: Tensor  # (N,) per atom (the frame has forces)
    virial: Tensor  # (B, 3, 3) eV
    virial_mask: Tensor  # (B,)
    n_atoms: Tensor  # (B,) float
    index: list[int]  # positions of the configs in the data set
    edge_cache: Optional[object] = None  # fastpath.EdgeCache, built on first use in training

    @property
    def n_configs(self) -> int:
        return len(self.index)


def _batch(frames: Sequence[Atoms], index: list[int], cutoff: float, dtype: torch.dtype) -> Batch:
    g = graph_from_atoms(frames, cutoff, dtype=dtype)
    e, em, f, fm, w, wm = [], [], [], [], [], []
    for a in frames:
        lab = labels(a)
        n = len(a)
        e.append(0.0 if lab["energy"] is None else lab["energy"])
        em.append(lab["energy"] is not None)
        f.append(np.zeros((n, 3)) if lab["forces"] is None else lab["forces"])
        fm.append(np.full(n, lab["forces"] is not None))
        w.append(np.zeros((3, 3)) if lab["virial_eV"] is None else lab["virial_eV"])
        wm.append(lab["virial_eV"] is not None)
    t = lambda x: torch.as_tensor(np.asarray(x, dtype=np.float64), dtype=dtype)
    return Batch(
        graph=g, energy=t(e), energy_mask=t(em), forces=t(np.concatenate(f)), force_mask=t(np.concatenate(fm)),
        virial=t(np.stack(w)), virial_mask=t(wm), n_atoms=g.n_atoms.to(dtype), index=list(index),
    )


def make_batches(frames: Sequence[Atoms], cutoff: float, batch_atoms: int = 4000,
                 dtype: torch.dtype = torch.float64) -> list[Batch]:
    """Consecutive configurations packed into batches of at most ``batch_atoms`` atoms (a larger
    single configuration gets its own batch); neighbor lists built here, once."""
    return [_batch(frames[start:stop], list(range(start, stop)), cutoff, dtype)
            for start, stop in frame_batches([len(a) for a in frames], batch_atoms)]


def shard(batches: list[Batch], rank: int, world: int) -> list[Batch]:
    """This rank's share of the batches (round robin; all batches when ``world == 1``)."""
    return batches[rank::world]


def load_split(train: Path, validation: Optional[Path], test: Optional[Path], species: Sequence[str],
               validation_fraction: float = 0.0, seed: int = 0, max_train: Optional[int] = None,
               ) -> tuple[list[Atoms], list[Atoms], list[Atoms]]:
    """(train, validation, test) frames with ``arrays['mtp_type']`` for ``species``.

    Without a validation file, ``validation_fraction`` of the training frames (chosen with
    ``seed``) become the validation set.  ``max_train`` keeps a seeded random subset.
    """
    tr = load_frames(train, species=species)
    va = load_frames(validation, species=species) if validation else []
    te = load_frames(test, species=species) if test else []
    rng = np.random.default_rng(seed)
    if not validation and validation_fraction > 0:
        perm = rng.permutation(len(tr))
        n_val = max(1, int(round(validation_fraction * len(tr))))
        va = [tr[k] for k in sorted(perm[:n_val])]
        tr = [tr[k] for k in sorted(perm[n_val:])]
    if max_train is not None and max_train < len(tr):
        keep = sorted(rng.permutation(len(tr))[:max_train])
        tr = [tr[k] for k in keep]
    return tr, va, te
