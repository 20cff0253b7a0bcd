"""Mean-squared displacement, self-diffusion coefficients and Arrhenius fits.

MSD over all time origins in O(N T log T) (Kneller et al., Comput. Phys. Commun. 91, 191 (1995);
Calandrini et al., JDN 12, 201 (2011)).  For one coordinate series r(t), t = 0..T-1::

    MSD(m) = 1/(T-m) sum_{k=0}^{T-m-1} |r(k+m) - r(k)|^2 = S1(m) - 2 S2(m)
    S1(m)  = 1/(T-m) sum_{k=0}^{T-m-1} (|r(k+m)|^2 + |r(k)|^2)     (prefix sums)
    S2(m)  = 1/(T-m) sum_{k=0}^{T-m-1} r(k) . r(k+m)               (autocorrelation by FFT)

Coordinates must be unwrapped.  The centre of mass of the whole system is subtracted per frame
first (a thermostat or round-off lets it drift; its motion is not diffusion).  Einstein:
MSD(t) -> 6 D t + b, so D = slope / 6 of a straight-line fit over a window of lags; the intercept
b is the vibrational (cage) amplitude the atoms had before they started to wander.

**When there is a D at all.**  A sublattice that only vibrates about fixed sites has an MSD that
rises over a few tenths of a picosecond and then stays on a plateau of 2 <|u|^2> (u: displacement
from the site; 0.1-0.5 Å^2 in a solid); a straight line through any stretch of it has some slope, and slope/6 is not a
diffusion coefficient.  A D is reported only when the MSD is diffusive over the fit window:

1. *Fickian*: the log-log slope beta = d ln MSD / d ln t, fitted over the window, lies in
   ``LOG_SLOPE_RANGE`` = [0.8, 1.2] (beta = 1 is diffusion, beta < 1 caged or sub-diffusive motion,
   beta > 1 ballistic or drifting; Maginn et al., LiveCoMS 1, 6324 (2019), best practices for
   self-diffusivity).  This is also the "well past the vibrational plateau" test: with
   MSD = 6 D t + b over the window 0.2-0.8 of the max lag, beta >= 0.8 needs MSD(t_end) >= ~9 b
   (b, the intercept, is the plateau of the cage the atoms left), and on the plateau itself
   beta ~ 0.
2. *larger than any vibration*: MSD(t_end) >= ``MIN_MSD_A2`` = 1 Å^2.  By the Lindemann
   criterion the rms displacement sqrt<|u|^2> of a solid below its melting point is <= ~0.15 of
   the nearest-neighbour distance (<= 3.5 Å), so the vibrational plateau 2 <|u|^2> stays
   <= ~0.55 Å^2; 1 Å^2 is about twice that.  This catches a window too short to reach the
   plateau: on times shorter than the vibrational period an overdamped vibration also has
   beta ~ 1.

Otherwise the verdict is "not diffusive", D is NaN (null in summary.json), and the numbers
behind the verdict (beta, MSD at both ends of the window, b) are kept.  A short run of a slow
diffuser is "not diffusive" too: its D cannot be told from a vibration within that run.

**Uncertainty of D.**  MSD values at neighbouring lags share almost all their displacements, so
the least-squares error of the slope is far too small.  The error here is the standard error over
``n_segments`` independent time segments of the stage, each with its own MSD fitted over the same
lags.  It is honest and a little conservative: D of independent random walks scatters by ~0.8 of
it (the segments' long lags have fewer origins than the whole run's; tests/unit/test_analysis.py),
where the least-squares error is ~30 times too small.  It measures how well the
slope is reproduced, not whether it is a D: every segment of a vibrating sublattice reproduces
the same small slope (Se in Cu2Se at 600 K got 0.061 ± 0.0021 Å^2/ps that way), which is why the
verdict above comes first.

**kinisi** (kinisi.readthedocs.io) models the covariance of the MSD and samples D by Bayesian
regression, a better error bar with few atoms.  Not used: it pulls scipp, dynesty, emcee,
statsmodels and scikit-learn, reads trajectories through its own parsers, and does not decide
whether an MSD is diffusive either (the start of the fit is the user's choice).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sus2md.errors import UsageError
from sus2md.units import KB_EV, NM_TO_ANGSTROM

#: 1 Å^2/ps = 1e-20 m^2 / 1e-12 s = 1e-4 cm^2/s (exact, SI prefixes)
A2_PER_PS_TO_CM2_PER_S = 1e-4
#: atoms per FFT batch, to bound memory (T x batch x 3 complex numbers)
_BATCH_VALUES = 20_000_000


def msd_fft(x: np.ndarray) -> np.ndarray:
    """MSD per lag, averaged over atoms: ``x`` (T, N, 3) unwrapped positions -> (T,) same unit^2."""
    x = np.asarray(x, dtype=float)
    n_t = x.shape[0]
    origins = (n_t - np.arange(n_t)).astype(float)
    total = np.zeros(n_t)
    batch = max(1, _BATCH_VALUES // (6 * n_t))
    for start in range(0, x.shape[1], batch):
        xb = x[:, start : start + batch]
        f = np.fft.rfft(xb, n=2 * n_t, axis=0)
        s2 = np.fft.irfft(f * np.conj(f), n=2 * n_t, axis=0)[:n_t].sum(axis=2)  # (T, n)
        d = np.sum(xb**2, axis=2)                                                # (T, n)
        c = np.vstack([np.zeros((1, d.shape[1])), np.cumsum(d, axis=0)])        # c[k] = sum_{j<k} d[j]
        m = np.arange(n_t)
        s1 = c[n_t] - c[m] + c[n_t - m]                                          # sum of both end-trimmed sums
        total += np.sum(s1 - 2.0 * s2, axis=1)
    return total / origins / x.shape[1]


def _frame_interval_ps(time_ps: np.ndarray) -> float:
    dt = np.diff(np.asarray(time_ps, dtype=float))
    if len(dt) == 0 or dt[0] <= 0 or not np.allclose(dt, dt[0], rtol=1e-3, atol=1e-9):
        raise UsageError("MSD needs frames evenly spaced in time; compute it for one stage at a time "
                         f"(frame intervals range {dt.min() if len(dt) else 0:g}..{dt.max() if len(dt) else 0:g} ps)")
    return float(dt[0])


def compute_msd(traj, atom_indices: np.ndarray | None = None, max_lag_frames: int | None = None,
                remove_com_drift: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """MSD of ``atom_indices`` (default all) over all time origins -> (lag_ps, msd_A2), each (L,).

    ``traj.time`` (ps) must be evenly spaced; coordinates must be unwrapped.  L = max_lag_frames + 1
    (default: every lag up to T - 1).  With ``remove_com_drift`` the mass-weighted centre of
    mass of *all* atoms is subtracted from every frame first.
    """
    dt = _frame_interval_ps(traj.time)
    xyz = traj.xyz.astype(float) * NM_TO_ANGSTROM
    if remove_com_drift:
        masses = np.array([a.element.mass for a in traj.topology.atoms])
        xyz = xyz - np.einsum("tia,i->ta", xyz, masses / masses.sum())[:, None, :]
    if atom_indices is not None:
        xyz = xyz[:, np.asarray(atom_indices, dtype=int)]
    msd = msd_fft(xyz)
    if max_lag_frames is not None:
        msd = msd[: max_lag_frames + 1]
    return np.arange(len(msd)) * dt, msd


def _window(lag_ps: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    lo, hi = window[0] * lag_ps[-1], window[1] * lag_ps[-1]
    return (lag_ps >= lo) & (lag_ps <= hi)


def fit_line(lag_ps: np.ndarray, msd_A2: np.ndarray, window: tuple[float, float] = (0.2, 0.8)
             ) -> tuple[float, float]:
    """(slope Å^2/ps, intercept Å^2) of a least-squares line MSD = slope t + b over ``window`` x max lag."""
    sel = _window(lag_ps, window)
    if sel.sum() < 2:
        return float("nan"), float("nan")
    slope, intercept = np.polyfit(lag_ps[sel], msd_A2[sel], 1)
    return float(slope), float(intercept)


def fit_slope(lag_ps: np.ndarray, msd_A2: np.ndarray, window: tuple[float, float] = (0.2, 0.8)) -> float:
    """D (Å^2/ps) = slope/6 of a least-squares line through MSD over ``window`` x max lag."""
    return fit_line(lag_ps, msd_A2, window)[0] / 6.0


#: Fickian range of the log-log slope beta (module docstring, criterion 1)
LOG_SLOPE_RANGE = (0.8, 1.2)
#: the MSD at the end of the fit window must reach this (Å^2; criterion 2)
MIN_MSD_A2 = 1.0


@dataclass(frozen=True)
class Verdict:
    """Whether an MSD curve is diffusive over a fit window, and the numbers that decided it."""

    diffusive: bool
    log_slope: float            #: beta = d ln MSD / d ln t over the window
    msd_start_A2: float         #: MSD at the first lag of the window
    msd_end_A2: float           #: MSD at the last lag of the window
    intercept_A2: float         #: b of the line MSD = 6 D t + b
    reason: str                 #: "" when diffusive, else the failed criteria


def diffusive_verdict(lag_ps: np.ndarray, msd_A2: np.ndarray, window: tuple[float, float] = (0.2, 0.8)) -> Verdict:
    """Apply the two criteria of the module docstring to one MSD curve (``lag_ps``, ``msd_A2``, each (L,))."""
    sel = _window(lag_ps, window)
    if sel.sum() < 2:
        return Verdict(False, np.nan, np.nan, np.nan, np.nan, f"fewer than 2 lags in the fit window ({int(sel.sum())})")
    t, m = lag_ps[sel], msd_A2[sel]
    beta = float(np.polyfit(np.log(t), np.log(m), 1)[0]) if np.all(m > 0) and t[0] > 0 else np.nan
    _, b = fit_line(lag_ps, msd_A2, window)
    failed = []
    if not LOG_SLOPE_RANGE[0] <= beta <= LOG_SLOPE_RANGE[1]:
        failed.append(f"log-log slope {beta:.2f} outside [{LOG_SLOPE_RANGE[0]:g}, {LOG_SLOPE_RANGE[1]:g}]")
    if not m[-1] >= MIN_MSD_A2:
        failed.append(f"MSD at window end {m[-1]:.3g} Å² < {MIN_MSD_A2:g} Å² (vibration-sized)")
    return Verdict(not failed, beta, float(m[0]), float(m[-1]), b, "; ".join(failed))


@dataclass(frozen=True)
class Diffusion:
    D_A2_ps: float              #: NaN unless ``diffusive``
    D_err_A2_ps: float          #: standard error from n_segments independent time segments; NaN unless ``diffusive``
    intercept_A2: float         #: b of the fitted line MSD = 6 D t + b (drawn in the plots)
    diffusive: bool
    log_slope: float
    msd_start_A2: float
    msd_end_A2: float
    reason: str                 #: why not diffusive ("" when diffusive)
    window_ps: tuple[float, float]
    max_lag_frames: int
    n_segments: int
    n_atoms: int

    @property
    def D_cm2_s(self) -> float:
        return self.D_A2_ps * A2_PER_PS_TO_CM2_PER_S

    @property
    def D_err_cm2_s(self) -> float:
        return self.D_err_A2_ps * A2_PER_PS_TO_CM2_PER_S


def diffusion_coefficient(traj, atom_indices: np.ndarray, window: tuple[float, float] = (0.2, 0.8),
                          n_segments: int = 5, max_lag_frames: int | None = None,
                          remove_com_drift: bool = True) -> Diffusion:
    """D (Å^2/ps) from the all-origins MSD of the whole trajectory, fitted over ``window``.

    The window is a fraction of the max lag, which defaults to the length of one of
    ``n_segments`` equal time segments (T // n_segments - 1 frames): long lags have few
    independent origins and would make D noisy.  D is NaN unless :func:`diffusive_verdict` says
    the MSD is diffusive over the window.  Uncertainty: each segment gets its own MSD and a
    fit over the same lag window; the error is std(D_k, ddof=1) / sqrt(n_segments), about 1.2x
    the actual scatter of the whole-trajectory estimate (module docstring).  It is NaN when a
    segment is shorter than the max lag or than 10 frames.
    """
    seg_len = traj.n_frames // max(n_segments, 1)
    if max_lag_frames is None:
        max_lag_frames = seg_len - 1 if n_segments >= 2 and seg_len >= 10 else traj.n_frames - 1
    lag, msd = compute_msd(traj, atom_indices, max_lag_frames, remove_com_drift)
    slope, _ = fit_line(lag, msd, window)
    verdict = diffusive_verdict(lag, msd, window)
    err = float("nan")
    if verdict.diffusive and n_segments >= 2 and seg_len >= 10 and seg_len - 1 >= max_lag_frames:
        ds = [fit_slope(*compute_msd(traj[k * seg_len : (k + 1) * seg_len], atom_indices, max_lag_frames,
                                     remove_com_drift), window) for k in range(n_segments)]
        err = float(np.std(ds, ddof=1) / np.sqrt(n_segments))
    span = (float(window[0] * lag[-1]), float(window[1] * lag[-1]))
    d = slope / 6.0 if verdict.diffusive else float("nan")
    return Diffusion(d, err, verdict.intercept_A2, verdict.diffusive, verdict.log_slope, verdict.msd_start_A2,
                     verdict.msd_end_A2, verdict.reason, span, int(len(lag) - 1), n_segments, len(atom_indices))


def diffusion_by_element(traj, **kwargs) -> dict[str, Diffusion]:
    """:func:`diffusion_coefficient` for the atoms of each element, keyed by symbol."""
    symbols = np.array([a.element.symbol for a in traj.topology.atoms])
    return {el: diffusion_coefficient(traj, np.flatnonzero(symbols == el), **kwargs)
            for el in dict.fromkeys(symbols.tolist())}


@dataclass(frozen=True)
class Arrhenius:
    Ea_eV: float
    Ea_err_eV: float
    D0: float          #: same unit as the D values fitted
    D0_err: float
    n_points: int


def fit_arrhenius(temperature_K: np.ndarray, D: np.ndarray, D_err: np.ndarray | None = None) -> Arrhenius:
    """Fit D(T) = D0 exp(-Ea / kB T) by (weighted) least squares on ln D against 1/(kB T).

    With ``D_err`` the weights are (D / D_err)^2 and the parameter covariance is scaled by
    max(1, reduced chi^2) (errors never smaller than the scatter says); without, the covariance
    comes from the residuals (needs >= 3 points, else errors are NaN).  Only D > 0 is used.
    """
    t, d = np.asarray(temperature_K, dtype=float), np.asarray(D, dtype=float)
    ok = (d > 0) & np.isfinite(d) & (t > 0)
    weighted = D_err is not None and np.all(np.asarray(D_err, dtype=float)[ok] > 0)
    if ok.sum() < 2:
        raise UsageError(f"an Arrhenius fit needs D > 0 at two or more temperatures, got {int(ok.sum())}")
    x, y = 1.0 / (KB_EV * t[ok]), np.log(d[ok])
    sigma = np.asarray(D_err, dtype=float)[ok] / d[ok] if weighted else np.ones_like(y)
    a = np.column_stack([np.ones_like(x), -x]) / sigma[:, None]
    params, *_ = np.linalg.lstsq(a, y / sigma, rcond=None)
    dof = len(y) - 2
    chi2 = float(np.sum((a @ params - y / sigma) ** 2))
    scale = (max(1.0, chi2 / dof) if weighted else chi2 / dof) if dof > 0 else (1.0 if weighted else np.nan)
    cov = np.linalg.inv(a.T @ a) * scale
    d0 = float(np.exp(params[0]))
    return Arrhenius(float(params[1]), float(np.sqrt(cov[1, 1])), d0, d0 * float(np.sqrt(cov[0, 0])), len(y))
