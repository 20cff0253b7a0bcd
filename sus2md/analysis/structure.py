"""Structure from a trajectory: partial RDFs per element pair, first peaks, lattice parameters.

mdtraj conventions in, Å out: functions take an ``mdtraj.Trajectory`` (nm, periodic box per
frame) and return distances in Å and angles in degrees.  RDFs use the minimum image
(``periodic=True``), valid up to half the narrowest box width, which is the default ``r_max``.
"""
from __future__ import annotations

import numpy as np

from sus2md.units import NM_TO_ANGSTROM as NM

#: distances per chunk when histogramming, to bound memory (8 bytes each -> ~160 MB)
_CHUNK_DISTANCES = 20_000_000


def elements_of(traj) -> list[str]:
    """Element symbols present, in order of first appearance."""
    return list(dict.fromkeys(a.element.symbol for a in traj.topology.atoms))


def element_pairs(traj) -> list[tuple[str, str]]:
    """Unordered element pairs (A, A), (A, B), ... in order of first appearance."""
    els = elements_of(traj)
    return [(a, b) for i, a in enumerate(els) for b in els[i:]]


def atom_pairs(traj, a: str, b: str) -> np.ndarray:
    """Atom index pairs, shape (n_pairs, 2): i < j within one element, all of A x B across two."""
    symbols = np.array([atom.element.symbol for atom in traj.topology.atoms])
    ia, ib = np.flatnonzero(symbols == a), np.flatnonzero(symbols == b)
    if a == b:
        i, j = np.triu_indices(len(ia), k=1)
        return np.column_stack([ia[i], ia[j]])
    return np.array(np.meshgrid(ia, ib, indexing="ij")).reshape(2, -1).T


def max_rdf_radius_A(traj, cap_A: float = 10.0) -> float:
    """Half the narrowest perpendicular box width over all frames (Å), at most ``cap_A``."""
    box = traj.unitcell_vectors.astype(float) * NM  # (n_frames, 3, 3), rows = lattice vectors
    volume = np.abs(np.linalg.det(box))
    widths = [volume / np.linalg.norm(np.cross(box[:, j], box[:, k]), axis=1)
              for j, k in ((1, 2), (2, 0), (0, 1))]
    return float(min(0.5 * np.min(widths), cap_A))


def compute_rdf_A(traj, pairs: np.ndarray, r_max_A: float, bin_width_A: float = 0.05
                  ) -> tuple[np.ndarray, np.ndarray]:
    """g(r) of ``pairs`` (shape (n_pairs, 2)) over all frames -> (r_A, g), each (n_bins,).

    ``mdtraj.compute_rdf`` on chunks of frames; chunks are recombined with mdtraj's own weight
    (sum of 1/V over the chunk's frames), so the result equals one call on the whole trajectory.
    """
    import mdtraj as md

    n_bins = max(1, int(round(r_max_A / bin_width_A)))
    chunk = max(1, _CHUNK_DISTANCES // max(1, len(pairs)))
    total, weight, r = np.zeros(n_bins), 0.0, np.zeros(n_bins)
    for start in range(0, traj.n_frames, chunk):
        part = traj[start : start + chunk]
        r, g = md.compute_rdf(part, pairs, r_range=(0.0, r_max_A / NM), n_bins=n_bins, periodic=True)
        w = float(np.sum(1.0 / part.unitcell_volumes))
        total += g * w
        weight += w
    return r * NM, total / weight


def compute_rdfs(traj, r_max_A: float | None = None, bin_width_A: float = 0.05
                 ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Partial RDFs of every element pair -> (r_A (n_bins,), {"Cu-Se": g (n_bins,), ...})."""
    r_max_A = max_rdf_radius_A(traj) if r_max_A is None else r_max_A
    r, out = np.zeros(0), {}
    for a, b in element_pairs(traj):
        pairs = atom_pairs(traj, a, b)
        if len(pairs):
            r, out[f"{a}-{b}"] = compute_rdf_A(traj, pairs, r_max_A, bin_width_A)
    return r, out


def first_peak(r: np.ndarray, g: np.ndarray, threshold: float = 1.0) -> tuple[float, float]:
    """Position (same unit as ``r``) and height of the first peak of g(r); (nan, nan) if none.

    The first shell is the first stretch where a 3-bin running mean of g exceeds ``threshold``;
    the peak is its maximum, refined by a parabola through the neighbouring bins.
    """
    smooth = np.convolve(g, np.ones(3) / 3.0, mode="same")
    above = smooth > threshold
    if not above.any():
        return float("nan"), float("nan")
    start = int(np.argmax(above))
    below = np.flatnonzero(~above[start:])
    end = start + (int(below[0]) if len(below) else len(g) - start)
    i = start + int(np.argmax(smooth[start:end]))
    r_peak = float(r[i])
    if 0 < i < len(g) - 1:
        curvature = smooth[i - 1] - 2 * smooth[i] + smooth[i + 1]
        if curvature < 0:
            r_peak += 0.5 * (smooth[i - 1] - smooth[i + 1]) / curvature * float(r[1] - r[0])
    return r_peak, float(np.max(g[max(i - 1, 0) : i + 2]))  # raw height: a sharp peak can straddle two bins


def compute_lattice_parameters(traj) -> np.ndarray:
    """Box parameters per frame, shape (n_frames, 6): a, b, c in Å, alpha, beta, gamma in degrees."""
    return np.column_stack([traj.unitcell_lengths.astype(float) * NM, traj.unitcell_angles.astype(float)])


def compute_volume_A3(traj) -> np.ndarray:
    """Box volume per frame in Å^3, shape (n_frames,)."""
    return traj.unitcell_volumes.astype(float) * NM**3
