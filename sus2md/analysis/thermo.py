"""Thermodynamic time series: equilibration detection, error bars, per-stage averages.

Statistical inefficiency (Chodera et al., JCTC 3, 26 (2007); the pymbar estimator)::

    g = 1 + 2 sum_{t=1}^{N-1} (1 - t/N) C(t),    C(t) = <dx(0) dx(t)> / <dx^2>

summed until C first drops to <= 0 (after ``mintime`` lags); N/g samples are effectively
independent.  Equilibration (Chodera, JCTC 12, 1799 (2016)): discard the first t0 samples, with
t0 maximising N_eff(t0) = (N - t0) / g(x[t0:]) -- the longest stretch of data that still looks
stationary.

Block averaging (Flyvbjerg & Petersen, JCP 91, 461 (1989)): average neighbouring pairs
repeatedly; the naive standard error of the block means grows with block size B until blocks are
longer than the correlation time, then plateaus at the true one.  The plateau is chosen by the
criterion of Lee, Needs & Drummond (PRB 84, 245117 (2011)): the smallest B with
B^3 > 2 N (SE_B / SE_1)^4, as pyblock does.

These estimators are pymbar's (``pymbar.timeseries``), rewritten in a few vectorised lines: g
agrees with pymbar 4 to round-off and t0 to a few samples (tests/unit/test_analysis_thermo.py);
importing pymbar would add a dependency that prints a banner to stdout.

**Is the mean an equilibrium average?**  Two checks per series, reported as ``flags``:

* *mostly discarded*: equilibration detection threw away more than ``MAX_DISCARD_FRACTION`` = 50 %
  of the stage.  The mean then describes only the tail, and the stage was too short or never
  equilibrated.
* *drifting*: a least-squares line x = a + s t through the samples used has a slope s that is
  significant at the level of a ``DRIFT_SIGMAS`` = 3 sigma normal test (p = 0.0027, two-sided),
  with the slope's error inflated by the statistical inefficiency g of the residuals and a
  Student-t quantile for their N/g - 2 degrees of freedom (a short, strongly correlated series
  has few independent samples and needs more than 3 sigma), and the trend over the span,
  s * span, is larger than the error bar of the mean.  When more than half the stage was
  discarded, the same test runs over the whole stage (a steady drift is what makes Chodera's t0
  keep only the last few samples), and the flag gives the change over the stage.
"""
from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats as spstats

from sus2md.analysis.rundir import THERMO_COLUMNS, Table, read_csv
from sus2md.units import EV_PER_A3_TO_GPA, KB_EV

QUANTITIES = ("temperature_K", "potential_energy_eV", "kinetic_energy_eV", "total_energy_eV",
              "volume_A3", "density_g_cm3", "pressure_bar")
UNITS = {"temperature_K": "K", "potential_energy_eV": "eV", "kinetic_energy_eV": "eV", "total_energy_eV": "eV",
         "volume_A3": "Å³", "density_g_cm3": "g/cm³", "pressure_bar": "bar"}
MAX_DISCARD_FRACTION = 0.5
DRIFT_SIGMAS = 3.0
#: fewer samples than this get no stationarity checks (a slope and a g need some data)
MIN_CHECK_SAMPLES = 10


def load_thermo(path: str | Path) -> Table:
    """thermo.csv as column arrays (``stage`` is str, everything else float64, empty -> NaN)."""
    return read_csv(path, THERMO_COLUMNS)


def autocorrelation(x: np.ndarray) -> np.ndarray:
    """Normalised autocorrelation C(t), t = 0..N-1, of a 1-D series over all time origins (FFT).

    Each lag is averaged over its N - t origins; a constant series gives C = [1, 0, 0, ...].
    """
    x = np.asarray(x, dtype=float) - np.mean(x)
    n = len(x)
    f = np.fft.rfft(x, n=2 * n)
    acov = np.fft.irfft(f * np.conj(f), n=2 * n)[:n] / (n - np.arange(n))
    if acov[0] <= 0:
        return np.eye(1, n).ravel()
    return acov / acov[0]


def statistical_inefficiency(x: np.ndarray, mintime: int = 3) -> float:
    """g >= 1 such that N/g samples of ``x`` (shape (N,)) are effectively uncorrelated."""
    n = len(x)
    if n < 2:
        return 1.0
    c = autocorrelation(x)[1:]
    t = np.arange(1, n)
    stop = np.flatnonzero((c <= 0) & (t > mintime))
    end = stop[0] if len(stop) else n - 1
    g = 1.0 + 2.0 * np.sum((1.0 - t[:end] / n) * c[:end])
    return max(float(g), 1.0)


@dataclass(frozen=True)
class Equilibration:
    t0: int        #: first equilibrated sample
    g: float       #: statistical inefficiency of x[t0:]
    n_eff: float   #: (N - t0) / g


