"""``sus2md run --resume`` after ``kill -9``, SIGTERM and SIGINT: real subprocesses (Reference
platform, float64, fixed seed) compared with an uninterrupted run.

What is exact, and why:

* NVT (Langevin) + NVE: frames.csv and the thermo steps are identical, and the final positions
  agree to 1e-10 nm.  OpenMM's Reference checkpoint restores positions, velocities, box and the
  integrator's random-number state bit for bit; Verlet continues bit-identically, but OpenMM's
  Reference LangevinMiddle step after ``loadCheckpoint`` differs from the uninterrupted one by about
  one ulp (~1e-16 nm; measured, same noise sequence), which the dynamics amplifies chaotically;
  over the ~100 steps here it stays far below 1e-10 nm, so positions and energies are compared
  with tolerances, not for bit equality.
* NPT: OpenMM does not checkpoint the Monte Carlo barostat's own random-number generator or its
  adapted volume-move size, so a run resumed inside an NPT stage is a statistically equivalent
  continuation, not the same trajectory.  What stays exact there is the bookkeeping: the same
  frames and thermo steps, none lost, none duplicated.
"""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.integration.test_run import cu2se_cell, write_protocol

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

ROOT = Path(__file__).resolve().parents[2]
DYN = {"timestep_fs": 2.0, "report_interval_steps": 5, "trajectory_interval_steps": 10}
NVT_NVE = [
    {"type": "nvt", "name": "heat", "steps": 80, "temperature_ramp_K": [200, 400], **DYN},
    {"type": "nve", "name": "nve", "steps": 60, **DYN},
]
NPT = [
    {"type": "nvt", "name": "heat", "steps": 40, "temperature_K": 400, **DYN},
    {"type": "npt", "name": "press", "steps": 60, "temperature_K": 400, "pressure_bar": 1000.0,
     "barostat_interval_steps": 5, **DYN},
]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def start(protocol: Path, out: Path, resume: bool = False) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "sus2md", "run", str(protocol), "--out", str(out), "--no-progress"]
    return subprocess.Popen(cmd + (["--resume"] if resume else []), env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(protocol: Path, out: Path, resume: bool = False) -> subprocess.CompletedProcess:
    p = start(protocol, out, resume)
    stdout, stderr = p.communicate(timeout=300)
    assert p.returncode == 0, stderr[-2000:]
    return subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr)


def checkpointed_step(out: Path) -> int:
    try:
        return json.loads((out / "checkpoint.json").read_text())["global_step"]
    except (OSError, ValueError, KeyError):
        return -1


def stop_after(protocol: Path, out: Path, step: int, sig: int = signal.SIGKILL, resume: bool = False) -> int:
    """Start a run, send ``sig`` once a checkpoint at >= ``step`` exists, return the exit code."""
    p = start(protocol, out, resume)
    deadline = time.time() + 240
    while checkpointed_step(out) < step:
        assert p.poll() is None, f"the run ended before step {step}: {p.communicate()[1][-2000:]}"
        assert time.time() < deadline, "no checkpoint in time"
        time.sleep(0.005)
    p.send_signal(sig)
    p.communicate(timeout=120)
    return p.returncode


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def final_state(out: Path) -> tuple[np.ndarray, np.ndarray]:
    import openmm

    st = openmm.XmlSerializer.deserialize((out / "final_state.xml").read_text())
    return (np.asarray(st.getPositions(asNumpy=True)._value), np.asarray(st.getVelocities(asNumpy=True)._value))


def assert_same_bookkeeping(ref: Path, run: Path) -> None:
    import mdtraj

    assert rows(ref / "frames.csv") == rows(run / "frames.csv")
    steps = [int(r["step"]) for r in rows(run / "thermo.csv")]
    assert steps == [int(r["step"]) for r in rows(ref / "thermo.csv")]
    assert len(steps) == len(set(steps)), "duplicate thermo rows"
    t_ref = mdtraj.load(str(ref / "trajectory.dcd"), top=str(ref / "topology.pdb"))
    t_run = mdtraj.load(str(run / "trajectory.dcd"), top=str(run / "topology.pdb"))
    assert t_run.n_frames == t_ref.n_frames == len(rows(run / "frames.csv"))
    prov = json.loads((run / "provenance.json").read_text())
    assert prov["status"] == "completed" and len(prov["sessions"]) >= 2


