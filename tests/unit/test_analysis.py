"""Analysis against synthetic data with known answers.

Every reference number here is analytic: a Gaussian random walk has MSD = 6 D t; an AR(1)
series x_t = phi x_{t-1} + eps has Var(mean) = Var(x) (1 + phi) / (1 - phi) / N for large N;
an exponentially correlated heat current has <J(0).J(t)> = 3 s^2 phi^t with a trapezoid integral
3 s^2 dt (1 / (1 - phi) - 1/2); a simple cubic lattice has its first neighbours at a.
"""
from __future__ import annotations

import json
from pathlib import Path

import mdtraj as md
import numpy as np
import pytest
import yaml
from scipy.signal import lfilter

from sus2md.analysis import analyze_run, analyze_runs
from sus2md.analysis.diffusion import (compute_msd, diffusion_coefficient, diffusive_verdict, fit_arrhenius, fit_line,
                                      fit_slope, msd_fft)
from sus2md.analysis.plots import msd_figure
from sus2md.analysis.greenkubo import EV_PER_A_PS_K_TO_W_PER_M_K, green_kubo_kappa, kappa_plateau
from sus2md.analysis.rundir import load_run, read_csv
from sus2md.analysis.structure import compute_rdfs, first_peak, max_rdf_radius_A
from sus2md.analysis.thermo import block_average, detect_equilibration, mean_and_sem, statistical_inefficiency
from sus2md.errors import UsageError
from sus2md.protocol import validate_protocol
from sus2md.units import KB_EV


def ar1(n: int, phi: float, rng: np.random.Generator, sigma_eps: float = 1.0, dims: tuple = ()) -> np.ndarray:
    """Stationary AR(1) series, shape (n, *dims)."""
    eps = rng.normal(scale=sigma_eps, size=(n, *dims))
    eps[0] /= np.sqrt(1 - phi**2)
    return lfilter([1.0], [1.0, -phi], eps, axis=0)


def topology(n_cu: int, n_se: int) -> md.Topology:
    top = md.Topology()
    chain = top.add_chain()
    for symbol, n in (("Cu", n_cu), ("Se", n_se)):
        for _ in range(n):
            res = top.add_residue(symbol.upper(), chain)
            top.add_atom(symbol, md.element.get_by_symbol(symbol), res)
    return top


def sc_lattice(n: int, a_A: float) -> np.ndarray:
    g = np.arange(n) * a_A
    return np.array(np.meshgrid(g, g, g, indexing="ij")).reshape(3, -1).T


def ou_positions(n_frames: int, n_atoms: int, plateau_A2: float, tau_ps: float, dt_ps: float,
                 rng: np.random.Generator) -> np.ndarray:
    """Atoms vibrating about fixed random sites (Ornstein-Uhlenbeck, relaxation time tau), shape
    (n_frames, n_atoms, 3) in Å: MSD(t) = plateau (1 - exp(-t / tau)), plateau = 6 var per coordinate."""
    sites = rng.uniform(0, 12.0, size=(n_atoms, 3))
    u = ar1(n_frames, np.exp(-dt_ps / tau_ps), rng, np.sqrt(plateau_A2 / 6 * (1 - np.exp(-2 * dt_ps / tau_ps))),
            (n_atoms, 3))
    return sites + u


def csv_cell(v) -> str:
    """A thermo.csv cell as the engine writes it: 12 significant digits, NaN -> empty."""
    v = v.item() if isinstance(v, np.generic) else v
    if isinstance(v, float):
        return "" if np.isnan(v) else f"{v:.12g}"
    return str(v)


