r"""Extrapolation grade gamma: MaxVol active sets over the linear basis, as MTP active learning.

The site energy is linear in its last layer, ``E_i = shift[t] + c[t] + w . b_i`` with the per-atom
linear basis ``b_i = c[t_i] * B_i`` (n_scal,).  For each species t an *active set* A_t holds the
n_scal rows b_k of training atoms that span the largest volume (MaxVol, Goreinov et al. 2010).
An atom's grade is the largest coefficient expressing it in those rows::

    gamma_i = max_k |(b_i A_t^{-1})_k|,     t = t_i

gamma <= 1 inside the (parallelotope hull of the) training atoms, > 1 extrapolation.

Why one active set per species: ``w`` is shared, but ``shift[t] + c[t]`` and the factor
``c[t]`` in ``b_i`` make each species' site energies a separate linear model in ``b``, and MTP's
selection runs per species for the same reason; mixing species in one A would let an atom of
one element be "interpolated" from neighbourhoods of another.

Rank-deficient bases: the published bases carry exact duplicate scalars (SPEC-basis section 5:
rank 169 of 175 for l2k3), and a species with fewer training atoms than n_scal spans fewer
directions.  Columns are first scaled by their largest training magnitude (grades are invariant
under column scaling when A is square; scaling only conditions the rank decision).  A pivoted QR
of the scaled rows (``scipy.linalg.qr(X.T, pivoting=True)``) gives the numerical rank r (diagonal
above ``rank_tol`` times the first) and an orthonormal basis U (n_scal, r) of the rows' span;
MaxVol then selects r rows in the reduced coordinates ``y = (b / s) U`` and::

    gamma_i = max( max_k |(y_i A^{-1})_k| ,  |b_i/s - y_i U^T| / (rank_tol * R_00) )

The second term is the part of b_i outside the training span, in units of the rank cut; by the
pivoted-QR bound it is <= 1 for every training atom, and it flags directions the training set
never explored (round-off in the exact duplicates contributes only ~1e-8).  Defaults:
``rank_tol = 1e-8``, MaxVol stops at max |coefficient| <= 1 + 1e-3, so training atoms grade
<= 1.001.  A species with no training atoms grades ``inf``.  :class:`GradeMonitor` is the MD hook: warn, dump for retraining, or stop.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import scipy.linalg
import torch

from sus2md.errors import SimulationError, UsageError
from sus2md.io.data import check_frames
from sus2md.io.mtp import format_mtp
from sus2md.nn.calc import build_graph, frame_batches, graph_from_atoms
from sus2md.nn.potential import SUS2Potential

__all__ = ["ActiveSet", "basis_vectors", "grade", "frame_max_gamma", "select_configurations", "model_sha256",
           "GradeMonitor"]

log = logging.getLogger(__name__)


def model_sha256(model: SUS2Potential) -> str:
    """SHA-256 of the model's ``.mtp`` text (every parameter and the basis), so it identifies the
    model itself whether it came from a file or from memory."""
    return hashlib.sha256(format_mtp(model.to_mtp()).encode()).hexdigest()


def _linear_basis(model: SUS2Potential, graph) -> np.ndarray:
    with torch.no_grad():
        B = model.descriptors(graph.species, graph.edge_i, graph.edge_j, graph.edge_vectors())
        b = model.species_coeffs.index_select(0, graph.species).unsqueeze(1) * B
    return b.double().cpu().numpy()


def basis_vectors(model: SUS2Potential, frames: Sequence, batch_atoms: int = 20000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Linear basis of every atom of ``frames`` (ASE Atoms with ``arrays['mtp_type']``).

    Returns:
        ``b`` (N, n_scal) float64 = c[t_i] B_i (eV per unit moment coefficient), ``types`` (N,)
        int64, ``frame`` (N,) int64 index of each atom's configuration.
    """
    check_frames(frames, int(model.n_species), model.species_names or None)
    dtype = next(model.parameters()).dtype
    out = [_linear_basis(model, graph_from_atoms(frames[start:stop], model.cutoff, dtype=dtype))
           for start, stop in frame_batches([len(a) for a in frames], batch_atoms)]
    n_scal = int(model.moment_coeffs.shape[0])
    b = np.concatenate(out) if out else np.zeros((0, n_scal))
    types = np.concatenate([np.asarray(a.arrays["mtp_type"], dtype=np.int64) for a in frames]) if frames else np.zeros(0, np.int64)
    frame = np.repeat(np.arange(len(frames)), [len(a) for a in frames]).astype(np.int64)
    return b, types, frame


