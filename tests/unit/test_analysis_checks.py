"""Warnings of ``sus2md analyze``: stationarity of thermo series, NPT stages, barostat acceptance,
run status.  Synthetic series with a planted defect (a linear drift, a slow transient, a pressure
off target, a frozen box, rejected moves) must be flagged; the same series without it must not.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging

import numpy as np
import pytest

from sus2md.analysis import analyze_run
from sus2md.analysis.checks import barostat_acceptance, npt_checks, run_status_warning
from sus2md.analysis.thermo import (detect_equilibration, linear_drift, mean_and_sem, stage_averages,
                                    stationarity_flags, statistical_inefficiency)
from tests.unit.test_analysis import ar1, make_run


def flags_of(x: np.ndarray, unit: str = "eV") -> list[str]:
    t = np.arange(len(x)) * 0.1
    return stationarity_flags(t, x, mean_and_sem(x), unit)


# --- drift and equilibration ----------------------------------------------------------------------

def test_linear_drift_is_flagged_with_its_size_over_the_stage():
    """The reported case: total energy rising 6 eV over 200 samples kept only its last 5."""
    rng = np.random.default_rng(0)
    x = -1303.0 + np.linspace(0, 6, 200) + 0.02 * rng.normal(size=200)
    stats = mean_and_sem(x)
    assert stats["n"] < 10 and stats["n_total"] == 200          # Chodera keeps only the tail
    flags = flags_of(x)
    assert flags[0].startswith("equilibration discarded") and "of 200 samples" in flags[0]
    change = float(flags[1].split()[1])
    assert flags[1].startswith("drifting: +") and flags[1].split()[2:5] == ["eV", "over", "the"]
    assert change == pytest.approx(6.0, abs=0.1) and "over the stage" in flags[1]


def test_drift_within_the_used_samples_is_flagged():
    """A slow drift (0.8 K over the stage) under noise of std 1.15 K: equilibration keeps most
    samples, the trend test still finds it (flagged for seeds 0-7; 4-8 sigma) and names the
    samples used."""
    n = 4000
    x = ar1(n, 0.5, np.random.default_rng(0)) + np.linspace(0, 0.8, n)
    stats = mean_and_sem(x)
    assert stats["t0"] < n / 2
    flags = flags_of(x, "K")
    assert len(flags) == 1 and flags[0].startswith("drifting: +")
    assert f"K over the {n - stats['t0']} samples used" in flags[0]
    used = slice(stats["t0"], None)
    drift = linear_drift(np.arange(n)[used] * 0.1, x[used])
    assert drift.significant and abs(drift.change - 0.8 * (n - stats["t0"]) / n) < 3 * drift.slope_err * 0.1 * n


@pytest.mark.parametrize("phi, n", [(0.0, 200), (0.8, 600), (0.9, 2000)])
def test_stationary_series_get_no_flags(phi, n):
    x = 300.0 + ar1(n, phi, np.random.default_rng(2), 5.0)
    assert flags_of(x, "K") == []
    assert flags_of(np.full(n, 1728.0), "Å³") == []          # a constant volume (NVT) is no drift
    roundoff = 1252.6916898 + 1e-10 * np.cumsum(np.random.default_rng(3).normal(size=n))
    assert flags_of(roundoff, "Å³") == []                    # ... nor is its round-off


def test_slow_transient_discarding_most_of_the_stage_warns():
    rng = np.random.default_rng(3)
    n = 1000
    slow = ar1(n, 0.5, rng) + 20.0 * np.exp(-np.arange(n) / 250.0)   # still relaxing at the end
    fast = ar1(n, 0.5, rng) + 20.0 * np.exp(-np.arange(n) / 10.0)    # relaxed after ~5 % of the stage
    flags = flags_of(slow)
    assert any(f.startswith("equilibration discarded") for f in flags), flags
    assert flags_of(fast) == []
    assert mean_and_sem(fast)["t0"] < 0.2 * n


def test_stage_averages_carry_samples_used_and_flags_and_skip_ramps():
    n = 200
    rng = np.random.default_rng(4)
    thermo = {"stage_index": np.r_[np.zeros(n), np.ones(n)], "stage": np.array(["a"] * n + ["b"] * n),
              "time_ps": np.r_[np.arange(n), np.arange(n, 2 * n)] * 0.1,
              "temperature_K": np.r_[300 + ar1(n, 0.5, rng, 3.0), np.linspace(300, 600, n) + rng.normal(size=n)]}
    stages = stage_averages(thermo, ("temperature_K",))
    a, b = stages[0]["averages"]["temperature_K"], stages[1]["averages"]["temperature_K"]
    assert a["n_total"] == n and a["n"] == n - a["t0"] and a["flags"] == []
    assert any("drifting" in f for f in b["flags"])
    ramp = stage_averages(thermo, ("temperature_K",), unchecked_stages=[1])
    assert ramp[1]["averages"]["temperature_K"]["flags"] == []


def test_hand_written_estimators_agree_with_pymbar():
    with contextlib.redirect_stdout(io.StringIO()):            # pymbar prints a banner on import
        timeseries = pytest.importorskip("pymbar.timeseries")
    rng = np.random.default_rng(5)
    for phi, n in [(0.5, 500), (0.9, 2000), (0.99, 3000)]:
        x = ar1(n, phi, rng)
        assert statistical_inefficiency(x) == pytest.approx(timeseries.statistical_inefficiency(x), rel=1e-8)
    # equilibration: same t0 to a few samples (pymbar counts N_eff as (N - t0 + 1) / g)
    for seed in range(3):
        x = ar1(300, 0.5, np.random.default_rng(10 + seed)) + 20.0 * np.exp(-np.arange(300) / 15.0)
        ours = detect_equilibration(x)
        with contextlib.redirect_stdout(io.StringIO()):
            t0, g, _ = timeseries.detect_equilibration(x, fast=False)
        assert abs(ours.t0 - t0) <= 8, (ours.t0, t0)
        assert statistical_inefficiency(x[t0:]) == pytest.approx(g, rel=1e-5)


# --- NPT stages and barostat ----------------------------------------------------------------------

def npt_table(n: int = 200, *, pressure_mean: float = 1.0, volume_moves: bool = True, accepted_fraction: float = 0.4,
              kinds: tuple[str, ...] = ("volume",), frozen: bool = False) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(6)
    table = {"stage_index": np.ones(n), "time_ps": np.arange(n) * 0.1, "stage": np.array(["npt"] * n),
             "pressure_bar": pressure_mean + ar1(n, 0.5, rng, 800.0),
             "volume_A3": np.full(n, 1728.0) if frozen else 1728.0 + ar1(n, 0.9, rng, 2.0)}
    if volume_moves:
        attempted = np.arange(1, n + 1) * 4.0
        for kind in ("volume", "axis", "shear"):
            use = kind in kinds
            table[f"{kind}_moves_attempted"] = attempted if use else np.full(n, np.nan)
            table[f"{kind}_moves_accepted"] = np.floor(accepted_fraction * attempted) if use else np.full(n, np.nan)
    return table


def check(table: dict, target: float = 1.0, barostat: str = "isotropic") -> tuple[dict, list[str]]:
    stage = {"index": 1, "name": "npt", "type": "npt", "pressure_bar": target, "barostat": barostat}
    return npt_checks(stage, table, mean_and_sem(table["pressure_bar"]))


def test_healthy_npt_stage_has_no_warnings():
    info, warnings = check(npt_table())
    assert warnings == []
    assert abs(info["pressure_off_sigmas"]) < 3
    assert info["acceptance"] == {"volume": {"accepted": 320, "attempted": 800, "acceptance": 0.4}}


def test_pressure_off_target_warns():
    info, warnings = check(npt_table(pressure_mean=10641.0))
    assert info["pressure_off_sigmas"] > 3
    assert len(warnings) == 1 and "off the target 1 bar by" in warnings[0] and "standard errors" in warnings[0]
    # the same numbers against their own target are fine
    assert check(npt_table(pressure_mean=10641.0), target=10641.0)[1] == []


def test_frozen_box_warns():
    info, warnings = check(npt_table(frozen=True))
    assert info["volume_range_A3"] == [1728.0, 1728.0]
    assert warnings == ["npt: the box never moved (volume 1728 Å³ in all 200 rows) although the stage is NPT"]


@pytest.mark.parametrize("fraction, expect", [(0.0, "0 of 800 accepted (0.0% < 10%)"),
                                              (0.05, "40 of 800 accepted (5.0% < 10%)"), (0.2, None)])
def test_barostat_acceptance_from_the_last_row(fraction, expect):
    info, warnings = check(npt_table(accepted_fraction=fraction, kinds=("axis", "shear")), barostat="flexible")
    assert set(info["acceptance"]) == {"axis", "shear"}            # volume cells empty: not this barostat's moves
    assert info["acceptance"]["axis"]["attempted"] == 800
    if expect is None:
        assert warnings == []
    else:
        assert warnings == [f"npt: barostat axis moves: {expect}", f"npt: barostat shear moves: {expect}"]


def test_thermo_without_move_counts_has_no_acceptance():
    table = npt_table(volume_moves=False)
    assert barostat_acceptance(table, np.ones(200, bool)) is None
    info, warnings = check(table)
    assert info["acceptance"] is None and warnings == []


# --- run status and the report --------------------------------------------------------------------

@pytest.mark.parametrize("status, expect", [
    ("completed", None), ("interrupted", "run status is 'interrupted'"),
    ("failed: NaN in positions", "run status is 'failed: NaN in positions'"), ("running", "run status is 'running'"),
    (None, "records no status")])
def test_run_status_warning(status, expect):
    warning = run_status_warning({} if status is None else {"status": status})
    assert (warning is None) if expect is None else (expect in warning)


def test_npt_run_with_everything_wrong_reports_every_warning(tmp_path, caplog):
    n = 200
    t = np.arange(n + 1) * 0.05
    rng = np.random.default_rng(8)
    nan = np.full(n + 1, np.nan)
    thermo = {"total_energy_eV": -1303 + 6 * t / t[-1] + 0.02 * rng.normal(size=n + 1),
              "pressure_bar": 10641 + 1000 * rng.normal(size=n + 1),
              "volume_moves_accepted": np.r_[np.nan, np.zeros(n)],
              "volume_moves_attempted": np.r_[np.nan, np.arange(n) // 2 * 1.0],
              "axis_moves_accepted": nan, "axis_moves_attempted": nan,
              "shear_moves_accepted": nan, "shear_moves_attempted": nan}
    run = make_run(tmp_path, n_frames=n, stage={"type": "npt", "pressure_bar": 1.0}, thermo=thermo,
                   status="interrupted")
    with caplog.at_level(logging.WARNING, logger="sus2md.analysis.report"):
        summary = analyze_run(run, tmp_path / "out")
    warnings = summary["warnings"]
    expected = ["run status is 'interrupted'", "total energy (eV) drifting: +", "discarded", "off the target 1 bar",
                "the box never moved", "barostat volume moves: 0 of 99 accepted"]
    for text in expected:
        assert sum(text in w for w in warnings) == 1, (text, warnings)
    assert len(warnings) == len(expected)
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["warnings"] == warnings
    report = (tmp_path / "out" / "report.md").read_text()
    head = report[: report.index("## Thermodynamics")]
    assert "## Warnings" in head and all(f"- ⚠ {w}" in head for w in warnings)
    used = next(e for e in summary["thermo"] if e["stage"] == "stage1_npt")["averages"]["total_energy_eV"]
    assert used["n_total"] == 200 and used["n"] < 20
    assert f"| {used['n']} / 200 | equilibration discarded" in report
    logged = [r.getMessage() for r in caplog.records]
    assert len(logged) == len(warnings) and all(any(w in m for m in logged) for w in warnings)


def test_healthy_npt_run_without_move_columns_still_analyses(tmp_path):
    n = 200
    rng = np.random.default_rng(9)
    thermo = {"pressure_bar": 1.0 + ar1(n + 1, 0.5, rng, 500.0), "volume_A3": 1728.0 + ar1(n + 1, 0.9, rng, 2.0)}
    run = make_run(tmp_path, n_frames=n, stage={"type": "npt", "pressure_bar": 1.0}, thermo=thermo)
    summary = analyze_run(run, tmp_path / "out")
    assert summary["warnings"] == []
    npt = summary["npt"]["stage1_npt"]
    assert npt["acceptance"] is None and npt["target_pressure_bar"] == 1.0 and npt["barostat"] == "isotropic"
    assert "no move counts in thermo.csv" in (tmp_path / "out" / "report.md").read_text()
