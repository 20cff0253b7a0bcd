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
from sus2md.analysis.diffusion import compute_msd, diffusion_coefficient, fit_arrhenius, msd_fft
from sus2md.analysis.greenkubo import EV_PER_A_PS_K_TO_W_PER_M_K, green_kubo_kappa, kappa_plateau
from sus2md.analysis.rundir import load_run, read_csv
from sus2md.analysis.structure import compute_rdfs, first_peak, max_rdf_radius_A
from sus2md.analysis.thermo import block_average, detect_equilibration, mean_and_sem, statistical_inefficiency
from sus2md.errors import UsageError
from sus2md.protocol import validate_protocol
from sus2md.units import KB_EV

THERMO_HEADER = ("step,time_ps,stage_index,stage,potential_energy_eV,kinetic_energy_eV,total_energy_eV,"
                 "temperature_K,volume_A3,density_g_cm3,pressure_bar,atom_steps_per_s")


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


def make_run(root: Path, *, D_cu: float = 0.2, n_frames: int = 600, temperature_K: float = 300.0,
             seed: int = 0, n_cu: int = 64, heat_flux: bool = False) -> Path:
    """A run directory as the engine writes it: Cu random walk with known D on a fixed SC Se lattice.

    Stage 0 (minimize) has one frame; stage 1 (nvt) n_frames frames every 0.05 ps.
    """
    rng = np.random.default_rng(seed)
    run = root / f"run_T{temperature_K:g}_s{seed}"
    run.mkdir(parents=True)
    se = sc_lattice(4, 3.0)                          # 64 Se, a = 3 Å, box 12 Å
    dt_ps, box_A = 0.05, 12.0
    steps = rng.normal(scale=np.sqrt(2 * D_cu * dt_ps), size=(n_frames, n_cu, 3))
    steps[0] = 0
    cu = rng.uniform(0, box_A, size=(n_cu, 3)) + np.cumsum(steps, axis=0)
    xyz = np.concatenate([cu[:1], cu], axis=0)       # frame 0: the minimized structure
    xyz = np.concatenate([xyz, np.broadcast_to(se, (n_frames + 1, *se.shape))], axis=1)
    traj = md.Trajectory(xyz / 10.0, topology(n_cu, len(se)), unitcell_lengths=np.full((n_frames + 1, 3), box_A / 10),
                         unitcell_angles=np.full((n_frames + 1, 3), 90.0))
    traj[0].save_pdb(str(run / "topology.pdb"))
    traj.save_dcd(str(run / "trajectory.dcd"))
    protocol = validate_protocol({
        "structure": {"path": "cu2se.extxyz"}, "model": {"path": "m.mtp", "species": ["Cu", "Se"]}, "seed": seed,
        "stages": [{"type": "minimize"}, {"type": "nvt", "steps": n_frames * 50, "temperature_K": temperature_K,
                                          "trajectory_interval_steps": 50, "report_interval_steps": 50}]})
    (run / "protocol.yaml").write_text(yaml.safe_dump(protocol.resolved_dict(), sort_keys=False))
    time = np.arange(n_frames + 1) * dt_ps
    stage = np.r_[0, np.ones(n_frames, int)]
    names = np.array(["stage0_minimize", "stage1_nvt"])[stage]
    rows = [f"{i},{s},{names[i]},{i * 50},{time[i]:.4f}" for i, s in enumerate(stage)]
    (run / "frames.csv").write_text("frame,stage_index,stage,step,time_ps\n" + "\n".join(rows) + "\n")
    temps = temperature_K + ar1(n_frames + 1, 0.8, rng, 5.0)
    epot = -300 + 0.01 * temps
    rows = [f"{i * 50},{time[i]:.4f},{stage[i]},{names[i]},{epot[i]:.5f},{0.02 * temps[i]:.5f},"
            f"{epot[i] + 0.02 * temps[i]:.5f},{temps[i]:.3f},1728.0,5.9,,1e5" for i in range(n_frames + 1)]
    (run / "thermo.csv").write_text(THERMO_HEADER + "\n" + "\n".join(rows) + "\n")
    (run / "provenance.json").write_text(json.dumps({"sus2md": "test"}))
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
    assert abs(raw.D_A2_ps - 0.2) < 3 * raw.D_err_A2_ps and raw.D_err_A2_ps < 0.03
    corrected = diffusion_coefficient(traj, cu)
    expected = 0.2 * ((1 - f) ** 2 + (len(cu) - 1) * f**2)   # MSD of x_i - x_com for a random walk
    assert abs(corrected.D_A2_ps - expected) < 3 * corrected.D_err_A2_ps
    assert corrected.D_cm2_s == pytest.approx(corrected.D_A2_ps * 1e-4)
    assert abs(diffusion_coefficient(traj, se, remove_com_drift=False).D_A2_ps) < 1e-10  # FFT round-off
    d_se = diffusion_coefficient(traj, se).D_A2_ps
    # Se only moves with the COM of the Cu walkers: expected 0.2 N f^2 ~ 6e-4, from one walker (noisy)
    assert 0 < d_se < 0.01 * corrected.D_A2_ps


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
    assert d_cu["D_A2_ps"] == pytest.approx(0.2, rel=0.2)
    nvt = summary["thermo"][1]["averages"]
    assert nvt["temperature_K"]["mean"] == pytest.approx(300, abs=4 * nvt["temperature_K"]["sem"] + 0.5)
    assert "pressure_bar" not in nvt   # all empty
    assert summary["kappa"]["stage1_nvt"]["kappa_W_mK"] > 0


def test_analyze_run_default_output_is_inside_the_run(tmp_path):
    run = make_run(tmp_path, n_frames=30)
    analyze_run(run)
    assert (run / "analysis" / "report.md").is_file()


def test_analyze_runs_fits_arrhenius_across_temperatures(tmp_path):
    ea, d0 = 0.3, 50.0                                 # eV, Å^2/ps
    temps = [800.0, 1000.0, 1300.0]
    runs = [make_run(tmp_path / "runs", D_cu=d0 * np.exp(-ea / (KB_EV * t)), temperature_K=t, n_frames=400, seed=i)
            for i, t in enumerate(temps)]
    summary = analyze_runs(runs, tmp_path / "all")
    cu = summary["diffusion_vs_T"]["Cu"]
    assert cu["T_K"] == temps
    fit = cu["arrhenius"]
    assert abs(fit["Ea_eV"] - ea) < max(3 * fit["Ea_err_eV"], 0.03)
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
    lines[2] = lines[2].replace(",1e5", ",fast")
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