def make_run(root: Path, *, D_cu: float = 0.2, n_frames: int = 600, temperature_K: float = 300.0,
             seed: int = 0, n_cu: int = 64, heat_flux: bool = False, cu_vibrates: bool = False,
             stage: dict | None = None, thermo: dict[str, np.ndarray] | None = None,
             status: str = "completed") -> Path:
    """A run directory as the engine writes it: Cu random walk with known D on a fixed SC Se lattice.

    Stage 0 (minimize) has one frame; stage 1 (nvt, or ``stage`` merged onto it) n_frames frames
    every 0.05 ps.  ``cu_vibrates``: Cu vibrates about fixed sites (plateau 0.35 Å^2) instead.
    ``thermo`` replaces or adds thermo.csv columns (arrays of n_frames + 1; NaN -> empty cell).
    """
    rng = np.random.default_rng(seed)
    run = root / f"run_T{temperature_K:g}_s{seed}"
    run.mkdir(parents=True)
    se = sc_lattice(4, 3.0)                          # 64 Se, a = 3 Å, box 12 Å
    dt_ps, box_A = 0.05, 12.0
    if cu_vibrates:
        cu = ou_positions(n_frames, n_cu, 0.35, 0.1, dt_ps, rng)
    else:
        steps = rng.normal(scale=np.sqrt(2 * D_cu * dt_ps), size=(n_frames, n_cu, 3))
        steps[0] = 0
        cu = rng.uniform(0, box_A, size=(n_cu, 3)) + np.cumsum(steps, axis=0)
    xyz = np.concatenate([cu[:1], cu], axis=0)       # frame 0: the minimized structure
    xyz = np.concatenate([xyz, np.broadcast_to(se, (n_frames + 1, *se.shape))], axis=1)
    traj = md.Trajectory(xyz / 10.0, topology(n_cu, len(se)), unitcell_lengths=np.full((n_frames + 1, 3), box_A / 10),
                         unitcell_angles=np.full((n_frames + 1, 3), 90.0))
    traj[0].save_pdb(str(run / "topology.pdb"))
    traj.save_dcd(str(run / "trajectory.dcd"))
    dynamics = {"type": "nvt", "steps": n_frames * 50, "temperature_K": temperature_K,
                "trajectory_interval_steps": 50, "report_interval_steps": 50, **(stage or {})}
    protocol = validate_protocol({
        "structure": {"path": "cu2se.extxyz"}, "model": {"path": "m.mtp", "species": ["Cu", "Se"]}, "seed": seed,
        "stages": [{"type": "minimize"}, dynamics]})
    (run / "protocol.yaml").write_text(yaml.safe_dump(protocol.resolved_dict(), sort_keys=False))
    time = np.arange(n_frames + 1) * dt_ps
    stage_index = np.r_[0, np.ones(n_frames, int)]
    names = np.array(["stage0_minimize", f"stage1_{dynamics['type']}"])[stage_index]
    rows = [f"{i},{s},{names[i]},{i * 50},{time[i]:.4f}" for i, s in enumerate(stage_index)]
    (run / "frames.csv").write_text("frame,stage_index,stage,step,time_ps\n" + "\n".join(rows) + "\n")
    temps = temperature_K + ar1(n_frames + 1, 0.8, rng, 5.0)
    epot = -300 + 0.01 * temps
    columns = {"step": np.arange(n_frames + 1) * 50, "time_ps": time, "stage_index": stage_index, "stage": names,
               "potential_energy_eV": epot, "kinetic_energy_eV": 0.02 * temps, "total_energy_eV": epot + 0.02 * temps,
               "temperature_K": temps, "volume_A3": np.full(n_frames + 1, 1728.0),
               "density_g_cm3": np.full(n_frames + 1, 5.9), "pressure_bar": np.full(n_frames + 1, np.nan),
               "atom_steps_per_s": np.full(n_frames + 1, 1e5), **(thermo or {})}
    rows = [",".join(csv_cell(col[i]) for col in columns.values()) for i in range(n_frames + 1)]
    (run / "thermo.csv").write_text(",".join(columns) + "\n" + "\n".join(rows) + "\n")
    (run / "provenance.json").write_text(json.dumps({"sus2md": "test", "status": status}))
    if heat_flux:
        J = ar1(4000, np.exp(-0.1), rng, 1.0, (3,))
        rows = [f"{k},{k * 0.001:.4f},1,{j[0]},{j[1]},{j[2]}" for k, j in enumerate(J)]
        (run / "heat_flux.csv").write_text("step,time_ps,stage_index,Jx,Jy,Jz\n" + "\n".join(rows) + "\n")
    return run


