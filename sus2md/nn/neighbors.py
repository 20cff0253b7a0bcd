"""Neighbor list in torch: every periodic image within the cutoff (SPEC-sus2 section 5).

Minimum-image lists are wrong whenever a cell height is below 2 r_c, which is the common case
for the small training cells; this list enumerates *all* images.  The method is the authors'
ghost-atom replication followed by Cartesian cell binning, so it is O(N) for large systems and
handles triclinic cells, mixed periodicity, thin cells and non-periodic clusters alike:

1. wrap atoms into the cell along periodic directions (fractional coordinate in [0, 1));
2. add ghost images within ``cutoff`` of the cell along periodic directions (several layers of
   images when a cell height is below the cutoff);
3. bin real and ghost atoms in Cartesian bins of edge ``cutoff / 2`` and test the 125 bins around
   each real atom.

Edges are returned as directed pairs ``(i, j)`` with integer image ``shifts`` relative to the
*input* (unwrapped) positions: ``r_ij = positions[j] - positions[i] + shifts @ cell``, with
``0 < |r_ij| < cutoff`` (strict, as the reference trainer).  Every function is TorchScript-clean.
"""
from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor


def _effective_pbc(cell: Tensor, pbc: Tensor) -> Tensor:
    """A direction is periodic only if flagged and its lattice vector is non-zero."""
    return pbc & ((cell * cell).sum(dim=1) > 1e-24)


def _ghost_images(
    positions: Tensor, cell: Tensor, pbc: Tensor, cutoff: float
) -> Tuple[Tensor, Tensor, Tensor]:
    """Wrapped positions of all real and ghost points, their source atom, and their image shift.

    Returns ``points (P, 3)``, ``owner (P,)`` and ``shift (P, 3)`` (float, relative to the input
    positions) where the first N points are the real atoms.
    """
    n = positions.shape[0]
    dtype = positions.dtype
    device = positions.device
    periodic = _effective_pbc(cell, pbc)
    if not bool(periodic.any()):
        zeros = torch.zeros((n, 3), dtype=dtype, device=device)
        return positions, torch.arange(n, device=device), zeros
    # Replace non-periodic (possibly zero) rows by unit normals so the cell can be inverted.
    work = cell.clone()
    eye = torch.eye(3, dtype=dtype, device=device)
    for a in range(3):
        if not bool(periodic[a]):
            b = (a + 1) % 3
            c = (a + 2) % 3
            normal = torch.linalg.cross(work[b], work[c])
            if bool((normal * normal).sum() < 1e-24) or not bool(periodic[b] & periodic[c]):
                normal = eye[a]
            work[a] = normal / torch.sqrt((normal * normal).sum())
    frac = positions @ torch.linalg.inv(work)
    k = torch.where(periodic.unsqueeze(0), torch.floor(frac), torch.zeros_like(frac))
    frac_w = frac - k
    volume = torch.abs(torch.linalg.det(work))
    cr = torch.linalg.cross(work[torch.tensor([1, 2, 0])], work[torch.tensor([2, 0, 1])])
    heights = volume / torch.sqrt((cr * cr).sum(dim=1))
    reach = torch.where(periodic, cutoff / heights, torch.zeros_like(heights))
    nmax = torch.ceil(reach).to(torch.long)
    ranges = [torch.arange(-int(nmax[a]), int(nmax[a]) + 1, device=device, dtype=dtype) for a in range(3)]
    grid = torch.stack(torch.meshgrid(ranges[0], ranges[1], ranges[2], indexing="ij"), dim=-1).reshape(-1, 3)
    nonzero = (grid != 0).any(dim=1)
    images = grid[nonzero]
    # Candidate ghosts: every atom under every non-zero image; keep those within reach of the cell.
    cand = frac_w.unsqueeze(0) + images.unsqueeze(1)  # (I, N, 3)
    inside = ((cand >= -reach) & (cand < 1.0 + reach) | ~periodic).all(dim=2)
    nz = torch.nonzero(inside)
    img_idx = nz[:, 0]
    atom_idx = nz[:, 1]
    ghost_frac = cand[img_idx, atom_idx]
    points = torch.cat([frac_w, ghost_frac], dim=0) @ work
    owner = torch.cat([torch.arange(n, device=device), atom_idx])
    # shift relative to the input positions: image - k_owner (k_i is added per edge later)
    shift = torch.cat([-k, images[img_idx] - k[atom_idx]], dim=0)
    return points, owner, shift


