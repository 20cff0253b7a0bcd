"""Start of training: seeded coefficients (SPEC-sus2 3.5), Rescale of the global scaling and
random sampling of the nonlinear block (SPEC-sus2 8.3, pre-training).

Rescale: every scalar moment B_a built from q basic moments scales as ``scaling**q``, so the
least-squares fit itself does not depend on ``scaling``; only the size of the fitted ``w`` does.
Like the authors' newer trainer we pick ``scaling`` so that the log-centre of ``|w|`` is ~0
(secant iterations in log(scaling) on a small subset), which keeps the nonlinear optimisation
well scaled.
"""
from __future__ import annotations

import logging
import math
from typing import Sequence

import numpy as np
import torch

from sus2md.io.mtp import MTPFile
from sus2md.nn.potential import SUS2Potential
from sus2md.train.dataset import Batch
from sus2md.train.linear import train_linear
from sus2md.train.loss import LossWeights, batch_loss

__all__ = ["init_coefficients", "rescale", "random_sampling"]

log = logging.getLogger(__name__)


ALPHA_INIT = (4.0, 2.0)  # 1/Å, the authors' kRandomScalMax/Min (SPEC-sus2 3.5)
R0_INIT_A = (1.5, 2.5)  # Å, the authors' kRandomShiftMin/Max


def _pair_lerp(S: int, nb: int, rng: np.random.Generator, jitter: float, alpha: tuple[float, float] = ALPHA_INIT,
               r0: tuple[float, float] = R0_INIT_A) -> tuple[np.ndarray, np.ndarray]:
    """(alpha, r0) of every block and ordered pair: from ``alpha[0]``, ``r0[0]`` at the first pair
    to ``alpha[1]``, ``r0[1]`` at the last along the pair strength sqrt(t_i+1) + sqrt(t_j+1)."""
    t = np.arange(S)
    s = np.sqrt(t[:, None] + 1.0) + np.sqrt(t[None, :] + 1.0)
    s = (s - s.min()) / (s.max() - s.min()) if s.max() > s.min() else np.full_like(s, 0.5)
    s = np.clip(s[None] + jitter * rng.uniform(-1, 1, (nb, S, S)), 0.0, 1.0)
    return alpha[0] + (alpha[1] - alpha[0]) * s, r0[0] + (r0[1] - r0[0]) * s


def init_coefficients(mtp: MTPFile, seed: int, alpha: tuple[float, float] = ALPHA_INIT,
                      r0: tuple[float, float] = R0_INIT_A) -> MTPFile:
    """Untrained -> seeded start: C ~ 5e-3 U(-1,1), species weights 1, (alpha, r0) by the
    pair-strength lerp over the ranges ``alpha``, ``r0`` with jitter 0.12, shift = 0, c = 1, w = 0."""
    m = mtp.copy()
    rng = np.random.default_rng(seed)
    S, nb, R = m.species_count, m.n_blocks, m.radial_basis_size
    alpha, r0 = _pair_lerp(S, nb, rng, 0.12, alpha, r0)
    m.scal_coeffs = np.stack([alpha, r0], axis=1).reshape(-1)
    rc = np.ones((m.radial_funcs_count, R + S))
    rc[:, :R] = 5e-3 * rng.uniform(-1, 1, (m.radial_funcs_count, R))
    m.radial_coeffs = rc
    m.shift_coeffs = np.zeros(S)
    m.species_coeffs = np.ones(S)
    m.moment_coeffs = np.zeros(len(m.alpha_moment_mapping))
    return m


def _log_centre(model: SUS2Potential, batches: Sequence[Batch], w: LossWeights) -> float:
    train_linear(model, batches, w)
    c = model.moment_coeffs.detach().abs().double()
    c = c[c > 0]
    return float(torch.log(c).mean()) if c.numel() else 0.0


@torch.no_grad()
def _set_scaling(model: SUS2Potential, log_s: float) -> None:
    model.scaling.fill_(math.exp(log_s))


def rescale(model: SUS2Potential, batches: Sequence[Batch], w: LossWeights, iters: int = 8) -> float:
    """Set ``model.scaling`` so that mean log|w| ~ 0 after TrainLinear on ``batches``; returns it."""
    x0 = math.log(float(model.scaling.detach()))
    f0 = _log_centre(model, batches, w)
    x1 = x0 + (0.5 if f0 > 0 else -0.5)
    for _ in range(iters):
        _set_scaling(model, x1)
        f1 = _log_centre(model, batches, w)
        if abs(f1) < 0.05 or not math.isfinite(f1) or f1 == f0:
            break
        x2 = x1 - f1 * (x1 - x0) / (f1 - f0)
        x2 = min(max(x2, x1 - 3.0), x1 + 3.0)  # no wild jumps on a noisy subset
        x0, f0, x1 = x1, f1, x2
    _set_scaling(model, x1)
    train_linear(model, batches, w)
    log.info("rescale: scaling = %.6g", float(model.scaling.detach()))
    return float(model.scaling.detach())


def _subset_loss(model: SUS2Potential, batches: Sequence[Batch], w: LossWeights) -> float:
    return float(sum(batch_loss(model, b, w, create_graph=False).detach() for b in batches))


def random_sampling(model: SUS2Potential, batches: Sequence[Batch], w: LossWeights, n: int, seed: int,
                    freeze_scaling: bool = False, alpha: tuple[float, float] = ALPHA_INIT,
                    r0: tuple[float, float] = R0_INIT_A) -> float:
    """Redraw the radial C ~ U(-0.5, 0.5) (and (alpha, r0) over the ranges ``alpha``, ``r0`` with
    jitter 0.2 unless frozen) ``n`` times, TrainLinear each, and keep the best (lowest loss on
    ``batches``).  Returns that loss."""
    rng = np.random.default_rng(seed + 1)
    best = {k: v.detach().clone() for k, v in model.state_dict().items()}
    best_loss = _subset_loss(model, batches, w)
    for _ in range(n):
        with torch.no_grad():
            model.radial.copy_(torch.as_tensor(rng.uniform(-0.5, 0.5, tuple(model.radial.shape))))
            if not freeze_scaling:
                a, r = _pair_lerp(model.n_species, model.n_blocks, rng, 0.2, alpha, r0)
                model.alpha.copy_(torch.as_tensor(a))
                model.r0.copy_(torch.as_tensor(r))
        rescale(model, batches, w, iters=4)
        loss = _subset_loss(model, batches, w)
        if math.isfinite(loss) and loss < best_loss:
            best_loss, best = loss, {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best)
    return best_loss