def msd_direct(x: np.ndarray) -> np.ndarray:
    """O(T^2) reference: MSD(m) over all origins, averaged over atoms; x (T, N, 3)."""
    n = len(x)
    return np.array([np.mean(np.sum((x[m:] - x[: n - m]) ** 2, axis=2)) for m in range(n)])


# --- MSD and diffusion ----------------------------------------------------------------------------

def test_fft_msd_equals_direct_msd():
    x = np.cumsum(np.random.default_rng(1).normal(size=(257, 5, 3)), axis=0) + 40.0
    np.testing.assert_allclose(msd_fft(x), msd_direct(x), rtol=1e-10, atol=1e-9)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("runs"), heat_flux=True)


def nvt_stage(run_dir: Path):
    run = load_run(run_dir)
    traj = run.load_trajectory()
    return traj[np.flatnonzero(run.frames["stage_index"] == 1)]


def test_diffusion_recovers_planted_D(run_dir):
    traj = nvt_stage(run_dir)
    cu = traj.topology.select("element Cu")
    se = traj.topology.select("element Se")
    m_cu, m_se = md.element.copper.mass, md.element.selenium.mass
    f = m_cu / (len(cu) * m_cu + len(se) * m_se)     # COM shift per unit Cu displacement
    raw = diffusion_coefficient(traj, cu, remove_com_drift=False)
    assert raw.diffusive and raw.reason == "" and 0.8 <= raw.log_slope <= 1.2
    assert abs(raw.D_A2_ps - 0.2) < 3 * raw.D_err_A2_ps and raw.D_err_A2_ps < 0.03
    corrected = diffusion_coefficient(traj, cu)
    expected = 0.2 * ((1 - f) ** 2 + (len(cu) - 1) * f**2)   # MSD of x_i - x_com for a random walk
    assert abs(corrected.D_A2_ps - expected) < 3 * corrected.D_err_A2_ps
    assert corrected.D_cm2_s == pytest.approx(corrected.D_A2_ps * 1e-4)
    still = diffusion_coefficient(traj, se, remove_com_drift=False)
    assert not still.diffusive and np.isnan(still.D_A2_ps) and np.isnan(still.D_cm2_s) and still.msd_end_A2 < 1e-10
    # Se only moves with the COM of the Cu walkers: no D, although the MSD has a slope
    # (expected slope/6 0.2 N f^2 ~ 6e-4, from one walker: noisy)
    se_fit = diffusion_coefficient(traj, se)
    assert not se_fit.diffusive and np.isnan(se_fit.D_A2_ps) and "Å²" in se_fit.reason
    assert 0 < fit_slope(*compute_msd(traj, se, se_fit.max_lag_frames)) < 0.01 * corrected.D_A2_ps


def vibrating_traj(n_frames: int = 600, plateau_A2: float = 0.35, seed: int = 7) -> md.Trajectory:
    """Cu atoms vibrating about fixed sites (Ornstein-Uhlenbeck, tau 0.1 ps), frames every 0.05 ps."""
    xyz = ou_positions(n_frames, 32, plateau_A2, 0.1, 0.05, np.random.default_rng(seed))
    traj = md.Trajectory(xyz / 10.0, topology(32, 0), unitcell_lengths=np.full((n_frames, 3), 1.2),
                         unitcell_angles=np.full((n_frames, 3), 90.0))
    traj.time = np.arange(n_frames) * 0.05
    return traj


def test_vibrating_atoms_are_not_diffusive():
    traj = vibrating_traj()
    d = diffusion_coefficient(traj, np.arange(32), remove_com_drift=False)
    assert not d.diffusive and np.isnan(d.D_A2_ps) and np.isnan(d.D_err_A2_ps)
    assert d.msd_end_A2 == pytest.approx(0.35, rel=0.2)       # the plateau, reported
    assert abs(d.log_slope) < 0.2 and "log-log slope" in d.reason and "< 1 Å²" in d.reason
    assert d.intercept_A2 == pytest.approx(0.35, rel=0.2)
    # what the old analysis reported: a small positive "D" with a tight error bar
    assert abs(fit_slope(*compute_msd(traj, np.arange(32), d.max_lag_frames, remove_com_drift=False))) < 0.01