def neighbor_list(
    positions: Tensor, cell: Tensor, pbc: Tensor, cutoff: float, max_candidates: int = 4_000_000
) -> Tuple[Tensor, Tensor, Tensor]:
    """All directed neighbor pairs within ``cutoff``.

    Args:
        positions: (N, 3) Cartesian positions, Å (any float dtype; need not be wrapped).
        cell: (3, 3) lattice vectors as rows, Å.  Rows of non-periodic directions may be zero.
        pbc: (3,) bool periodic flags.
        cutoff: cutoff radius r_c, Å; pairs with 0 < r < r_c are returned.
        max_candidates: bound on candidate pairs held in memory at once (chunking).

    Returns:
        ``i (E,)``, ``j (E,)`` int64 atom indices and ``shifts (E, 3)`` image shifts in units of
        lattice vectors (same dtype as positions), so that
        ``r_ij = positions[j] - positions[i] + shifts @ cell``.
    """
    n = positions.shape[0]
    device = positions.device
    pos = positions.detach()
    points, owner, shift = _ghost_images(pos, cell.detach().to(pos.dtype), pbc, cutoff)
    if n == 0:
        empty = torch.zeros(0, dtype=torch.long, device=device)
        return empty, empty, torch.zeros((0, 3), dtype=pos.dtype, device=device)
    bin_size = cutoff / 2.0
    lo = points.min(dim=0).values
    bin3 = torch.floor((points - lo) / bin_size).to(torch.long)
    nbins = bin3.max(dim=0).values + 1
    strides = torch.stack([nbins[1] * nbins[2], nbins[2], torch.ones_like(nbins[0])])
    bin_id = (bin3 * strides).sum(dim=1)
    order = torch.argsort(bin_id)
    sorted_bins = bin_id[order]
    total_bins = int(nbins[0] * nbins[1] * nbins[2])
    counts = torch.bincount(sorted_bins, minlength=total_bins)
    starts = torch.cumsum(counts, 0) - counts
    r = torch.arange(-2, 3, device=device)
    offsets = torch.stack(torch.meshgrid(r, r, r, indexing="ij"), dim=-1).reshape(-1, 3)
    # per-atom chunking keeps the candidate arrays bounded for very large systems
    per_atom = max(1, int(counts.float().mean().item() * 125.0 * 1.5) + 1)
    chunk = max(1, max_candidates // per_atom)
    ii: list[Tensor] = []
    jj: list[Tensor] = []
    ss: list[Tensor] = []
    cut2 = cutoff * cutoff
    sorted_points = points.index_select(0, order)  # candidates are read in bin order
    for start in range(0, n, chunk):
        atoms = torch.arange(start, min(n, start + chunk), device=device)
        nb3 = bin3.index_select(0, atoms).unsqueeze(1) + offsets.unsqueeze(0)  # (A, 125, 3)
        valid = ((nb3 >= 0) & (nb3 < nbins)).all(dim=2)
        nzv = torch.nonzero(valid)
        a_idx = nzv[:, 0]
        b = (nb3.reshape(-1, 3).index_select(0, a_idx * offsets.shape[0] + nzv[:, 1]) * strides).sum(dim=1)
        cnt = counts.index_select(0, b)
        pair = torch.repeat_interleave(torch.arange(cnt.shape[0], device=device), cnt)
        first = torch.cumsum(cnt, 0) - cnt
        slot = starts.index_select(0, b).index_select(0, pair) + torch.arange(pair.shape[0], device=device) - first.index_select(0, pair)
        i = atoms.index_select(0, a_idx.index_select(0, pair))
        d = sorted_points.index_select(0, slot) - points.index_select(0, i)
        d2 = d[:, 0] * d[:, 0] + d[:, 1] * d[:, 1] + d[:, 2] * d[:, 2]  # 3x faster than (d * d).sum(1), same bits
        keep = torch.nonzero((d2 < cut2) & (d2 > 0)).squeeze(1)
        i = i.index_select(0, keep)
        pnt = order.index_select(0, slot.index_select(0, keep))
        ii.append(i)
        jj.append(owner.index_select(0, pnt))
        ss.append(shift.index_select(0, pnt) - shift.index_select(0, i))
    return torch.cat(ii), torch.cat(jj), torch.cat(ss)


def edge_vectors(positions: Tensor, cell: Tensor, i: Tensor, j: Tensor, shifts: Tensor) -> Tensor:
    """``r_ij = positions[j] - positions[i] + shifts @ cell`` (E, 3), differentiable in both."""
    return positions[j] - positions[i] + shifts.to(positions.dtype) @ cell
