"""`sus2md bench`: the command runs on a tiny system and writes a well-formed report.

No timing assertions: speeds on a shared machine prove nothing; the structure of the report does.
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest
from ase.build import bulk

from sus2md.bench import throughput as bench
from sus2md.errors import UsageError

ROOT = Path(__file__).resolve().parents[2]
ROW_KEYS = {"kind", "backend", "dtype", "threads", "device", "n_atoms", "size_requested", "steps", "repeats",
            "best_s_per_step", "median_s_per_step", "atom_steps_per_s", "vs_model_alone"}
SCAN_KEYS = {"n_species", "species", "n_atoms", "neighbors_per_atom", "parameters", "basis", "cutoff_A",
             "best_s_per_step", "atom_steps_per_s", "vs_first"}


@pytest.fixture
def tiny(tmp_path):
    """The corpus' tiny Cu/Se model: its compiled step is shared with the other tests of a session."""
    model = tmp_path / "cuse.mtp"
    model.write_text((ROOT / "tests" / "corpus" / "tiny.mtp").read_text())
    atoms = bulk("Cu", "fcc", a=3.9, cubic=True).repeat((2, 2, 2))
    atoms.symbols[::3] = "Se"
    structure = tmp_path / "cell.extxyz"
    atoms.write(structure)
    return model, structure


def run_cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "sus2md", "bench", *map(str, args)], capture_output=True, text=True, cwd=cwd)


def test_bench_cli_writes_json_and_markdown(tiny, tmp_path):
    model, structure = tiny
    js, md = tmp_path / "b.json", tmp_path / "b.md"
    r = run_cli(model, "--structure", structure, "--sizes", "32,256", "--dtypes", "float64",
                "--backends", "model,model-eager,auto,torch,python", "--threads", "1", "--steps", "1", "--repeats", "1",
                "--warmup", "0", "--species-scan", "--scan-species", "2,3", "--scan-atoms", "32",
                "--json", js, "--markdown", md, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    rep = json.loads(js.read_text())
    assert rep["schema"] == bench.SCHEMA
    assert {"date", "cpu_model", "logical_cores", "loadavg", "gpu", "versions"} <= set(rep["machine"])
    assert {"sus2md", "torch", "openmm"} <= set(rep["machine"]["versions"])
    assert rep["species"] == ["Cu", "Se"] and "ratios" in rep["note"]
    rows = rep["results"]
    assert len(rows) == 2 * 1 * 5  # sizes x dtypes x backends
    for row in rows:
        assert ROW_KEYS <= set(row)
        assert row["atom_steps_per_s"] > 0
    assert sorted({row["n_atoms"] for row in rows}) == [32, 256]  # 32-atom cell replicated 2x2x2
    assert all(row["vs_model_alone"] == 1.0 for row in rows if row["backend"] == "model")
    assert all(row["resolved_backend"] == "compiled" for row in rows if row["backend"] == "auto")
    assert [s["n_species"] for s in rep["species_scan"]] == [2, 3]
    for s in rep["species_scan"]:
        assert SCAN_KEYS <= set(s)
    text = md.read_text()
    assert "atom-steps/s" in text and "Cost vs number of species" in text and "ratios" in text
    assert "torch " in text and "openmm " in text


def test_species_scan_builds_requested_species_counts():
    rows = bench.species_scan((2, 7, 53), L=2, K=2, radial_basis_size=4, cutoff_A=4.0, n_atoms=32,
                              steps=1, repeats=1, warmup=0)
    assert [r["n_species"] for r in rows] == [2, 7, 53]
    assert [len(r["species"]) for r in rows] == [2, 7, 53]
    assert rows[1]["species"] == bench.EMT_SPECIES
    assert set(rows[2]["species"]) == set(bench.ALLOY_SPECIES)
    # same lattice and cutoff: the neighbour count does not depend on the species
    assert len({r["neighbors_per_atom"] for r in rows}) == 1
    assert rows[0]["parameters"] < rows[1]["parameters"] < rows[2]["parameters"]


def test_replicate_and_random_alloy_sizes():
    cell = bulk("Cu", "fcc", a=3.6, cubic=True)
    assert len(bench.replicate(cell, 4)) == 4
    assert len(bench.replicate(cell, 30)) == 32
    assert len(bench.random_alloy(["Cu", "Ni"], 500)) == 500


@pytest.mark.parametrize("kw,match", [
    ({"backends": ("model", "gromacs")}, "backends: gromacs unknown"),
    ({"dtypes": ("float16",)}, "dtypes: float16 unknown"),
    ({"steps": 0}, "steps must be >= 1"),
    ({"device": "tpu"}, "device must be cpu or cuda"),
])
def test_config_errors(kw, match):
    with pytest.raises(UsageError, match=match):
        bench.BenchConfig(**kw).validate()


def test_scan_species_counts_out_of_range():
    with pytest.raises(UsageError, match="between 1 and 53"):
        bench.scan_species_lists([54])
