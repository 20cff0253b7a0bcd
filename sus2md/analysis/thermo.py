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
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sus2md.analysis.rundir import THERMO_COLUMNS, Table, read_csv

QUANTITIES = ("temperature_K", "potential_energy_eV", "kinetic_energy_eV", "total_energy_eV",
              "volume_A3", "density_g_cm3", "pressure_bar")


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
    from the statistical inefficiency (``method`` says which).
    """
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return {"mean": np.nan, "sem": np.nan, "n": 0, "t0": 0, "n_eff": 0.0, "method": "none"}
    eq = detect_equilibration(x) if detect_equilibrium else Equilibration(0, statistical_inefficiency(x), 0)
    y = x[eq.t0:]
    g = statistical_inefficiency(y)
    out = {"mean": float(np.mean(y)), "n": len(y), "t0": eq.t0, "n_eff": float(len(y) / g)}
    if len(y) >= 4 and (blocks := block_average(y)).converged:
        return {**out, "sem": blocks.sem, "method": "blocking"}
    sem = float(np.std(y, ddof=1) * np.sqrt(g / len(y))) if len(y) > 1 else np.nan
    return {**out, "sem": sem, "method": "statistical inefficiency"}


def stage_averages(thermo: Table, quantities: tuple[str, ...] = QUANTITIES) -> list[dict]:
    """Per stage (in order of appearance): time span, sample count and mean_and_sem per quantity.

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
                entry["averages"][q] = mean_and_sem(values[rows])
        out.append(entry)
    return out