def assert_same_trajectory(ref: Path, run: Path) -> None:
    import mdtraj

    assert_same_bookkeeping(ref, run)
    t_ref = mdtraj.load(str(ref / "trajectory.dcd"), top=str(ref / "topology.pdb"))
    t_run = mdtraj.load(str(run / "trajectory.dcd"), top=str(run / "topology.pdb"))
    np.testing.assert_allclose(t_run.xyz, t_ref.xyz, atol=1e-6)  # float32 in the DCD
    cols = ("potential_energy_eV", "kinetic_energy_eV", "temperature_K", "volume_A3", "pressure_bar")
    for a, b in zip(rows(ref / "thermo.csv"), rows(run / "thermo.csv")):
        for c in cols:
            assert float(b[c]) == pytest.approx(float(a[c]), rel=1e-8, abs=1e-8), (a["step"], c)
    (x_ref, v_ref), (x_run, v_run) = final_state(ref), final_state(run)
    np.testing.assert_allclose(x_run, x_ref, rtol=0, atol=1e-10)
    np.testing.assert_allclose(v_run, v_ref, rtol=0, atol=1e-8)


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("resume")
    protocol = write_protocol(tmp, NVT_NVE, output={"checkpoint_interval_steps": 10}, seed=11)
    finish(protocol, tmp / "reference")
    return tmp, protocol


@pytest.mark.parametrize("kill_at", [[10], [100], [30, 110]], ids=["first-checkpoint", "mid-nve", "twice"])
def test_kill9_then_resume_matches_an_uninterrupted_run(case, kill_at):
    tmp, protocol = case
    out = tmp / f"killed_{'_'.join(map(str, kill_at))}"
    for k, step in enumerate(kill_at):
        assert stop_after(protocol, out, step, resume=k > 0) == -signal.SIGKILL
    book = json.loads((out / "checkpoint.json").read_text())
    assert len(rows(out / "frames.csv")) >= book["frames"]  # maybe more: the resume cuts them back
    with open(out / "thermo.csv", "a") as fh:  # a torn row, as a kill mid-write leaves it
        fh.write("999,1.0,1,nve,-49.2")
    with open(out / "trajectory.dcd", "ab") as fh:  # and a torn frame
        fh.write(b"\x00" * 100)
    finish(protocol, out, resume=True)
    assert_same_trajectory(tmp / "reference", out)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_cleanly_and_resumes(case, sig):
    tmp, protocol = case
    out = tmp / f"signal_{int(sig)}"
    assert stop_after(protocol, out, 30, sig=sig) == 128 + sig
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["status"] == "interrupted"
    book = json.loads((out / "checkpoint.json").read_text())
    assert not book["completed"]
    # a clean stop leaves exactly what the checkpoint counts
    assert len(rows(out / "frames.csv")) == book["frames"]
    assert len(rows(out / "thermo.csv")) == book["thermo_rows"]
    assert int(rows(out / "thermo.csv")[-1]["step"]) <= book["global_step"]
    if sig == signal.SIGINT:  # the resume path is the same as after SIGTERM
        return
    done = finish(protocol, out, resume=True)
    assert "completed" in done.stdout
    assert_same_trajectory(tmp / "reference", out)


def test_kill9_inside_npt_loses_and_duplicates_nothing(tmp_path):
    protocol = write_protocol(tmp_path, NPT, output={"checkpoint_interval_steps": 10}, seed=11)
    finish(protocol, tmp_path / "reference")
    out = tmp_path / "killed"
    assert stop_after(protocol, out, 70) == -signal.SIGKILL
    finish(protocol, out, resume=True)
    assert_same_bookkeeping(tmp_path / "reference", out)
    # the NVT part before the kill is the same trajectory
    ref_rows, run_rows = rows(tmp_path / "reference" / "thermo.csv"), rows(out / "thermo.csv")
    for a, b in zip(ref_rows, run_rows):
        if int(a["step"]) <= 40:
            assert float(b["potential_energy_eV"]) == pytest.approx(float(a["potential_energy_eV"]), rel=1e-10)


def test_resume_of_an_unstarted_directory_is_a_fresh_run(tmp_path):
    protocol = write_protocol(tmp_path, [{"type": "nvt", "steps": 10, "temperature_K": 300, **DYN}],
                              atoms=cu2se_cell())
    finish(protocol, tmp_path / "run", resume=True)
    assert len(rows(tmp_path / "run" / "frames.csv")) == 1
