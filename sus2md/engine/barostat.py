r"""Monte Carlo barostat run by the stage loop between integrator chunks, with acceptance counts.

OpenMM's Monte Carlo barostats report no acceptance, and its flexible barostat cannot sample a
crystal: every trial changes all six box components by up to 1 % of the box length at once and
scales the atoms along the diagonal only, so a trial shear displaces the periodic images across
the tilted faces.  In a 324-atom Cu2Se crystal at 600 K each such trial costs tens of kT; the step
size shrinks by only 1.1x per 10 rejections, and in 1000 steps (40 trials) not one was accepted:
the box never moved.  This barostat makes the same kinds of moves with the atoms carried along
affinely (fractional coordinates kept), one box component per trial, each kind with its own
adaptive step, and counts accepted and attempted moves per kind.

Box vectors are rows of h (OpenMM's reduced, lower-triangular form), positions rows of r, both nm;
a trial h -> h' moves the atoms to r' = r h^-1 h' (Jacobian (V'/V)^N).  Moves (one per trial):

* ``volume`` (isotropic): ln V' = ln V + d, d uniform in [-s, s]; h' = (V'/V)^(1/3) h.  A move
  symmetric in ln V samples p(ln V) ~ V^(N+1) exp(-PV/kT), so it is accepted with probability
  min(1, exp(-w/kT)), w = dU + P dV - (N + 1) kT ln(V'/V) (Frenkel & Smit, section 5.4).
* ``axis`` (anisotropic, flexible): one Cartesian axis k at random.  Anisotropic: column k of h
  scaled by V'/V with ln V' - ln V as above, w as for ``volume``.  Flexible: the diagonal element
  h_kk moves by d uniform in [-s L0, s L0] (L0: the cube root of the volume at the stage's first
  trial, fixed so that the proposal stays symmetric).
* ``shear`` (flexible): one off-diagonal element (b_x, c_x or c_y) moves by d uniform in
  [-s L0, s L0].  Flexible moves are accepted with OpenMM's ``MonteCarloFlexibleBarostat`` rule
  w = dU + P dV - (N - 2) kT ln(V'/V) - kT ln(a_x'^2 b_y' / (a_x^2 b_y)): every proposal above is
  symmetric in the six components of h, and the affine move has the same Jacobian as OpenMM's.

After a shear move the box is reduced again (whole lattice vectors added, which moves no atom).
During the first :data:`ADAPT_ATTEMPTS` attempts of a kind, every 10 attempts its step s is
multiplied by 1.5 above 50 % acceptance and divided by 1.5 below 20 %, within [1e-5, 0.3]; then
it stays fixed, so the chain satisfies detailed balance from there on.  The random numbers come
from a seeded numpy Generator whose state, the step sizes and the counts are part of the run's
checkpoint, so a resumed run makes the same moves as an uninterrupted one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sus2md.units import BAR_TO_KJ_PER_MOL_NM3, KB_KJ_PER_MOL

__all__ = ["CellBarostat", "MOVE_KINDS", "KIND_MOVES"]

#: every move kind, in thermo.csv column order
MOVE_KINDS = ("volume", "axis", "shear")
#: the moves each protocol barostat makes
KIND_MOVES = {"isotropic": ("volume",), "anisotropic": ("axis",), "flexible": ("axis", "shear")}
_INITIAL_STEP = {"volume": 0.01, "axis": 0.005, "shear": 0.005}
#: step sizes adapt during this many attempts of each kind, then stay fixed
ADAPT_ATTEMPTS = 200
_ADAPT_EVERY, _GROW, _LOW, _HIGH, _STEP_MIN, _STEP_MAX = 10, 1.5, 0.2, 0.5, 1e-5, 0.3
_SHEAR = ((1, 0), (2, 0), (2, 1))  # (row, column) of b_x, c_x, c_y


@dataclass
class _Move:
    step: float
    accepted: int = 0
    attempted: int = 0
    window: list[int] = field(default_factory=lambda: [0, 0])  # accepted, attempted since the last adaptation


def reduce_box(h: np.ndarray) -> np.ndarray:
    """OpenMM's reduced form of lower-triangular box rows (the same lattice)."""
    h = h.copy()
    for i in range(3):
        if h[i, i] < 0:
            h[i] = -h[i]
    h[2] -= h[1] * round(h[2, 1] / h[1, 1])
    h[2] -= h[0] * round(h[2, 0] / h[0, 0])
    h[1] -= h[0] * round(h[1, 0] / h[0, 0])
    return h