def test_each_diffusion_criterion_can_reject_alone():
    lag = np.arange(200) * 0.05
    sub = diffusive_verdict(lag, 4.0 * np.sqrt(lag))           # large but sub-diffusive: beta = 0.5
    assert not sub.diffusive and sub.log_slope == pytest.approx(0.5) and "log-log slope" in sub.reason
    assert "MSD at window end" not in sub.reason
    small = diffusive_verdict(lag, 0.06 * lag)                  # beta = 1 but MSD(t_end) = 0.48 Å^2
    assert not small.diffusive and small.log_slope == pytest.approx(1.0)
    assert small.reason.startswith("MSD at window end") and "log-log" not in small.reason
    ok = diffusive_verdict(lag, 0.6 * lag + 0.3)                # D = 0.1 Å^2/ps, plateau 0.3 Å^2
    assert ok.diffusive and ok.reason == "" and ok.intercept_A2 == pytest.approx(0.3)
    assert ok.msd_end_A2 == pytest.approx(0.6 * 7.95 + 0.3)


def test_segment_error_of_D_matches_the_scatter_over_independent_runs():
    """The reported error (SEM over 5 segments) is honest, a little conservative: independent
    random walks scatter by ~0.8 of the rms reported error (0.59-0.94 in six sets of 60 walks,
    0.82 over all 360; the segments' long lags have fewer origins than the whole run's).  The
    least-squares error of the slope is ~30x too small."""
    ds, errs, ls_errs = [], [], []
    for seed in range(120):
        rng = np.random.default_rng(100 + seed)
        xyz = np.cumsum(rng.normal(scale=np.sqrt(2 * 0.1 * 0.05), size=(300, 8, 3)), axis=0)
        traj = md.Trajectory(xyz / 10.0, topology(8, 0), unitcell_lengths=np.full((300, 3), 5.0),
                             unitcell_angles=np.full((300, 3), 90.0))
        traj.time = np.arange(300) * 0.05
        d = diffusion_coefficient(traj, np.arange(8), remove_com_drift=False)
        assert d.diffusive
        ds.append(d.D_A2_ps)
        errs.append(d.D_err_A2_ps)
        if seed < 5:
            lag, msd = compute_msd(traj, np.arange(8), d.max_lag_frames, remove_com_drift=False)
            sel = (lag >= d.window_ps[0]) & (lag <= d.window_ps[1])
            ls_errs.append(np.sqrt(np.polyfit(lag[sel], msd[sel], 1, cov=True)[1][0, 0]) / 6)
    scatter, reported = np.std(ds, ddof=1), np.sqrt(np.mean(np.square(errs)))
    assert 0.5 < scatter / reported < 1.2, scatter / reported
    assert np.mean(ls_errs) < 0.2 * scatter
    assert abs(np.mean(ds) - 0.1) < 3 * scatter / np.sqrt(len(ds))


def test_msd_fit_line_lies_on_the_curve_over_its_window(run_dir):
    traj = nvt_stage(run_dir)
    cu = traj.topology.select("element Cu")
    d = diffusion_coefficient(traj, cu)
    lag, msd = compute_msd(traj, cu, d.max_lag_frames)
    sel = (lag >= d.window_ps[0]) & (lag <= d.window_ps[1])
    assert (6 * d.D_A2_ps, d.intercept_A2) == pytest.approx(fit_line(lag, msd))
    fig = msd_figure({"Cu": (lag, msd)}, {"Cu": {**vars(d)}}, "test")
    dashed = [ln for ln in fig.axes[0].lines if ln.get_linestyle() == "--"]
    assert len(dashed) == 1
    t, y = (np.asarray(a, float) for a in dashed[0].get_data())
    assert t.min() == pytest.approx(d.window_ps[0]) and t.max() == pytest.approx(d.window_ps[1])
    np.testing.assert_allclose(y, 6 * d.D_A2_ps * t + d.intercept_A2, rtol=1e-12)   # the fitted line itself
    on_curve = np.interp(t, lag[sel], msd[sel])
    assert np.all(np.abs(y - on_curve) < 0.05 * msd[sel].max())   # drawn line meets the curve at both ends
    resid = msd[sel] - (6 * d.D_A2_ps * lag[sel] + d.intercept_A2)
    assert abs(resid.mean()) < 1e-9 * msd[sel].max()               # least-squares line: zero mean residual
    # a non-diffusive element gets no line
    fig = msd_figure({"Cu": (lag, msd)}, {"Cu": {**vars(d), "diffusive": False, "D_A2_ps": None}}, "test")
    assert not [ln for ln in fig.axes[0].lines if ln.get_linestyle() == "--"]
    assert fig.axes[0].get_legend().get_texts()[0].get_text() == "Cu (not diffusive)"


