r"""Energies, forces and virials for training with a first-order graph over the edges.

Training differentiates the force loss with respect to the parameters.  Through
:func:`sus2md.nn.calc.evaluate` that is a double backward over the whole edge graph.  Here the
positions never change, so everything geometric is computed once per batch (:class:`EdgeCache`)
and every loss evaluation runs a short, dense, first-order chain:

* radial functions and their r-derivatives per edge, ``R_mu(r_e)``, ``R'_mu(r_e)``
  (the only edge quantities that depend on parameters);
* basic moments per atom, ``M_i[mu, m] = sum_e R_mu(r_e) mono_m(u_e)`` (one batched matmul in the
  dense per-centre layout, per bucket of centres with similar neighbour counts);
* ``G_i = dE/dM_i`` by a (double-differentiable) reverse pass through the per-atom contraction
  only;
* per-edge gradient, with ``A_e,m = mono_m(u) u`` and ``P_e,m = (grad_u mono_m - (u.grad_u mono_m) u)/r``
  cached::

      d_e = sum_m ( sum_mu G_i[mu, m] R'_mu(r_e) ) A_e,m + ( sum_mu G_i[mu, m] R_mu(r_e) ) P_e,m

* ``F_i += sum_e d_e``, ``F_j -= d_e``, ``W = -sum_e d_e (x) r_e``  (as in :mod:`sus2md.nn.calc`).

Equal to ``evaluate`` to round-off (tested); two to three times cheaper per loss gradient.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from sus2md.nn.calc import Graph
from sus2md.nn.potential import SUS2Potential

__all__ = ["Bucket", "EdgeCache", "edge_cache", "energy_forces_virial", "matches", "monomials_and_grads"]


@dataclass
class Bucket:
    """Centres of similar neighbour counts in the dense layout (``n`` centres x ``width`` slots)."""

    atoms: Tensor  # (n,) the centres (atom indices of the batch)
    width: int
    r: Tensor  # (n*width,) edge lengths; padding slots lie beyond the cutoff
    ti: Tensor  # (n*width,) centre species
    tj: Tensor  # (n*width,) neighbour species
    j: Tensor  # (n*width,) neighbour atom (the centre itself on padding slots)
    vec: Tensor  # (n*width, 3) edge vectors
    mono: Tensor  # (n*width, n_mono)
    A: Tensor  # (n*width, n_mono, 3)
    P: Tensor  # (n*width, n_mono, 3)


@dataclass
class EdgeCache:
    """Geometry of one batch: its centres sorted by neighbour count and cut into buckets, each in
    the dense per-centre layout with its own width, so that padding stays small (one width for a
    whole batch of mixed structures left about half of the slots empty)."""

    n_atoms: int
    buckets: list  # of Bucket; their ``atoms`` concatenated are ``order``
    order: Tensor  # (N,) permutation of the atoms: bucket after bucket
    batch: Tensor  # (N,) configuration of each atom
    n_configs: int
    key: tuple  # (cutoff, L, dtype) of the model it was built for

    @property
    def width(self) -> int:
        """The widest bucket (the largest neighbour count)."""
        return max((b.width for b in self.buckets), default=1)

    @property
    def slots(self) -> int:
        return sum(int(b.atoms.shape[0]) * b.width for b in self.buckets)


def matches(ec: "EdgeCache | None", model: SUS2Potential) -> bool:
    """Whether ``ec`` was built for a model with this cutoff, L and dtype."""
    return ec is not None and ec.key == (model.cutoff, model.L, model.radial.dtype)


def monomials_and_grads(u: Tensor, exps: Tensor, L: int) -> tuple[Tensor, Tensor]:
    """u_x^a u_y^b u_z^c for every exponent row (a, b, c) of ``exps`` (E, n) and their gradients
    with respect to u (E, n, 3); ``L`` is the largest exponent."""
    powers = [torch.ones_like(u)]
    for _ in range(L):
        powers.append(powers[-1] * u)
    pw = torch.stack(powers, dim=2)  # (E, 3, L+1)
    p = torch.stack([pw[:, d, :].index_select(1, exps[:, d]) for d in range(3)], dim=2)  # (E, n, 3)
    em1 = (exps - 1).clamp_min(0)
    dp = torch.stack([pw[:, d, :].index_select(1, em1[:, d]) for d in range(3)], dim=2) * exps.to(u.dtype)
    mono = p.prod(dim=2)
    grad = torch.stack([dp[:, :, 0] * p[:, :, 1] * p[:, :, 2], p[:, :, 0] * dp[:, :, 1] * p[:, :, 2],
                        p[:, :, 0] * p[:, :, 1] * dp[:, :, 2]], dim=2)
    return mono, grad


def _bucket_bounds(counts: Tensor, min_atoms: int, min_fill: float) -> list[tuple[int, int]]:
    """Cut centres sorted by decreasing neighbour count into [start, stop) runs: a run ends when the
    next count falls below ``min_fill`` of the run's width and the run holds ``min_atoms``."""
    c = counts.tolist()
    bounds, start = [], 0
    for k in range(1, len(c) + 1):
        if k == len(c) or (k - start >= min_atoms and c[k] < min_fill * max(c[start], 1)
                           and len(c) - k >= min_atoms):
            bounds.append((start, k))
            start = k
    return bounds


