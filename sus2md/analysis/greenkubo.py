"""Thermal conductivity from the heat-current autocorrelation (Green-Kubo).

Convention (what heat_flux.csv holds, eV*Å/ps): the *total* heat current, not divided by volume,

    J = sum_i e_i v_i + sum_i W_i . v_i  =  sum_i e_i v_i - sum_i S_i . v_i

with e_i the per-atom energy (eV), v_i the velocity (Å/ps), W_i the per-atom (centroid) virial
tensor (eV, the PlusStress sign; sums to the total virial W) and S_i = -W_i the per-atom
"stress times volume" of LAMMPS' ``compute heat/flux`` (which uses ``- S_i v_i``).
:mod:`sus2md.engine.heatflux` computes J this way; its sign is pinned by an energy-continuity test.
Only <J(0).J(t)> enters kappa.  Then, for an isotropic system::

    kappa = 1 / (3 V kB T^2) * integral_0^inf <J(0) . J(t)> dt

and units work out as (eV*Å/ps)^2 * ps / (Å^3 * eV/K * K^2) = eV / (Å ps K), converted to
W/(m K) by e / (1e-10 m * 1e-12 s).  The running integral kappa(t) rises and then plateaus (and,
with noise, wanders); :func:`kappa_plateau` averages it over a stated window of correlation times.
"""
from __future__ import annotations

import numpy as np
from ase.units import _e as ELEMENTARY_CHARGE_C

from sus2md.units import KB_EV

#: 1 eV/(Å ps K) in W/(m K): e J / (1e-10 m * 1e-12 s * K)
EV_PER_A_PS_K_TO_W_PER_M_K: float = ELEMENTARY_CHARGE_C / (1e-10 * 1e-12)


def heat_current_autocorrelation(J: np.ndarray, max_lag: int | None = None) -> np.ndarray:
    """<J(0) . J(t)> over all time origins (FFT): ``J`` (T, 3) -> (max_lag + 1,), (unit of J)^2.

    Lag t is averaged over its T - t origins; default max_lag = T - 1.
    """
    J = np.asarray(J, dtype=float)
    n = J.shape[0]
    f = np.fft.rfft(J, n=2 * n, axis=0)
    acf = np.fft.irfft(f * np.conj(f), n=2 * n, axis=0)[:n].sum(axis=1) / (n - np.arange(n))
    return acf if max_lag is None else acf[: max_lag + 1]


def green_kubo_kappa(J_eVA_ps: np.ndarray, dt_ps: float, volume_A3: float, temperature_K: float,
                     max_lag_ps: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Running Green-Kubo integral -> (t_ps, kappa_W_mK), each (L,).

    ``J_eVA_ps``: total heat current per sample, shape (T, 3), eV*Å/ps, sampled every ``dt_ps``;
    ``volume_A3`` and ``temperature_K``: the averages over the same stretch.  The integral is the
    trapezoid rule up to ``max_lag_ps`` (default: 10% of the series, where the ACF still has
    >= 90% of its origins).
    """
    n = len(J_eVA_ps)
    max_lag = max(1, int(0.1 * n)) if max_lag_ps is None else min(n - 1, int(round(max_lag_ps / dt_ps)))
    acf = heat_current_autocorrelation(J_eVA_ps, max_lag)
    integral = np.concatenate([[0.0], np.cumsum(0.5 * (acf[1:] + acf[:-1]) * dt_ps)])
    kappa = integral / (3.0 * volume_A3 * KB_EV * temperature_K**2) * EV_PER_A_PS_K_TO_W_PER_M_K
    return np.arange(len(acf)) * dt_ps, kappa


def kappa_plateau(t_ps: np.ndarray, kappa: np.ndarray, window: tuple[float, float] = (0.5, 1.0)) -> float:
    """Mean of kappa(t) over ``window`` (fractions of the largest t) -- the reported value."""
    sel = (t_ps >= window[0] * t_ps[-1]) & (t_ps <= window[1] * t_ps[-1])
    return float(np.mean(kappa[sel]))


def mean_and_sem_over_runs(values: list[float] | np.ndarray) -> tuple[float, float]:
    """Mean and standard error (std, ddof=1, / sqrt(n)) of independent runs; sem NaN for one run."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return float("nan"), float("nan")
    sem = float(np.std(v, ddof=1) / np.sqrt(len(v))) if len(v) > 1 else float("nan")
    return float(np.mean(v)), sem