def test_msd_needs_evenly_spaced_frames(run_dir):
    traj = load_run(run_dir).load_trajectory()
    traj.time = traj.time.copy()
    traj.time[5:] += 1.0
    with pytest.raises(UsageError, match="evenly spaced"):
        compute_msd(traj)


def test_arrhenius_recovers_planted_activation_energy():
    t = np.array([700.0, 900.0, 1100.0, 1300.0, 1500.0])
    d = 2e-3 * np.exp(-0.45 / (KB_EV * t))
    exact = fit_arrhenius(t, d)
    assert exact.Ea_eV == pytest.approx(0.45, rel=1e-9) and exact.D0 == pytest.approx(2e-3, rel=1e-9)
    rng = np.random.default_rng(4)
    noisy = d * (1 + 0.05 * rng.normal(size=len(t)))
    fit = fit_arrhenius(t, noisy, 0.05 * d)
    assert abs(fit.Ea_eV - 0.45) < 3 * fit.Ea_err_eV and 0.005 < fit.Ea_err_eV < 0.05
    with pytest.raises(UsageError, match="two or more temperatures"):
        fit_arrhenius(t[:1], d[:1])


# --- thermo statistics ----------------------------------------------------------------------------

def test_block_averaging_matches_ar1_standard_error():
    phi, n = 0.9, 2**17
    x = ar1(n, phi, np.random.default_rng(2))
    analytic = np.sqrt(1 / (1 - phi**2) * (1 + phi) / (1 - phi) / n)
    result = block_average(x)
    assert result.converged
    assert result.sem == pytest.approx(analytic, rel=0.15)
    assert abs(result.sem - analytic) < 3 * result.sem_error
    assert statistical_inefficiency(x) == pytest.approx((1 + phi) / (1 - phi), rel=0.15)


def test_equilibration_detection_finds_planted_transient():
    rng = np.random.default_rng(3)
    n, t_relax = 5000, 100
    x = ar1(n, 0.5, rng) + 20.0 * np.exp(-np.arange(n) / t_relax)
    eq = detect_equilibration(x)
    # the transient is 20 at t=0 and below the noise (std 1.15) after ~3.5 relaxation times
    assert t_relax < eq.t0 < 8 * t_relax
    stats = mean_and_sem(x)
    assert stats["t0"] == eq.t0 and abs(stats["mean"]) < 3 * stats["sem"]
    assert detect_equilibration(ar1(n, 0.5, rng)).t0 < 0.1 * n


# --- structure ------------------------------------------------------------------------------------

def test_rdf_of_simple_cubic_lattice_peaks_at_the_lattice_constant():
    a, n = 2.7, 6
    rng = np.random.default_rng(5)
    xyz = sc_lattice(n, a)[None] + rng.normal(scale=0.05, size=(10, n**3, 3))
    traj = md.Trajectory(xyz / 10, topology(0, n**3), unitcell_lengths=np.full((10, 3), n * a / 10),
                         unitcell_angles=np.full((10, 3), 90.0))
    assert max_rdf_radius_A(traj) == pytest.approx(min(n * a / 2, 10.0))
    r, rdfs = compute_rdfs(traj, bin_width_A=0.02)
    r_peak, g_peak = first_peak(r, rdfs["Se-Se"])
    assert r_peak == pytest.approx(a, abs=0.02) and g_peak > 5
    second = r > 1.2 * a
    assert first_peak(r[second], rdfs["Se-Se"][second])[0] == pytest.approx(a * np.sqrt(2), abs=0.03)