def _maxvol(Y: np.ndarray, idx: np.ndarray, tol: float, max_iter: int) -> np.ndarray:
    """Rows ``idx`` of Y (m, r) swapped until |Y A^{-1}| <= 1 + tol (Goreinov et al.)."""
    idx = idx.copy()
    C = np.linalg.solve(Y[idx].T, Y.T).T  # (m, r) = Y A^{-1}
    for it in range(max_iter):
        i, j = np.unravel_index(int(np.argmax(np.abs(C))), C.shape)
        if abs(C[i, j]) <= 1.0 + tol:
            return idx
        # row i replaces active row j; |det A| grows by |C[i, j]| (rank-one update of C)
        ci = C[i].copy()
        ci[j] -= 1.0
        C -= np.outer(C[:, j] / C[i, j], ci)
        idx[j] = i
        if (it + 1) % 64 == 0:  # refresh against accumulated round-off
            C = np.linalg.solve(Y[idx].T, Y.T).T
    log.warning("MaxVol stopped after %d swaps with max |coefficient| %.4g", max_iter, float(np.abs(C).max()))
    return idx


@dataclass
class SpeciesActiveSet:
    """Active set of one species (see the module docstring for the reduced space)."""

    rows: np.ndarray  # (r, n_scal) b of the selected atoms
    scale: np.ndarray  # (n_scal,) column scale s
    basis: np.ndarray  # (n_scal, r) orthonormal U of the training span (scaled coordinates)
    resid_tol: float  # rank_tol * R_00 (scaled coordinates)

    def __post_init__(self) -> None:
        r = self.basis.shape[1]
        A = (self.rows / self.scale) @ self.basis
        self.inv = np.linalg.inv(A) if r else np.zeros((0, 0))

    @classmethod
    def build(cls, X: np.ndarray, tol: float, rank_tol: float, scale: np.ndarray | None = None,
              resid_tol: float | None = None) -> "SpeciesActiveSet":
        """MaxVol selection among rows X (m, n_scal); ``scale``/``resid_tol`` fixed when updating."""
        if scale is None:
            scale = np.abs(X).max(axis=0)
            scale = np.where(scale > 0, scale, 1.0)
        Xs = X / scale
        Q, R, piv = scipy.linalg.qr(Xs.T, mode="economic", pivoting=True)
        d = np.abs(np.diag(R))
        if resid_tol is None:
            resid_tol = rank_tol * float(d[0]) if d.size and d[0] > 0 else rank_tol
        r = int(np.count_nonzero(d > resid_tol))
        U = Q[:, :r]
        idx = _maxvol(Xs @ U, piv[:r], tol, max_iter=200 * max(r, 1)) if r else piv[:0]
        return cls(X[idx].copy(), scale, U.copy(), float(resid_tol))

    def gamma(self, b: np.ndarray) -> np.ndarray:
        """Grades (M,) of rows b (M, n_scal)."""
        xs = b / self.scale
        y = xs @ self.basis
        coef = np.abs(y @ self.inv).max(axis=1) if self.basis.shape[1] else np.zeros(len(b))
        resid = np.linalg.norm(xs - y @ self.basis.T, axis=1) / self.resid_tol
        return np.maximum(coef, resid)