@torch.no_grad()
def edge_cache(model: SUS2Potential, graph: Graph, min_atoms: int = 128, min_fill: float = 0.85) -> EdgeCache:
    """Precompute the parameter-independent edge geometry of ``graph`` for ``model``, in buckets
    of at least ``min_atoms`` centres whose counts stay above ``min_fill`` of the bucket's width."""
    n = int(graph.species.shape[0])
    vec_e = graph.edge_vectors()
    by_centre = torch.argsort(graph.edge_i, stable=True)
    ei, ej, vec_e = graph.edge_i.index_select(0, by_centre), graph.edge_j.index_select(0, by_centre), vec_e.index_select(0, by_centre)
    counts = torch.bincount(ei, minlength=n)
    first = torch.cumsum(counts, 0) - counts
    order = torch.argsort(counts, descending=True, stable=True)
    sp = graph.species
    buckets = []
    for a, b in _bucket_bounds(counts.index_select(0, order), min_atoms, min_fill):
        atoms = order[a:b]
        cnt = counts.index_select(0, atoms)
        nb, width = int(atoms.shape[0]), max(int(cnt.max()) if cnt.numel() else 1, 1)
        # the edges of these centres, centre after centre: slot k of local centre c is c*width + k
        local = torch.repeat_interleave(torch.arange(nb), cnt)
        within = torch.arange(int(cnt.sum())) - (torch.cumsum(cnt, 0) - cnt).index_select(0, local)
        src = first.index_select(0, atoms).index_select(0, local) + within
        slot = local * width + within
        vec = torch.zeros((nb * width, 3), dtype=vec_e.dtype)
        vec[:, 0] = model.cutoff + 1.0  # padding: beyond the cutoff, R = R' = 0
        vec[slot] = vec_e.index_select(0, src)
        j = atoms.repeat_interleave(width)
        j[slot] = ej.index_select(0, src)
        r = torch.sqrt((vec * vec).sum(1))
        u = vec / r.unsqueeze(1)
        mono, grad = monomials_and_grads(u, model.mono_exp, model.L)
        A = mono.unsqueeze(2) * u.unsqueeze(1)
        P = (grad - (grad * u.unsqueeze(1)).sum(2, keepdim=True) * u.unsqueeze(1)) / r.reshape(-1, 1, 1)
        buckets.append(Bucket(atoms, width, r, sp.index_select(0, atoms).repeat_interleave(width), sp.index_select(0, j),
                              j, vec, mono, A, P))
    return EdgeCache(n, buckets, order, graph.batch, graph.n_configs, (model.cutoff, model.L, model.radial.dtype))


def _contract_with_grad(model: SUS2Potential, M: Tensor, species: Tensor) -> tuple[Tensor, Tensor]:
    """Site energies (N,) and G = d(sum site)/dM (N, n_basic), G differentiable in the parameters."""
    if not M.requires_grad:
        M = M.requires_grad_(True)
    B = model._contract(M).index_select(1, model.mapping)
    c = model.species_coeffs.index_select(0, species)
    site = model.shift.index_select(0, species) + c + c * (B @ model.moment_coeffs)
    (G,) = torch.autograd.grad(site.sum(), M, create_graph=True)
    return site, G


def energy_forces_virial(model: SUS2Potential, ec: EdgeCache, species: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Energies (B,), forces (N, 3) and virials (B, 3, 3), differentiable in the parameters."""
    n_mono = int(model.mono_exp.shape[0])
    rads, Ms = [], []
    for bk in ec.buckets:
        nb, w = int(bk.atoms.shape[0]), bk.width
        rad, drad = model._radial(bk.r, bk.ti, bk.tj, True)  # (nb*w, n_mu)
        n_mu = rad.shape[1]
        rad3, drad3 = rad.reshape(nb, w, n_mu), drad.reshape(nb, w, n_mu)
        full = torch.bmm(rad3.transpose(1, 2), bk.mono.reshape(nb, w, n_mono))  # (nb, n_mu, n_mono)
        Ms.append(full.reshape(nb, n_mu * n_mono).index_select(1, model.basic_flat))
        rads.append((rad3, drad3))
    M = torch.cat(Ms) if len(Ms) > 1 else Ms[0]  # atoms in ``ec.order``
    site, G = _contract_with_grad(model, M, species.index_select(0, ec.order))
    n_mu = rads[0][0].shape[2]
    Gf = torch.zeros((ec.n_atoms, n_mu * n_mono), dtype=G.dtype).index_add(1, model.basic_flat, G).reshape(-1, n_mu, n_mono)
    dt = G.dtype
    forces = torch.zeros((ec.n_atoms, 3), dtype=dt)
    per_atom = torch.zeros((ec.n_atoms, 3, 3), dtype=dt)
    off = 0
    for bk, (rad3, drad3) in zip(ec.buckets, rads):
        nb, w = int(bk.atoms.shape[0]), bk.width
        Gb = Gf[off:off + nb]
        off += nb
        H = torch.bmm(drad3, Gb).reshape(nb * w, n_mono)  # sum_mu G R'
        K = torch.bmm(rad3, Gb).reshape(nb * w, n_mono)  # sum_mu G R
        d = torch.bmm(H.unsqueeze(1), bk.A).squeeze(1) + torch.bmm(K.unsqueeze(1), bk.P).squeeze(1)  # (nb*w, 3)
        forces = forces.index_add(0, bk.atoms, d.reshape(nb, w, 3).sum(1)).index_add(0, bk.j, -d)
        per_atom = per_atom.index_add(0, bk.atoms, -(d.reshape(nb, w, 3, 1) * bk.vec.reshape(nb, w, 1, 3)).sum(1))
    virial = torch.zeros((ec.n_configs, 3, 3), dtype=dt).index_add(0, ec.batch, per_atom)
    energy = torch.zeros(ec.n_configs, dtype=site.dtype).index_add(0, ec.batch.index_select(0, ec.order), site)
    return energy, forces, virial
