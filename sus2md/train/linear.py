r"""Exact weighted least squares for the linear block (SPEC-sus2 8.2, the authors' TrainLinear).

With the nonlinear parameters (alpha, r0, radial C, species weights, scaling) and the species
coefficients ``c_t`` fixed, the energy of a configuration is linear in ``x = (lambda_t, w_a)``::

    E   = sum_t n_t lambda_t + sum_a w_a Bsum_a,        Bsum_a = sum_i c_{t_i} B_i[a]
    F_i = sum_a w_a (-d Bsum_a / d r_i),                 W = sum_a w_a W(Bsum_a)

so every label gives one row of a design matrix X.  Rows are weighted as in the loss
(energy sqrt(w_E/N), or sqrt(w_E)/N with ``loss.energy_norm: per_atom``; forces sqrt(w_F); virial
sqrt(w_S/N), 9 components) and accumulated into the
normal equations ``A = X^T X``, ``b = X^T y`` batch by batch (and summed across ranks).  The
force/virial rows need d Bsum_a / d r_e for every moment a: the contraction Jacobian times
the edge derivatives of the basic moments (:func:`sus2md.train.explicit.descriptor_jacobian`).  The solution is stored as ``shift = lambda - c``,
``moment_coeffs = w``.  New models have ``c = 1`` (the authors' TrainLinear stores ``c = 1``);
keeping a fine-tuned model's ``c_t`` instead makes its published coefficients a feasible point,
so the refit can only lower the training loss.  Columns with no data (species absent from the training set)
keep their current values.

The published moment bases hold scalar moments that are the same polynomial reached by two
contraction orders (six pairs in every basis of ``../shared/reference``, e.g. tr(ABC) and tr(ACB)
of symmetric A, B, C).  Only the sum of a pair's coefficients acts on the energy; the difference
is a null direction of the loss.  :func:`duplicate_moments` finds the pairs and
:func:`tie_duplicates` gives each member the group mean (the model is unchanged), so that neither
the solve nor an optimiser drifts along them: in float32, coefficients of +-1000 on two equal
columns put round-off of 1e3 x eps into every gradient that passes through them.
"""
from __future__ import annotations

import logging
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor

from sus2md.nn.potential import SUS2Potential
from sus2md.train.dataset import Batch
from sus2md.train.explicit import descriptor_jacobian
from sus2md.train.loss import LossWeights, energy_norm

__all__ = ["normalize_radial", "batch_rows", "normal_equations", "solve_normal", "train_linear",
           "duplicate_moments", "tie_duplicates"]

log = logging.getLogger(__name__)