class ActiveSet:
    """Per-species MaxVol active sets of one model (grades via :meth:`gamma`)."""

    def __init__(self, sets: dict[int, SpeciesActiveSet], n_species: int, sha256: str, tol: float, rank_tol: float):
        self.sets, self.n_species, self.sha256, self.tol, self.rank_tol = sets, n_species, sha256, tol, rank_tol

    @classmethod
    def from_vectors(cls, b: np.ndarray, types: np.ndarray, n_species: int, sha256: str, tol: float = 1e-3,
                     rank_tol: float = 1e-8) -> "ActiveSet":
        """Active sets from per-atom basis rows b (N, n_scal) and species ``types`` (N,)."""
        sets = {int(t): SpeciesActiveSet.build(b[types == t], tol, rank_tol) for t in np.unique(types)}
        return cls(sets, n_species, sha256, tol, rank_tol)

    @classmethod
    def from_frames(cls, model: SUS2Potential, frames: Sequence, max_atoms: int | None = None, tol: float = 1e-3,
                    rank_tol: float = 1e-8, seed: int = 0) -> "ActiveSet":
        """Active sets from all atoms of ``frames`` (Atoms with ``arrays['mtp_type']``).

        ``max_atoms`` caps the atoms per species (a random subset, ``seed``); atoms left out are
        not guaranteed gamma <= 1.  ``tol``: MaxVol stops at max |coefficient| <= 1 + tol.
        """
        b, types, _ = basis_vectors(model, frames)
        if max_atoms is not None:
            rng = np.random.default_rng(seed)
            keep = np.concatenate([rng.permutation(np.nonzero(types == t)[0])[:max_atoms] for t in np.unique(types)])
            b, types = b[np.sort(keep)], types[np.sort(keep)]
        return cls.from_vectors(b, types, model.n_species, model_sha256(model), tol, rank_tol)

    def gamma(self, b: np.ndarray, types: np.ndarray) -> np.ndarray:
        """Grades (N,) of basis rows b (N, n_scal) of species ``types`` (N,); inf for a species
        without training atoms."""
        g = np.full(len(b), np.inf)
        for t in np.unique(types):
            if int(t) in self.sets:
                m = types == t
                g[m] = self.sets[int(t)].gamma(b[m])
        return g

    def updated(self, b: np.ndarray, types: np.ndarray) -> "ActiveSet":
        """A new set after MaxVol over the current rows plus rows b (N, n_scal) (``select-add``)."""
        sets = dict(self.sets)
        for t in np.unique(types):
            new = b[types == t]
            old = sets.get(int(t))
            if old is None:
                sets[int(t)] = SpeciesActiveSet.build(new, self.tol, self.rank_tol)
            else:
                sets[int(t)] = SpeciesActiveSet.build(np.vstack([old.rows, new]), self.tol, self.rank_tol,
                                                      old.scale, old.resid_tol)
        return ActiveSet(sets, self.n_species, self.sha256, self.tol, self.rank_tol)

    def size(self) -> dict[int, int]:
        """Active rows per species (the numerical rank of its training span)."""
        return {t: s.rows.shape[0] for t, s in sorted(self.sets.items())}

    def save(self, path: str | Path) -> None:
        """Write an ``.npz`` holding every species' rows, scales and span basis and the model hash."""
        arrays: dict[str, np.ndarray] = {
            "format": np.array("sus2md-active-set-1"), "model_sha256": np.array(self.sha256),
            "n_species": np.array(self.n_species), "tol": np.array(self.tol), "rank_tol": np.array(self.rank_tol),
        }
        for t, s in self.sets.items():
            arrays.update({f"rows_{t}": s.rows, f"scale_{t}": s.scale, f"basis_{t}": s.basis, f"resid_tol_{t}": np.array(s.resid_tol)})
        try:
            with open(path, "wb") as fh:
                np.savez(fh, **arrays)
        except OSError as e:
            raise UsageError(f"cannot write active set {path}: {e.strerror}") from None

    @classmethod
    def load(cls, path: str | Path, model: SUS2Potential) -> "ActiveSet":
        """Read an ``.npz`` from :meth:`save`; UsageError if it was built for another model."""
        path = Path(path)
        if not path.is_file():
            raise UsageError(f"active set file not found: {path}")
        try:
            with np.load(path, allow_pickle=False) as z:
                d = {k: z[k] for k in z.files}
            fmt, sha = str(d["format"]), str(d["model_sha256"])
            species = sorted(int(k[5:]) for k in d if k.startswith("rows_"))
            sets = {t: SpeciesActiveSet(d[f"rows_{t}"], d[f"scale_{t}"], d[f"basis_{t}"], float(d[f"resid_tol_{t}"]))
                    for t in species}
            out = cls(sets, int(d["n_species"]), sha, float(d["tol"]), float(d["rank_tol"]))
        except Exception as e:  # zip, key, shape and dtype errors all mean "not our file"
            raise UsageError(f"{path}: not a sus2md active set ({type(e).__name__}: {e}); rebuild it with 'sus2md grade'") from None
        if fmt != "sus2md-active-set-1":
            raise UsageError(f"{path}: unknown active-set format {fmt!r}")
        if sha != model_sha256(model):
            raise UsageError(f"{path} was built for model sha256 {sha[:12]}..., not this model ({model_sha256(model)[:12]}...); "
                             f"rebuild the active set for this model")
        return out


