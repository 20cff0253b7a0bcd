r"""Descriptor Jacobians for the exact linear solve (:mod:`sus2md.train.linear`).

With the basic moments ``M_i[b] = sum_{e in i} R_{mu_b}(r_e) m_b(u_e)`` (``m_b`` = monomial
u_x^a u_y^b u_z^c)::

    dM_e[b]/dr_e = R'_{mu_b}(r) m_b(u) u + R_{mu_b}(r) (grad_u m_b - (u . grad_u m_b) u) / r

(``R'`` by forward-mode AD of the radial functions, elementwise in r).  With the contraction
Jacobian ``J_i = dB_i/dM_i`` (forward mode through the contraction, n_basic tangents) these give
``dB_{i(e)}[a]/dr_e`` for every scalar moment a at once: the force and virial columns of the
design matrix.  (The loss gradient itself uses :mod:`sus2md.train.fastpath`.)
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np
import torch
import torch.autograd.forward_ad as fwAD
from torch import Tensor

from sus2md.nn.calc import Graph
from sus2md.nn.potential import SUS2Potential
from sus2md.train.fastpath import monomials_and_grads

__all__ = ["contract", "descriptor_jacobian", "edge_terms"]


@dataclass
class _Basis:
    """The moment basis of a model as index tensors (built from its .mtp arrays, so this module
    depends only on the model's public parameters and ``radial_functions``)."""

    basic_mu: Tensor  # (n_basic,)
    basic_exp: Tensor  # (n_basic, 3)
    levels: list  # [(i0, i1, mult, out_local, n_slots)] per dependency level, slots renumbered
    n_mom: int
    mapping: Tensor  # (n_scal,) into the renumbered slots


_CACHE: "weakref.WeakKeyDictionary[SUS2Potential, _Basis]" = weakref.WeakKeyDictionary()


def _basis(model: SUS2Potential) -> _Basis:
    if model in _CACHE:
        return _CACHE[model]
    m = model._mtp_template
    basic = np.asarray(m.alpha_index_basic, dtype=np.int64)
    times = np.asarray(m.alpha_index_times, dtype=np.int64).reshape(-1, 4)
    n_basic, n_mom = len(basic), int(m.alpha_moments_count)
    level = np.zeros(n_mom, dtype=np.int64)
    for i0, i1, _, o in times:  # file order is topological (SPEC 4.2)
        level[o] = max(level[o], 1 + max(level[i0], level[i1]))
    new_id = np.full(n_mom, -1, dtype=np.int64)
    new_id[:n_basic] = np.arange(n_basic)
    nxt, groups = n_basic, []
    for lv in range(1, int(level.max(initial=0)) + 1):
        g = np.nonzero(level[times[:, 3]] == lv)[0]
        outs = list(dict.fromkeys(times[g, 3].tolist()))
        new_id[outs] = np.arange(nxt, nxt + len(outs))
        groups.append((g, nxt, len(outs)))
        nxt += len(outs)
    unused = new_id < 0  # never written: stay zero
    new_id[unused] = np.arange(nxt, nxt + int(unused.sum()))
    t = lambda a: torch.as_tensor(np.ascontiguousarray(a))
    levels = [(t(new_id[times[g, 0]]), t(new_id[times[g, 1]]), t(times[g, 2].astype(np.float64)),
               t(new_id[times[g, 3]] - start), n) for g, start, n in groups]
    b = _Basis(t(basic[:, 0]), t(basic[:, 1:]), levels, n_mom, t(new_id[np.asarray(m.alpha_moment_mapping)]))
    _CACHE[model] = b
    return b


def edge_terms(model: SUS2Potential, graph: Graph) -> tuple[Tensor, Tensor, Tensor]:
    """Per edge: basic-moment contributions (E, n_basic), their derivatives with respect to the
    edge vector (E, n_basic, 3), and the edge vectors (E, 3), Å."""
    vec = graph.edge_vectors()
    r = torch.sqrt((vec * vec).sum(1))
    u = vec / r.unsqueeze(1)
    sp = graph.species
    ti, tj = sp.index_select(0, graph.edge_i), sp.index_select(0, graph.edge_j)
    with fwAD.dual_level():
        dual = fwAD.make_dual(r, torch.ones_like(r))
        out = fwAD.unpack_dual(model.radial_functions(dual, ti, tj))
        rad, drad = out.primal, out.tangent  # (E, n_mu)
    mono, grad_u = monomials_and_grads(u, _basis(model).basic_exp, model.L)  # (E, n_basic), (E, n_basic, 3)
    radial = (grad_u - (grad_u * u.unsqueeze(1)).sum(2, keepdim=True) * u.unsqueeze(1)) / r.reshape(-1, 1, 1)
    R_b = rad.index_select(1, _basis(model).basic_mu)
    dR_b = drad.index_select(1, _basis(model).basic_mu)
    contrib = R_b * mono
    dcontrib = dR_b.unsqueeze(2) * mono.unsqueeze(2) * u.unsqueeze(1) + R_b.unsqueeze(2) * radial
    return contrib, dcontrib, vec


def contract(model: SUS2Potential, M: Tensor, tangent: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
    """Scalar moments B (N, n_scal) from basic moments M (N, n_basic); with ``tangent``
    (N, T, n_basic) also their forward-mode tangents (N, T, n_scal)."""
    basis = _basis(model)
    # Slot-major layout: gathers and scatters along dim 0 copy contiguous rows.
    mom = M.t()  # (n_slots, N)
    dmom = tangent.permute(2, 0, 1) if tangent is not None else None  # (n_slots, N, T)
    for i0, i1, m, out_idx, n_slots in basis.levels:
        m = m.to(mom.dtype).unsqueeze(1)
        a, b = mom.index_select(0, i0), mom.index_select(0, i1)
        out = mom.new_zeros((n_slots, mom.shape[1])).index_add(0, out_idx, a * b * m)
        if dmom is not None:
            da = dmom.index_select(0, i0) * (b * m).unsqueeze(2)
            db = dmom.index_select(0, i1) * (a * m).unsqueeze(2)
            dout = dmom.new_zeros((n_slots,) + dmom.shape[1:]).index_add(0, out_idx, da + db)
            dmom = torch.cat([dmom, dout], dim=0)
        mom = torch.cat([mom, out], dim=0)
    pad = basis.n_mom - mom.shape[0]
    if pad > 0:
        mom = torch.cat([mom, mom.new_zeros((pad, mom.shape[1]))], dim=0)
        if dmom is not None:
            dmom = torch.cat([dmom, dmom.new_zeros((pad,) + dmom.shape[1:])], dim=0)
    B = mom.index_select(0, basis.mapping).t()
    return B, (dmom.index_select(0, basis.mapping).permute(1, 2, 0) if dmom is not None else None)


@torch.no_grad()
def descriptor_jacobian(model: SUS2Potential, graph: Graph) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per-atom B (N, n_scal), contraction Jacobian J (N, n_basic, n_scal), the edge derivatives
    dM_e/dr_e (E, n_basic, 3) and the edge vectors (E, 3): dB_{i(e)}[a]/dr_e = sum_b J[i(e), b, a] dM_e[b]."""
    contrib, dcontrib, vec = edge_terms(model, graph)
    n, nb = graph.species.shape[0], contrib.shape[1]
    M = torch.zeros((n, nb), dtype=contrib.dtype, device=contrib.device).index_add(0, graph.edge_i, contrib)
    eye = torch.eye(nb, dtype=M.dtype, device=M.device).expand(n, nb, nb)
    B, J = contract(model, M, eye)
    return B, J, dcontrib, vec