# --- Green-Kubo -----------------------------------------------------------------------------------

def test_green_kubo_constant_current_is_exact():
    J = np.tile([1.0, 2.0, 2.0], (100, 1))      # <J(0).J(t)> = 9 for every t
    t, kappa = green_kubo_kappa(J, 0.01, volume_A3=1000.0, temperature_K=300.0, max_lag_ps=0.5)
    expected = 9.0 * t / (3 * 1000.0 * KB_EV * 300.0**2) * EV_PER_A_PS_K_TO_W_PER_M_K
    np.testing.assert_allclose(kappa, expected, rtol=1e-12)
    assert EV_PER_A_PS_K_TO_W_PER_M_K == pytest.approx(1602.18, rel=1e-5)


def test_green_kubo_exponential_correlation_gives_the_analytic_integral():
    dt, tau, s = 0.002, 0.02, 2.0
    phi = np.exp(-dt / tau)
    J = ar1(2**17, phi, np.random.default_rng(6), s * np.sqrt(1 - phi**2), (3,))
    t, kappa = green_kubo_kappa(J, dt, volume_A3=1000.0, temperature_K=300.0, max_lag_ps=10 * tau)
    integral = 3 * s**2 * dt * (1 / (1 - phi) - 0.5)
    expected = integral / (3 * 1000.0 * KB_EV * 300.0**2) * EV_PER_A_PS_K_TO_W_PER_M_K
    assert kappa_plateau(t, kappa) == pytest.approx(expected, rel=0.08)


# --- run directory and reports --------------------------------------------------------------------

def test_analyze_run_writes_report(run_dir, tmp_path):
    summary = analyze_run(run_dir, tmp_path / "out")
    out = tmp_path / "out"
    for name in ["summary.json", "report.md", "thermo_temperature_K.png", "rdf_stage1_nvt.png", "msd_stage1_nvt.png",
                 "kappa_stage1_nvt.png"]:
        assert (out / name).is_file(), name
    assert json.loads((out / "summary.json").read_text()) == summary
    report = (out / "report.md").read_text()
    assert all(f"]({p})" in report for p in summary["plots"])
    assert "## Diffusion" in report and "Green–Kubo" in report and "±" in report
    assert summary["composition"] == {"Cu": 64, "Se": 64}
    assert summary["rdf"]["stage1_nvt"]["Se-Se"]["r_A"] == pytest.approx(3.0, abs=0.03)
    assert summary["lattice"]["stage1_nvt"]["a_A"]["mean"] == pytest.approx(12.0, rel=1e-5)
    d_cu = summary["diffusion"]["stage1_nvt"]["elements"]["Cu"]
    assert d_cu["D_A2_ps"] == pytest.approx(0.2, rel=0.2) and d_cu["diffusive"] is True
    d_se = summary["diffusion"]["stage1_nvt"]["elements"]["Se"]    # a fixed lattice (moves with the COM only)
    assert d_se["diffusive"] is False and d_se["D_A2_ps"] is None and d_se["D_cm2_s"] is None
    assert d_se["msd_end_A2"] < 0.01 and d_se["log_slope"] is not None and "MSD at window end" in d_se["reason"]
    assert "| Se | 64 | not diffusive | not diffusive |" in report
    assert summary["warnings"] == [] and summary["status"] == "completed"
    assert report.index("## Warnings") < report.index("## Thermodynamics") and "None: the run completed" in report
    nvt = summary["thermo"][1]["averages"]
    assert nvt["temperature_K"]["mean"] == pytest.approx(300, abs=4 * nvt["temperature_K"]["sem"] + 0.5)
    assert "pressure_bar" not in nvt   # all empty
    assert summary["kappa"]["stage1_nvt"]["kappa_W_mK"] > 0


def test_analyze_run_default_output_is_inside_the_run(tmp_path):
    run = make_run(tmp_path, n_frames=30)
    analyze_run(run)
    assert (run / "analysis" / "report.md").is_file()


