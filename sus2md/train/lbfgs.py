r"""Full-batch L-BFGS with a strong-Wolfe line search and a diagonal scaling (SPEC-sus2 8.3).

The authors' trainer runs dense BFGS from the identity.  Limited-memory BFGS from ``gamma * I``
(``torch.optim.LBFGS``) takes the same kind of steps on a few hundred parameters, but on a model
with thousands of per-pair (alpha, r0) it stalls: ``gamma`` follows the stiffest direction (the
moment coefficients), so the pair parameters barely move.  Here the metric is diagonal,
``H0 = gamma D``, with ``D = 1 / (sqrt(v) + eps)`` and ``v`` the mean of the squared per-batch
gradients at the (re)start (the empirical Fisher diagonal, what Adam divides by); ``gamma`` is the
usual ``s.y / y.D^{-1}.y`` from the newest pair.  ``D`` is fixed between restarts, so the usual
two-loop recursion is exact L-BFGS in the variables ``z = D^{-1/2} x``.

Everything is float64 and a function of the values and gradients alone, so a run is
deterministic, and its state (history, ``D``, the current point) goes into the checkpoint.

Line search (Nocedal & Wright, algorithms 3.5 and 3.6): bracket, then zoom by safeguarded cubic
interpolation, until ``f <= f0 + c1 t g0.d`` and ``|g.d| <= c2 |g0.d|``.  The first step of a
(re)start is scaled to move the parameters by ``first_step`` in the D-norm (on average).  A
non-finite loss halves the step.  A search that finds no decrease drops the history and retries
along the scaled gradient, starting at the length of the last accepted step; if that finds none
either, :attr:`LBFGS.stalled` is set (the loss is flat to its round-off, typically float32's, and
more iterations would repeat the same failed search).
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch
from torch import Tensor

__all__ = ["LBFGS"]

# fg(x) -> (loss, gradient), float64 vectors; x is not modified
Objective = Callable[[Tensor], tuple[float, Tensor]]


def _cubic_min(t1: float, f1: float, d1: float, t2: float, f2: float, d2: float) -> Optional[float]:
    """Minimiser of the cubic through (t, f, f') at t1 and t2, or None if it has none."""
    if t1 == t2:
        return None
    e1 = d1 + d2 - 3.0 * (f1 - f2) / (t1 - t2)
    sq = e1 * e1 - d1 * d2
    if sq < 0:
        return None
    e2 = math.copysign(math.sqrt(sq), t2 - t1)
    den = d2 - d1 + 2.0 * e2
    if den == 0:
        return None
    return t2 - (t2 - t1) * (d2 + e2 - e1) / den


def _interpolate(lo: tuple, hi: tuple) -> float:
    """A trial step strictly inside (lo, hi): the cubic minimiser, kept away from the ends."""
    a, b = sorted((lo[0], hi[0]))
    t = _cubic_min(*lo[:3], *hi[:3])
    margin = 0.1 * (b - a)
    if t is None or not math.isfinite(t) or t < a + margin or t > b - margin:
        t = 0.5 * (a + b)
    return t


class LBFGS:
    """Limited-memory BFGS on a flat float64 vector.  Call :meth:`step` with the objective;
    :meth:`restart` drops the history (after the parameters jumped, e.g. a linear solve)."""

    def __init__(self, history_size: int = 100, precondition: bool = True, first_step: float = 0.02,
                 c1: float = 1e-4, c2: float = 0.9, max_evals: int = 20):
        self.m, self.precondition, self.first_step = history_size, precondition, first_step
        self.c1, self.c2, self.max_evals = c1, c2, max_evals
        self.restart()

    def restart(self) -> None:
        self.stalled = False  # a line search along the scaled gradient found no decrease
        self.s: list[Tensor] = []
        self.y: list[Tensor] = []
        self.D: Optional[Tensor] = None
        self.scale: Optional[float] = None
        self.x: Optional[Tensor] = None
        self.f: float = math.nan
        self.g: Optional[Tensor] = None

    def state_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("s", "y", "D", "x", "f", "g", "stalled", "scale")}

    def load_state_dict(self, st: dict) -> None:
        for k, v in st.items():
            setattr(self, k, v)

    def start(self, x: Tensor, f: float, g: Tensor, batch_sq: Optional[Tensor]) -> None:
        """Begin at ``x`` with loss ``f``, gradient ``g`` and the mean squared per-batch gradient
        ``batch_sq`` (the diagonal scaling; None or ``precondition=False``: the identity)."""
        self.restart()
        self.x, self.f, self.g = x.double().clone(), float(f), g.double().clone()
        if self.precondition and batch_sq is not None:
            r = batch_sq.double().sqrt()
            pos = r[r > 0]
            eps = 1e-3 * float(pos.median()) if pos.numel() else 1.0
            self.D = 1.0 / (r + eps)
        else:
            self.D = torch.ones_like(self.x)

    def _direction(self) -> Tensor:
        q = -self.g.clone()
        alphas = []
        for s, y in zip(reversed(self.s), reversed(self.y)):
            a = float(s @ q) / float(s @ y)
            alphas.append(a)
            q -= a * y
        if self.s:
            s, y = self.s[-1], self.y[-1]
            q *= self.D * (float(s @ y) / float(y @ (self.D * y)))
        else:  # first step: a move of first_step (after a failed search: the last step's length) per parameter, in the D-norm
            q *= self.D
            q *= (self.scale or self.first_step) * math.sqrt(float((1.0 / self.D) @ torch.ones_like(q))) / max(
                math.sqrt(float(q @ (q / self.D))), 1e-300)
        for (s, y), a in zip(zip(self.s, self.y), reversed(alphas)):
            b = float(y @ q) / float(s @ y)
            q += (a - b) * s
        return q

    def step(self, fg: Objective) -> tuple[float, int]:
        """One iteration: direction, line search, history update.  Returns (new loss, number of
        objective evaluations); the new point is ``self.x``."""
        d = self._direction()
        gd0 = float(self.g @ d)
        if not gd0 < 0:  # not a descent direction (round-off): restart from the gradient
            self.s, self.y = [], []
            d = self._direction()
            gd0 = float(self.g @ d)
        fresh = not self.s
        t, f, g, n = self._line_search(fg, d, gd0)
        if g is None:  # no decrease found: keep the point, drop the history
            if not fresh:
                # the restart's first step: the length of the last accepted one, not first_step
                s_last = self.s[-1]
                self.scale = math.sqrt(float(s_last @ (s_last / self.D)) / float((1.0 / self.D).sum()))
            self.s, self.y = [], []
            self.stalled = fresh  # the scaled gradient itself gave nothing: the loss is at its precision
            return self.f, n
        s, y = t * d, g - self.g
        if float(s @ y) > 1e-12 * float(y @ y):
            self.s.append(s)
            self.y.append(y)
            if len(self.s) > self.m:
                self.s.pop(0)
                self.y.pop(0)
        self.x, self.f, self.g = self.x + s, f, g
        return f, n

    def _line_search(self, fg: Objective, d: Tensor, gd0: float):
        """Strong-Wolfe step along ``d``: (t, f, g, evaluations); g is None if nothing decreased."""
        f0, x0 = self.f, self.x
        evals = 0

        def phi(t: float):
            nonlocal evals
            evals += 1
            f, g = fg(x0 + t * d)
            return (t, f, float(g @ d) if math.isfinite(f) else math.nan, g)

        prev = (0.0, f0, gd0, self.g)
        best = None  # lowest point with sufficient decrease
        t = 1.0
        while evals < self.max_evals:
            cur = phi(t)
            if not math.isfinite(cur[1]):
                t = 0.5 * (prev[0] + t)
                continue
            if cur[1] <= f0 + self.c1 * t * gd0 and (best is None or cur[1] < best[1]):
                best = cur
            if cur[1] > f0 + self.c1 * t * gd0 or (evals > 1 and cur[1] >= prev[1]):
                return self._zoom(phi, prev, cur, f0, gd0, best, lambda: evals)
            if abs(cur[2]) <= -self.c2 * gd0:
                return cur[0], cur[1], cur[3], evals
            if cur[2] >= 0:
                return self._zoom(phi, cur, prev, f0, gd0, best, lambda: evals)
            nxt = _cubic_min(*prev[:3], *cur[:3])
            prev, t = cur, min(4.0 * t, max(1.1 * t, nxt if nxt is not None and math.isfinite(nxt) else 2.0 * t))
        return self._give_up(best, evals)

    def _zoom(self, phi, lo, hi, f0, gd0, best, evals):
        while evals() < self.max_evals and abs(hi[0] - lo[0]) > 1e-12 * max(1.0, abs(lo[0])):
            cur = phi(_interpolate(lo, hi))
            if not math.isfinite(cur[1]) or cur[1] > f0 + self.c1 * cur[0] * gd0 or cur[1] >= lo[1]:
                hi = cur
                continue
            if best is None or cur[1] < best[1]:
                best = cur
            if abs(cur[2]) <= -self.c2 * gd0:
                return cur[0], cur[1], cur[3], evals()
            if cur[2] * (hi[0] - lo[0]) >= 0:
                hi = lo
            lo = cur
        return self._give_up(best, evals())

    @staticmethod
    def _give_up(best, evals):
        if best is None:
            return 0.0, math.nan, None, evals
        return best[0], best[1], best[3], evals
