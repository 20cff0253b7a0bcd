"""Every numbered example in examples/ runs in smoke mode as a user would run it (a subprocess).

They share one work directory in the order of the chain train -> evaluate -> compile/OpenMM ->
protocol run -> analysis, so the smoke model is trained once (each example also makes what it
needs when run alone).  No ../shared data needed; about a minute on two busy cores.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"

# (script, a line its output must contain)
CHAIN = [
    ("02_train.py", "model species: ['Cu', 'Ni', 'Au']"),
    ("01_evaluate.py", "force_rmse_eV_A"),
    ("03_compile_and_openmm.py", "atom-steps/s"),
    ("04_run_protocol.py", "completed: 80 steps, 40 frames"),
    ("05_analyze.py", "D (MSD), npt:"),
]


def test_chain_is_complete():
    scripts = sorted(p.name for p in EXAMPLES.glob("0*.py"))
    assert scripts == sorted(name for name, _ in CHAIN)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("examples_smoke")


@pytest.mark.parametrize("script,expect", CHAIN, ids=[s for s, _ in CHAIN])
def test_example_smoke(script: str, expect: str, workdir: Path):
    env = {**os.environ, "SUS2MD_SMOKE": "1", "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    proc = subprocess.run([sys.executable, str(EXAMPLES / script), "--workdir", str(workdir)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{script} failed (rc {proc.returncode}):\n{out[-4000:]}"
    assert expect in proc.stdout, f"{script}: {expect!r} not in its output:\n{proc.stdout[-3000:]}"