def test_analyze_runs_fits_arrhenius_over_diffusive_runs_only(tmp_path):
    ea, d0 = 0.3, 50.0                                 # eV, Å^2/ps
    temps = [800.0, 1000.0, 1300.0]
    runs = [make_run(tmp_path / "runs", D_cu=d0 * np.exp(-ea / (KB_EV * t)), temperature_K=t, n_frames=400, seed=i)
            for i, t in enumerate(temps)]
    # a cold run where Cu only vibrates: its slope/6 (~0) would drag Ea far off if it were fitted
    runs.append(make_run(tmp_path / "runs", cu_vibrates=True, temperature_K=600.0, n_frames=400, seed=9))
    summary = analyze_runs(runs, tmp_path / "all")
    cu = summary["diffusion_vs_T"]["Cu"]
    assert cu["T_K"] == temps + [600.0] and cu["diffusive"] == [True, True, True, False]
    assert cu["D_cm2_s"][3] is None and cu["arrhenius_skipped"] is None
    fit = cu["arrhenius"]
    assert fit["n_points"] == 3 and fit["T_K"] == temps
    assert abs(fit["Ea_eV"] - ea) < max(3 * fit["Ea_err_eV"], 0.03)
    assert "Cu: Arrhenius fit over 3 of 4 runs; not diffusive at 600 K" in summary["warnings"]
    se = summary["diffusion_vs_T"]["Se"]                # the fixed Se lattice: never diffusive, no fit
    assert se["arrhenius"] is None and se["D_cm2_s"] == [None] * 4
    assert se["arrhenius_skipped"].startswith("diffusive in 0 of 4 runs")
    report = (tmp_path / "all" / "report.md").read_text()
    assert "No Arrhenius fit: diffusive in 0 of 4 runs" in report and "| 600.0 | not diffusive |" in report
    assert (tmp_path / "all" / "arrhenius.png").is_file() and (tmp_path / "all" / "report.md").is_file()
    assert (tmp_path / "all" / "run00_run_T800_s0" / "report.md").is_file()


@pytest.mark.parametrize("victim, pattern", [
    ("thermo.csv", r"thermo\.csv: file not found"),
    ("frames.csv", r"frames\.csv: file not found"),
    ("protocol.yaml", r"protocol\.yaml: protocol file not found"),
    ("provenance.json", r"provenance\.json: file not found"),
    ("topology.pdb", r"topology\.pdb: file not found"),
    ("trajectory.dcd", r"trajectory\.dcd: file not found"),
])
def test_missing_files_are_named(tmp_path, victim, pattern):
    run = make_run(tmp_path, n_frames=30)
    (run / victim).unlink()
    with pytest.raises(UsageError, match=pattern):
        analyze_run(run)


def test_corrupt_files_are_named(tmp_path):
    run = make_run(tmp_path, n_frames=30)
    (run / "trajectory.dcd").write_bytes(b"not a dcd file at all" * 10)
    with pytest.raises(UsageError, match=r"trajectory\.dcd: cannot read the trajectory"):
        analyze_run(run)
    lines = (run / "thermo.csv").read_text().splitlines()
    lines[2] = lines[2].replace(",100000", ",fast")
    (run / "thermo.csv").write_text("\n".join(lines))
    with pytest.raises(UsageError, match=r"thermo\.csv:3: column atom_steps_per_s: not a number: 'fast'"):
        load_run(run)
    (run / "thermo.csv").write_text("step,time_ps\n1,2\n")
    with pytest.raises(UsageError, match=r"thermo\.csv: missing column\(s\) stage_index"):
        read_csv(run / "thermo.csv", ("step", "stage_index"))


def test_frame_count_mismatch_is_reported(tmp_path):
    run = make_run(tmp_path, n_frames=30)
    lines = (run / "frames.csv").read_text().splitlines()
    (run / "frames.csv").write_text("\n".join(lines[:-3]) + "\n")
    with pytest.raises(UsageError, match=r"has 31 frames but frames\.csv lists 28"):
        load_run(run).load_trajectory()


def test_analysis_and_protocol_never_import_openmm():
    import subprocess
    import sys

    code = ("import sys, sus2md.protocol, sus2md.analysis.report; "
            "bad = [m for m in ('openmm', 'openmmtorch') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