def grade(model: SUS2Potential, active_set: ActiveSet, atoms) -> np.ndarray:
    """Grades gamma (N,) of the atoms of one configuration (Atoms with ``arrays['mtp_type']``)."""
    b, types, _ = basis_vectors(model, [atoms])
    return active_set.gamma(b, types)


def grade_arrays(model: SUS2Potential, active_set: ActiveSet, species: np.ndarray, positions_A: np.ndarray,
                 cell_A: np.ndarray, pbc: np.ndarray) -> np.ndarray:
    """Grades (N,) from raw arrays: species (N,) int types, positions (N, 3) Å, cell (3, 3) Å rows."""
    dtype = next(model.parameters()).dtype
    g = build_graph([species], [positions_A], [cell_A], [pbc], model.cutoff, dtype=dtype)
    return active_set.gamma(_linear_basis(model, g), np.asarray(species, dtype=np.int64))


def frame_max_gamma(model: SUS2Potential, active_set: ActiveSet, frames: Sequence) -> np.ndarray:
    """Largest atomic grade (n_frames,) of every configuration."""
    b, types, frame = basis_vectors(model, frames)
    out = np.zeros(len(frames))
    np.maximum.at(out, frame, active_set.gamma(b, types))
    return out


def select_configurations(model: SUS2Potential, train_frames: Sequence, candidate_frames: Sequence,
                          threshold: float = 2.0, max_new: int = 50, active_set: ActiveSet | None = None,
                          max_atoms: int | None = None) -> list[int]:
    """Candidates to label next, most novel first (MTP ``select-add``).

    Greedy: take the remaining candidate with the largest max gamma while it exceeds
    ``threshold``, add its atoms to the active set by MaxVol (so candidates that duplicate it
    drop below the threshold), repeat up to ``max_new`` times.  ``active_set`` skips building one
    from ``train_frames``.

    Returns:
        Indices into ``candidate_frames`` in selection order.
    """
    aset = active_set or ActiveSet.from_frames(model, train_frames, max_atoms=max_atoms)
    b, types, frame = basis_vectors(model, candidate_frames)
    chosen: list[int] = []
    alive = np.ones(len(candidate_frames), dtype=bool)
    while len(chosen) < max_new and alive.any():
        per_frame = np.zeros(len(candidate_frames))
        np.maximum.at(per_frame, frame, aset.gamma(b, types))
        per_frame[~alive] = -np.inf
        k = int(np.argmax(per_frame))
        if not per_frame[k] > threshold:
            break
        chosen.append(k)
        alive[k] = False
        m = frame == k
        aset = aset.updated(b[m], types[m])
    return chosen