def detect_equilibration(x: np.ndarray, n_candidates: int = 200) -> Equilibration:
    """Chodera's t0 maximising the effective sample count, over up to ``n_candidates`` origins."""
    x = np.asarray(x, dtype=float)
    n = len(x)
    if n < 4:
        return Equilibration(0, 1.0, float(n))
    candidates = np.unique(np.linspace(0, n - 3, min(n_candidates, n - 2)).astype(int))
    best = Equilibration(0, 1.0, -1.0)
    for t0 in candidates:
        g = statistical_inefficiency(x[t0:])
        n_eff = (n - t0) / g
        if n_eff > best.n_eff:
            best = Equilibration(int(t0), g, float(n_eff))
    return best


@dataclass(frozen=True)
class BlockAverage:
    mean: float
    sem: float          #: standard error of the mean at the chosen block size
    sem_error: float    #: uncertainty of ``sem`` itself, sem / sqrt(2 (n_blocks - 1))
    block_size: int
    n_blocks: int
    converged: bool     #: False when no block size met the plateau criterion (too little data)


def block_average(x: np.ndarray) -> BlockAverage:
    """Flyvbjerg-Petersen blocking of a 1-D series ``x`` (shape (N,), N >= 4)."""
    y = np.asarray(x, dtype=float)
    n = len(y)
    if n < 4:
        raise ValueError(f"block averaging needs at least 4 samples, got {n}")
    levels: list[tuple[int, int, float]] = []
    size = 1
    while len(y) >= 4:
        levels.append((size, len(y), float(np.std(y, ddof=1) / np.sqrt(len(y)))))
        y = 0.5 * (y[: len(y) // 2 * 2 : 2] + y[1 : len(y) // 2 * 2 : 2])
        size *= 2
    se0 = levels[0][2]
    chosen, converged = levels[-1], False
    for level in levels:
        if se0 == 0 or level[0] ** 3 > 2 * n * (level[2] / se0) ** 4:
            chosen, converged = level, True
            break
    size, n_blocks, sem = chosen
    return BlockAverage(float(np.mean(x)), sem, float(sem / np.sqrt(2 * (n_blocks - 1))), size, n_blocks, converged)


def mean_and_sem(x: np.ndarray, detect_equilibrium: bool = True) -> dict[str, float]:
    """Mean and standard error of a series, NaNs dropped, after discarding its equilibration.

    The error is the block-averaging plateau when blocking converges, else std * sqrt(g / N)
    from the statistical inefficiency (``method`` says which).  ``n`` samples were used of
    ``n_total``; ``t0`` were discarded.
    """
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return {"mean": np.nan, "sem": np.nan, "n": 0, "n_total": 0, "t0": 0, "n_eff": 0.0, "method": "none"}
    eq = detect_equilibration(x) if detect_equilibrium else Equilibration(0, statistical_inefficiency(x), 0)
    y = x[eq.t0:]
    g = statistical_inefficiency(y)
    out = {"mean": float(np.mean(y)), "n": len(y), "n_total": len(x), "t0": eq.t0, "n_eff": float(len(y) / g)}
    if len(y) >= 4 and (blocks := block_average(y)).converged:
        return {**out, "sem": blocks.sem, "method": "blocking"}
    sem = float(np.std(y, ddof=1) * np.sqrt(g / len(y))) if len(y) > 1 else np.nan
    return {**out, "sem": sem, "method": "statistical inefficiency"}


def bulk_modulus_from_volume(volume_A3: np.ndarray, temperature_K: float, blocks: int = 10) -> dict[str, float]:
    """Isothermal bulk modulus from NPT volume fluctuations, ``B = kT <V> / <dV^2>`` (GPa).

    Args:
        volume_A3: (N,) volumes of an equilibrated isotropic-NPT series, Å^3.
        temperature_K: the thermostat's temperature.
        blocks: consecutive blocks of the jackknife error (each should span many correlation times).

    Returns:
        ``{"B_GPa", "err_GPa", "n"}``: the estimate over the whole series and its delete-one-block
        jackknife standard error (NaN with fewer than 2 blocks' worth of samples).
    """
    v = np.asarray(volume_A3, dtype=float)
    v = v[np.isfinite(v)]
    kT = KB_EV * temperature_K

    def b(x: np.ndarray) -> float:
        var = np.var(x, ddof=1)
        return float(kT * np.mean(x) / var * EV_PER_A3_TO_GPA) if var > 0 else np.inf

    if len(v) < 2 * blocks:
        return {"B_GPa": b(v) if len(v) > 1 else np.nan, "err_GPa": np.nan, "n": len(v)}
    parts = np.array_split(v, blocks)
    loo = np.array([b(np.concatenate(parts[:k] + parts[k + 1:])) for k in range(blocks)])
    err = float(np.sqrt((blocks - 1) / blocks * np.sum((loo - loo.mean()) ** 2)))
    return {"B_GPa": b(v), "err_GPa": err, "n": len(v)}


@dataclass(frozen=True)
class Drift:
    slope: float       #: per unit of ``t``
    slope_err: float   #: standard error, inflated by sqrt(g) of the residuals
    change: float      #: slope * (t[-1] - t[0]): the trend over the span
    sigmas: float      #: |slope| / slope_err
    n_eff: float       #: N / g of the residuals

    @property
    def significant(self) -> bool:
        """|slope| beyond the two-sided Student-t quantile (n_eff - 2 dof) of a 3-sigma normal test."""
        p = 2.0 * spstats.norm.sf(DRIFT_SIGMAS)
        return bool(self.sigmas > spstats.t.isf(p / 2.0, max(self.n_eff - 2.0, 1.0)))


def linear_drift(t: np.ndarray, x: np.ndarray) -> Drift:
    """Least-squares trend of ``x`` against ``t`` (each (N,), N >= 3) with an error that counts
    correlated samples once per statistical inefficiency of the residuals."""
    t, x = np.asarray(t, dtype=float), np.asarray(x, dtype=float)
    slope, intercept = np.polyfit(t, x, 1)
    resid = x - (slope * t + intercept)
    g = statistical_inefficiency(resid)
    sxx = float(np.sum((t - t.mean()) ** 2))
    var = float(np.sum(resid**2) / (len(x) - 2)) * g
    err = float(np.sqrt(var / sxx)) if sxx > 0 else np.nan
    sigmas = abs(slope) / err if err > 0 else (np.inf if slope != 0 else 0.0)
    return Drift(float(slope), err, float(slope * (t[-1] - t[0])), float(sigmas), len(x) / g)


def stationarity_flags(t: np.ndarray, x: np.ndarray, result: dict, unit: str = "") -> list[str]:
    """The module docstring's checks on a series ``x`` sampled at ``t`` (each (N,)), given its
    :func:`mean_and_sem` ``result``: [] when the mean looks like an equilibrium average."""
    ok = np.isfinite(x)
    t, x = np.asarray(t, dtype=float)[ok], np.asarray(x, dtype=float)[ok]
    n, t0 = len(x), int(result["t0"])
    if n < MIN_CHECK_SAMPLES or np.ptp(x) <= 1e-9 * abs(result["mean"]):
        return []   # too short to judge, or constant up to round-off (an NVT volume)
    flags = []
    mostly_discarded = t0 / n > MAX_DISCARD_FRACTION
    if mostly_discarded:
        flags.append(f"equilibration discarded {t0} of {n} samples ({100 * t0 / n:.0f}%)")
    # a trend smaller than the error bar changes nothing
    floor = result["sem"] if np.isfinite(result["sem"]) else 0.0
    unit = f" {unit}" if unit else ""
    candidates = [(t0, f"over the {n - t0} samples used")] + ([(0, "over the stage")] if mostly_discarded else [])
    for start, where in candidates:
        if n - start < MIN_CHECK_SAMPLES:
            continue
        drift = linear_drift(t[start:], x[start:])
        if drift.significant and abs(drift.change) > floor:
            sigmas = f"{drift.sigmas:.0f}σ" if drift.sigmas < 1e3 else ">1000σ"
            flags.append(f"drifting: {drift.change:+.3g}{unit} {where} ({sigmas})")
            break
    return flags


def stage_averages(thermo: Table, quantities: tuple[str, ...] = QUANTITIES,
                   unchecked_stages: Collection[int] = ()) -> list[dict]:
    """Per stage (in order of appearance): time span, sample count and mean_and_sem per quantity,
    with :func:`stationarity_flags` as ``flags`` (empty for ``unchecked_stages``, e.g. ramps).

    Each stage's own equilibration is detected and discarded per quantity (``t0`` is in samples
    of that stage).  Quantities that are all-NaN in a stage (e.g. pressure) are omitted.
    """
    stage_index = thermo["stage_index"].astype(int)
    out = []
    for idx in dict.fromkeys(stage_index.tolist()):
        rows = stage_index == idx
        time = thermo["time_ps"][rows]
        entry = {"stage_index": idx, "stage": str(thermo["stage"][rows][0]), "n_samples": int(rows.sum()),
                 "time_ps": [float(time.min()), float(time.max())], "averages": {}}
        for q in quantities:
            values = thermo.get(q)
            if values is not None and np.isfinite(values[rows]).any():
                result = mean_and_sem(values[rows])
                flags = ([] if idx in unchecked_stages
                         else stationarity_flags(time, values[rows], result, UNITS.get(q, "")))
                entry["averages"][q] = {**result, "flags": flags}
        out.append(entry)
    return out