class CellBarostat:
    """Monte Carlo box moves of one NPT stage (module docstring).

    Args:
        kind: ``isotropic``, ``anisotropic`` or ``flexible``.
        pressure_bar: target pressure.
        temperature_K: temperature of the acceptance rule (follow a ramp with :attr:`temperature_K`).
        n_particles: N in the acceptance rule (every atom is scaled on its own).
        seed: seed of the move generator.
    """

    def __init__(self, kind: str, pressure_bar: float, temperature_K: float, n_particles: int, seed: int):
        if kind not in KIND_MOVES:
            raise ValueError(f"barostat kind must be one of {', '.join(KIND_MOVES)}, got {kind!r}")
        self.kind = kind
        self.pressure_bar = float(pressure_bar)
        self.temperature_K = float(temperature_K)
        self.n = int(n_particles)
        self.rng = np.random.default_rng(seed)
        self.moves = {k: _Move(_INITIAL_STEP[k]) for k in KIND_MOVES[kind]}
        self.length0: float | None = None  # nm, set at the first trial

    # -- bookkeeping ---------------------------------------------------------------------------

    def counts(self) -> dict[str, tuple[int, int] | None]:
        """(accepted, attempted) per move kind of :data:`MOVE_KINDS`; None for kinds not made."""
        return {k: (self.moves[k].accepted, self.moves[k].attempted) if k in self.moves else None for k in MOVE_KINDS}

    def state(self) -> dict[str, Any]:
        """Everything a resumed run needs (JSON-serializable)."""
        return {"rng": self.rng.bit_generator.state, "length0_nm": self.length0,
                "moves": {k: [m.step, m.accepted, m.attempted, *m.window] for k, m in self.moves.items()}}

    def load_state(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.length0 = state["length0_nm"]
        for k, (step, acc, att, w_acc, w_att) in state["moves"].items():
            self.moves[k] = _Move(float(step), int(acc), int(att), [int(w_acc), int(w_att)])

    # -- one trial -----------------------------------------------------------------------------

    def attempt(self, context: Any) -> bool:
        """One Monte Carlo move of ``context``'s box and positions; True when accepted."""
        from openmm import Vec3, unit

        kinds = list(self.moves)
        move = kinds[int(self.rng.integers(len(kinds)))] if len(kinds) > 1 else kinds[0]
        st = context.getState(getPositions=True, getEnergy=True, enforcePeriodicBox=False)
        u0 = st.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
        pos = st.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
        h = np.asarray(st.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer))
        trial, rule = self._propose(move, h)
        if rule == "impossible":
            self._count(move, False)
            return False
        moved = np.asarray(pos) @ np.linalg.solve(h, trial)  # r h^-1 h'
        trial = reduce_box(trial)
        context.setPeriodicBoxVectors(*(Vec3(*map(float, row)) for row in trial))
        context.setPositions(moved)
        u1 = context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
        kT = KB_KJ_PER_MOL * self.temperature_K
        v0, v1 = float(np.prod(np.diag(h))), float(np.prod(np.diag(trial)))
        w = (u1 - u0) + self.pressure_bar * BAR_TO_KJ_PER_MOL_NM3 * (v1 - v0)
        if rule == "flexible":
            w -= (self.n - 2) * kT * math.log(v1 / v0)
            w -= kT * math.log(trial[0, 0] ** 2 * trial[1, 1] / (h[0, 0] ** 2 * h[1, 1]))
        else:
            w -= (self.n + 1) * kT * math.log(v1 / v0)
        accepted = bool(math.isfinite(w) and (w <= 0 or self.rng.random() < math.exp(-w / kT)))
        if not accepted:
            context.setPeriodicBoxVectors(*(Vec3(*map(float, row)) for row in h))
            context.setPositions(pos)
        self._count(move, accepted)
        return accepted

    def _propose(self, move: str, h: np.ndarray) -> tuple[np.ndarray, str]:
        """Trial box rows for ``move`` and the acceptance rule it uses."""
        m = self.moves[move]
        trial = h.copy()
        if move == "volume":
            return trial * math.exp(m.step * self.rng.uniform(-1.0, 1.0) / 3.0), "volume"
        k = int(self.rng.integers(3))
        if self.kind == "anisotropic":
            trial[:, k] *= math.exp(m.step * self.rng.uniform(-1.0, 1.0))
            return trial, "volume"
        if self.length0 is None:
            self.length0 = float(np.prod(np.diag(h))) ** (1.0 / 3.0)
        d = m.step * self.length0 * self.rng.uniform(-1.0, 1.0)
        if move == "axis":
            trial[k, k] += d
            if trial[k, k] <= 0:
                trial[k, k] = h[k, k]  # an impossible box: the move is rejected below
                return trial, "impossible"
        else:
            i, j = _SHEAR[k]
            trial[i, j] += d
        return trial, "flexible"

    def _count(self, move: str, accepted: bool) -> None:
        m = self.moves[move]
        m.attempted += 1
        m.accepted += int(accepted)
        m.window[0] += int(accepted)
        m.window[1] += 1
        if m.window[1] >= _ADAPT_EVERY and m.attempted <= ADAPT_ATTEMPTS:
            rate = m.window[0] / m.window[1]
            if rate > _HIGH:
                m.step = min(m.step * _GROW, _STEP_MAX)
            elif rate < _LOW:
                m.step = max(m.step / _GROW, _STEP_MIN)
            m.window = [0, 0]