class GradeMonitor:
    """MD hook: grade snapshots, log and dump extrapolating ones, stop on strong extrapolation.

    Args:
        model, active_set: the running model and its active set (same model hash).
        warn_threshold: above it a warning is logged and, with ``dump_path``, the snapshot is
            appended to that ``.cfg`` (features ``step`` and ``max_gamma``) for retraining.
        break_threshold: above it :meth:`check` raises :class:`SimulationError`.
    """

    def __init__(self, model: SUS2Potential, active_set: ActiveSet, warn_threshold: float = 2.0,
                 break_threshold: float = 10.0, dump_path: str | Path | None = None):
        if not 0 < warn_threshold <= break_threshold:
            raise UsageError(f"grade thresholds need 0 < warn <= break, got warn {warn_threshold}, break {break_threshold}")
        if active_set.sha256 != model_sha256(model):
            raise UsageError("the active set was built for another model; rebuild it for this one")
        self.model, self.active_set = model, active_set
        self.warn_threshold, self.break_threshold = warn_threshold, break_threshold
        self.dump_path = None if dump_path is None else Path(dump_path)
        self.n_dumped = 0
        self.last_gamma: float | None = None

    def check(self, species: np.ndarray, positions_A: np.ndarray, cell_A: np.ndarray, pbc: np.ndarray, step: int) -> float:
        """Max grade of one snapshot: species (N,) model types, positions (N, 3) Å, cell (3, 3) Å
        rows, pbc (3,) bool; ``step`` is only reported.  Raises SimulationError above break."""
        species = np.asarray(species, dtype=np.int64)
        g = grade_arrays(self.model, self.active_set, species, positions_A, cell_A, pbc)
        k = int(np.argmax(g)) if len(g) else 0
        gmax = float(g[k]) if len(g) else 0.0
        self.last_gamma = gmax  # also when the break threshold raises below
        if gmax > self.warn_threshold:
            log.warning("step %d: extrapolation grade %.3g (atom %d) above %g", step, gmax, k, self.warn_threshold)
            if self.dump_path is not None:
                self._dump(species, positions_A, cell_A, pbc, step, gmax)
        if gmax > self.break_threshold:
            names = self.model.species_names
            what = f"atom {k} ({names[species[k]]})" if names else f"atom {k} (type {species[k]})"
            raise SimulationError(f"step {step}: extrapolation grade {gmax:.3g} at {what} exceeds the break threshold "
                                  f"{self.break_threshold:g}; the model is far outside its training data"
                                  + (f" (snapshots in {self.dump_path})" if self.dump_path else ""))
        return gmax

    def _dump(self, species, positions_A, cell_A, pbc, step: int, gmax: float) -> None:
        from ase import Atoms

        from sus2md.io.cfg import write_cfg

        names = self.model.species_names
        numbers = None if names else species + 1
        atoms = Atoms(symbols=[names[t] for t in species] if names else None, numbers=numbers,
                      positions=positions_A, cell=cell_A, pbc=pbc)
        atoms.arrays["mtp_type"] = species.copy()
        atoms.info.update({"step": int(step), "max_gamma": float(gmax)})
        tmp = self.dump_path.with_name(self.dump_path.name + ".part")
        write_cfg(tmp, atoms)
        try:
            with open(self.dump_path, "a") as fh:
                fh.write(tmp.read_text())
        except OSError as e:
            raise SimulationError(f"cannot append to grade dump {self.dump_path}: {e.strerror}") from None
        finally:
            tmp.unlink(missing_ok=True)
        self.n_dumped += 1