@torch.no_grad()
def duplicate_moments(model: SUS2Potential) -> list[Tensor]:
    """Groups (index tensors into ``moment_coeffs``) of scalar moments that are the same
    polynomial of the basic moments: equal, to 1e-10, at four seeded random points (distinct
    polynomials agree there with probability zero)."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand((4, int(model.basic_flat.shape[0])), generator=g, dtype=torch.float64) * 2 - 1
    B = model._contract(x).index_select(1, model.mapping).t()  # (n_scal, 4)
    B = B / B.abs().amax(1, keepdim=True).clamp_min(1e-300)
    first = (torch.cdist(B, B, p=float("inf")) <= 1e-10).int().argmax(1)  # lowest equal index (itself at most)
    groups = [torch.nonzero(first == a).flatten() for a in torch.unique(first).tolist()]
    return [g for g in groups if g.numel() > 1]


@torch.no_grad()
def tie_duplicates(v: Tensor, groups: Sequence[Tensor]) -> None:
    """Give every member of each group (of :func:`duplicate_moments`) the group mean, in place
    (coefficients: the sum, so the model, is kept; gradients: the projection onto tied values)."""
    for idx in groups:
        v.index_fill_(0, idx, float(v.index_select(0, idx).mean()))


@torch.no_grad()
def normalize_radial(model: SUS2Potential) -> None:
    """Scale every radial coefficient row C_mu to unit norm (the authors' Orthogonalize)."""
    norm = model.radial.norm(dim=1, keepdim=True).clamp_min(1e-300)
    model.radial.div_(norm)


def _edge_jacobian(J: Tensor, dM: Tensor, edge_i: Tensor, n: int) -> Tensor:
    """dB_{i(e)}[a]/dr_e for every edge and moment, (E, 3, n_scal): one batched GEMM over atoms
    with the edges of each centre atom padded to the largest neighbour count."""
    E, nb = dM.shape[0], dM.shape[1]
    order = torch.argsort(edge_i, stable=True)
    ei = edge_i.index_select(0, order)
    counts = torch.bincount(ei, minlength=n)
    width = int(counts.max()) if E else 1
    first = torch.cumsum(counts, 0) - counts
    slot = ei * width + torch.arange(E) - first.index_select(0, ei)
    pad = dM.new_zeros((n * width, 3, nb)).index_put((slot,), dM.index_select(0, order).transpose(1, 2))
    d = torch.bmm(pad.reshape(n, width * 3, nb), J).reshape(n * width, 3, -1)  # (n*width, 3, n_scal)
    out = torch.empty((E, 3, d.shape[2]), dtype=d.dtype)
    out[order] = d.index_select(0, slot)
    return out


def batch_rows(model: SUS2Potential, batch: Batch, w: LossWeights) -> tuple[Tensor, Tensor]:
    """Weighted design rows X (n_rows, S + n_scal) and targets y (n_rows,) of one batch."""
    g = batch.graph
    S = model.n_species
    B, J, dM, vec = descriptor_jacobian(model, g)
    c = model.species_coeffs.detach().index_select(0, g.species).to(B.dtype)  # fixed c_t
    B, J = B * c.unsqueeze(1), J * c.reshape(-1, 1, 1)
    dt, n_scal, nb = B.dtype, B.shape[1], g.n_configs
    counts = torch.zeros((nb, S), dtype=dt).index_put_((g.batch, g.species), torch.ones_like(g.batch, dtype=dt), accumulate=True)
    bsum = torch.zeros((nb, n_scal), dtype=dt).index_add(0, g.batch, B)
    n = batch.n_atoms
    we = torch.sqrt(w.energy * batch.energy_mask / energy_norm(n, w)).unsqueeze(1)
    rows = [torch.cat([counts, bsum], 1) * we]
    ys = [batch.energy * we[:, 0]]
    need_f = w.force > 0 and bool(batch.force_mask.any())
    need_w = w.stress > 0 and bool(batch.virial_mask.any())
    if need_f or need_w:
        N = g.species.shape[0]
        if need_f:
            # F_k[a] = J_k^T sum_{e: i(e)=k} dM_e - sum_{e: j(e)=k} dB_{i(e)}[a]/dr_e
            S_k = torch.zeros((N,) + dM.shape[1:], dtype=dt).index_add(0, g.edge_i, dM)  # (N, n_basic, 3)
            own = torch.einsum("kba,kbx->kax", J, S_k)
            d = _edge_jacobian(J, dM, g.edge_i, N)  # (E, 3, n_scal)
            jf = own - torch.zeros((N, 3, n_scal), dtype=dt).index_add(0, g.edge_j, d).transpose(1, 2)
        if need_w:
            T_k = torch.zeros((N,) + dM.shape[1:] + (3,), dtype=dt).index_add(0, g.edge_i, dM.unsqueeze(3) * vec.reshape(-1, 1, 1, 3))
            per_atom = -torch.einsum("kba,kbxy->kaxy", J, T_k)  # (N, n_scal, 3, 3)
            jw = torch.zeros((nb, n_scal, 3, 3), dtype=dt).index_add(0, g.batch, per_atom)
        if need_f:
            wf = torch.sqrt(w.force * batch.force_mask).repeat_interleave(3).unsqueeze(1)
            xf = jf.permute(0, 2, 1).reshape(3 * N, n_scal) * wf
            rows.append(torch.cat([torch.zeros((xf.shape[0], S), dtype=dt), xf], 1))
            ys.append(batch.forces.reshape(-1) * wf[:, 0])
        if need_w:
            ww = torch.sqrt(w.stress * batch.virial_mask / n).repeat_interleave(9).unsqueeze(1)
            xw = jw.permute(0, 2, 3, 1).reshape(9 * nb, n_scal) * ww
            rows.append(torch.cat([torch.zeros((xw.shape[0], S), dtype=dt), xw], 1))
            ys.append(batch.virial.reshape(-1) * ww[:, 0])
    return torch.cat(rows).detach(), torch.cat(ys).detach()


def normal_equations(model: SUS2Potential, batches: Sequence[Batch], w: LossWeights,
                     reduce: Optional[Callable[[Tensor], Tensor]] = None) -> tuple[Tensor, Tensor]:
    """A = X^T X and b = X^T y over ``batches`` (float64), summed over ranks by ``reduce``."""
    n = model.n_species + model.moment_coeffs.shape[0]
    A = torch.zeros((n, n), dtype=torch.float64)
    b = torch.zeros(n, dtype=torch.float64)
    for batch in batches:
        X, y = batch_rows(model, batch, w)
        X, y = X.double(), y.double()
        A += X.t() @ X
        b += X.t() @ y
    if reduce is not None:
        A, b = reduce(A), reduce(b)
    return A, b


def solve_normal(A: Tensor, b: Tensor, x_old: Tensor) -> Tensor:
    """Solve (A + 1e-13 (I + diag A)) x = b on the columns that have data; others keep x_old."""
    active = torch.diagonal(A) > 0
    Aa = A[active][:, active].clone()
    Aa += torch.diag(1e-13 * (1.0 + torch.diagonal(Aa)))
    ba = b[active]
    L, info = torch.linalg.cholesky_ex(Aa)
    if int(info) == 0:
        xa = torch.cholesky_solve(ba.unsqueeze(1), L).squeeze(1)
    else:
        log.info("normal equations not positive definite; using least squares")
        xa = torch.linalg.lstsq(Aa, ba.unsqueeze(1), driver="gelsd").solution.squeeze(1)
    x = x_old.clone().double()
    x[active] = xa
    return x


@torch.no_grad()
def _store(model: SUS2Potential, x: Tensor) -> None:
    S = model.n_species
    model.shift.copy_(x[:S].to(model.shift.dtype) - model.species_coeffs)
    model.moment_coeffs.copy_(x[S:].to(model.moment_coeffs.dtype))


def train_linear(model: SUS2Potential, batches: Sequence[Batch], w: LossWeights,
                 reduce: Optional[Callable[[Tensor], Tensor]] = None, normalize: bool = True) -> None:
    """TrainLinear: normalise the radial rows, then the exact least-squares (lambda, w)."""
    if normalize:
        normalize_radial(model)
    A, b = normal_equations(model, batches, w, reduce)
    with torch.no_grad():
        x_old = torch.cat([(model.shift + model.species_coeffs).double(), model.moment_coeffs.double()])
    _store(model, solve_normal(A, b, x_old))
    tie_duplicates(model.moment_coeffs, duplicate_moments(model))
