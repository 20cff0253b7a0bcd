"""Minimize stages through ``sus2md run``: capped, logged, unconverged ends reported, atoms closer
than the model's training domain flagged, and SIGINT honoured within seconds (then resumable).

The case of issue 12: two Se atoms 0.9 Å apart in antifluorite Cu2Se (the authors' cu2se.mtp,
min_dist 1.85 Å) ran 12 minutes in an uncapped minimization that ignored SIGINT and SIGTERM.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from ase.spacegroup import crystal

from tests.integration.test_run import shared_model, write_protocol

ROOT = Path(__file__).resolve().parents[2]


def squeezed_pair(n_rep: int = 2):
    """Antifluorite Cu2Se with two Se atoms moved 0.9 Å apart."""
    atoms = crystal(["Se", "Cu"], basis=[(0, 0, 0), (0.25, 0.25, 0.25)], spacegroup=225,
                    cellpar=[5.85] * 3 + [90] * 3).repeat(n_rep)
    se = [i for i, s in enumerate(atoms.get_chemical_symbols()) if s == "Se"]
    d = atoms.positions[se[1]] - atoms.positions[se[0]]
    atoms.positions[se[1]] = atoms.positions[se[0]] + d / np.linalg.norm(d) * 0.9
    return atoms, se[0], se[1]


def test_minimize_is_capped_logged_and_says_it_did_not_converge(tmp_path, caplog):
    from sus2md.engine.run import run_protocol
    from sus2md.protocol import load_protocol

    atoms, a, b = squeezed_pair()
    stages = [{"type": "minimize", "tolerance_kJ_mol_nm": 1e-3, "max_iterations": 30, "log_interval_iterations": 10}]
    path = write_protocol(tmp_path, stages, atoms=atoms, platform="CPU")
    with caplog.at_level("INFO", logger="sus2md"):
        result = run_protocol(load_protocol(path), tmp_path / "run", progress=False)
    assert result.status == "completed"
    text = caplog.text
    assert f"atoms {a} (Se) and {b} (Se) are 0.9 Å apart, below cu2se.mtp's min_dist 1.85 Å" in text
    assert "stage 'stage0_minimize': minimize: iteration 0, E = " in text and "iteration 20, E = " in text
    assert "minimization ended unconverged after 30 iterations (max_iterations 30)" in text
    stage = json.loads((tmp_path / "run" / "provenance.json").read_text())["stages"][0]
    assert stage["iterations"] == 30 and stage["converged"] is False and stage["interrupted"] is False
    assert stage["potential_energy_after_eV"] < stage["potential_energy_before_eV"]
    assert stage["max_force_eV_A"] > stage["rms_force_eV_A"] > 0


def test_sigint_stops_an_endless_minimization_within_seconds_and_it_resumes(tmp_path):
    atoms, _, _ = squeezed_pair(3)
    stages = [{"type": "minimize", "tolerance_kJ_mol_nm": 1e-9, "max_iterations": 0, "log_interval_iterations": 1},
              {"type": "nvt", "steps": 4, "temperature_K": 300, "timestep_fs": 1.0, "report_interval_steps": 2,
               "trajectory_interval_steps": 4}]
    path = write_protocol(tmp_path, stages, atoms=atoms, platform="CPU")
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "sus2md", "run", str(path), "--out", str(out), "--no-progress"],
                            stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    deadline = time.time() + 240
    for line in proc.stderr:  # wait until the minimizer reports its iterations
        if "minimize: iteration 3," in line or time.time() > deadline:
            break
    t0 = time.time()
    proc.send_signal(signal.SIGINT)
    err = proc.stderr.read()
    code = proc.wait(timeout=60)
    assert code == 130, err[-2000:]
    assert time.time() - t0 < 20
    assert "continue with: sus2md run" in err and "--resume" in err
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["status"] == "interrupted" and prov["stages"][0]["interrupted"] is True
    book = json.loads((out / "checkpoint.json").read_text())
    assert book["stage_index"] == 0 and not book["stage_complete"]
    # the resumed run minimizes again from the checkpointed (partly minimized) state
    proc = subprocess.Popen([sys.executable, "-m", "sus2md", "run", str(path), "--out", str(out), "--resume",
                             "--no-progress"], stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    for line in proc.stderr:
        if "minimize: iteration 1," in line or time.time() > deadline + 240:
            break
    proc.send_signal(signal.SIGINT)
    proc.stderr.read()
    assert proc.wait(timeout=60) == 130
    assert len(json.loads((out / "provenance.json").read_text())["sessions"]) == 2


@pytest.fixture(autouse=True)
def _model():
    shared_model()  # skip without ../shared
