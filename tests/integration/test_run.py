"""``run_protocol`` / ``sus2md run``: every file of the run-directory contract, blow-ups, replicas,
overrides and CLI exit codes, on a 12-atom antifluorite Cu2Se cell with the authors' cu2se.mtp
(Reference platform, float64, tens of steps)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from ase import Atoms

from sus2md.errors import ConfigError, SimulationError, UsageError
from sus2md.protocol import load_protocol

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

ROOT = Path(__file__).resolve().parents[2]


def cu2se_cell(a: float = 5.84) -> Atoms:
    """Antifluorite Cu2Se conventional cell: Se on fcc sites, Cu on the 8 tetrahedral sites."""
    se = [(0, 0, 0), (0, 0.5, 0.5), (0.5, 0, 0.5), (0.5, 0.5, 0)]
    cu = [(x, y, z) for x in (0.25, 0.75) for y in (0.25, 0.75) for z in (0.25, 0.75)]
    return Atoms(["Se"] * 4 + ["Cu"] * 8, scaled_positions=se + cu, cell=[a, a, a], pbc=True)


def write_protocol(tmp: Path, stages: list[dict], atoms: Atoms | None = None, name: str = "p", **top) -> Path:
    model = shared_model()
    (atoms if atoms is not None else cu2se_cell()).write(tmp / "cu2se.extxyz")
    data = {"structure": {"path": "cu2se.extxyz"}, "model": {"path": str(model), "species": ["Cu", "Se"]},
            "platform": "Reference", "dtype": "float64", "threads": 1, "seed": 5, **top, "stages": stages}
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def shared_model() -> Path:
    from tests.conftest import shared_path

    return shared_path("reference", "cu2se.mtp")


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


DYN = {"timestep_fs": 2.0, "report_interval_steps": 5, "trajectory_interval_steps": 10}
FULL = [
    {"type": "minimize", "max_iterations": 10},
    {"type": "nvt", "name": "heat", "steps": 20, "temperature_ramp_K": [100, 300], **DYN},
    {"type": "npt", "name": "press", "steps": 20, "temperature_K": 300, "pressure_bar": 1000.0,
     "barostat_interval_steps": 5, **DYN},
    {"type": "nve", "name": "nve", "steps": 12, "heat_flux_interval_steps": 4, **DYN},
]


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    from sus2md.engine.run import run_protocol

    tmp = tmp_path_factory.mktemp("full")
    proto = load_protocol(write_protocol(tmp, FULL, output={"checkpoint_interval_steps": 10}))
    result = run_protocol(proto, tmp / "run", progress=False)
    return tmp, result


def test_full_protocol_writes_the_contract(full_run):
    import mdtraj

    tmp, result = full_run
    d = result.run_dir
    assert result.status == "completed" and result.exit_code == 0
    for name in ("protocol.yaml", "topology.pdb", "trajectory.dcd", "frames.csv", "thermo.csv", "provenance.json",
                 "checkpoint.chk", "checkpoint.json", "final.extxyz", "final.cif", "heat_flux.csv", "final_state.xml"):
        assert (d / name).is_file(), name
    frames = rows(d / "frames.csv")
    # frames every 10 steps of each stage plus each stage's last step: heat 10,20; press 30,40; nve 50,52
    assert [int(r["step"]) for r in frames] == [10, 20, 30, 40, 50, 52]
    assert [int(r["frame"]) for r in frames] == list(range(6))
    assert [r["stage"] for r in frames] == ["heat"] * 2 + ["press"] * 2 + ["nve"] * 2
    traj = mdtraj.load(str(d / "trajectory.dcd"), top=str(d / "topology.pdb"))
    assert traj.n_frames == len(frames) == result.frames and traj.n_atoms == 12
    assert traj.unitcell_vectors is not None and np.all(traj.unitcell_lengths > 0.5)
    assert sorted({a.element.symbol for a in traj.topology.atoms}) == ["Cu", "Se"]
    thermo = rows(d / "thermo.csv")
    steps = [int(r["step"]) for r in thermo]
    assert steps == list(range(5, 41, 5)) + [45, 50, 52] and len(set(steps)) == len(steps)
    assert all(r["pressure_bar"] != "" for r in thermo)  # periodic: virial pressure everywhere
    t_ps = [float(r["time_ps"]) for r in thermo]
    assert t_ps[-1] == pytest.approx(40 * 0.002 + 12 * 0.002)
    for r in thermo:
        assert float(r["total_energy_eV"]) == pytest.approx(float(r["potential_energy_eV"]) + float(r["kinetic_energy_eV"]))
        assert 0 < float(r["temperature_K"]) < 2000 and float(r["density_g_cm3"]) > 5
    assert [int(r["step"]) for r in rows(d / "heat_flux.csv")] == [44, 48, 52]
    resolved = load_protocol(d / "protocol.yaml")  # the resolved protocol validates again
    assert [s.name for s in resolved.stages] == ["stage0_minimize", "heat", "press", "nve"]
    prov = json.loads((d / "provenance.json").read_text())
    assert prov["status"] == "completed" and prov["platform"]["name"] == "Reference"
    assert len(prov["model"]["sha256"]) == 64 and prov["versions"]["openmm"]
    assert [s["steps_run"] for s in prov["stages"]] == [0, 20, 20, 12]
    assert json.loads((d / "checkpoint.json").read_text())["completed"] is True
    import ase.io

    final = ase.io.read(d / "final.extxyz")
    assert len(final) == 12 and final.pbc.all()


def test_analysis_reads_the_run_directory(full_run):
    rundir = pytest.importorskip("sus2md.analysis.rundir")
    run = rundir.load_run(full_run[1].run_dir)
    assert run.load_trajectory().n_frames == 6


def test_a_completed_run_is_not_overwritten(full_run):
    from sus2md.engine.run import run_protocol

    tmp, result = full_run
    proto = load_protocol(tmp / "p.yaml")
    with pytest.raises(UsageError, match="already holds a completed run; pass --resume"):
        run_protocol(proto, result.run_dir, progress=False)
    again = run_protocol(proto, result.run_dir, resume=True, progress=False)
    assert again.status == "nothing to do"


def test_resume_refuses_a_changed_protocol(full_run):
    from sus2md.engine.run import run_protocol

    tmp, result = full_run
    proto = load_protocol(tmp / "p.yaml")
    with pytest.raises(UsageError, match=r"protocol differs .* at stages\[1\]\.steps"):
        run_protocol(proto, result.run_dir, resume=True, max_steps=3, progress=False)


def test_blowup_stops_with_the_last_good_state(tmp_path):
    from sus2md.engine.run import run_protocol

    hot = [{"type": "nvt", "name": "nvt-hot", "steps": 400, "timestep_fs": 10.0, "temperature_K": 5000,
            "report_interval_steps": 5, "trajectory_interval_steps": 5}]
    # squeezed cell, 10 fs at 5000 K: blows up near step 230 with this seed (Reference is deterministic)
    proto = load_protocol(write_protocol(tmp_path, hot, atoms=cu2se_cell(5.0), seed=2,
                                         output={"checkpoint_interval_steps": 50}))
    with pytest.raises(SimulationError, match=r"stage 'nvt-hot' step (\d+): .*likely cause: timestep too large "
                                              r"\(10.0 fs\).*last good state kept in checkpoint.chk \(step \d+\)") as exc:
        run_protocol(proto, tmp_path / "run", progress=False)
    d = tmp_path / "run"
    book = json.loads((d / "checkpoint.json").read_text())
    bad_step = int(str(exc.value).split("step ")[1].split(":")[0])
    assert book["step_in_stage"] == bad_step - 5  # the previous report: the last state that passed the check
    frames, thermo = rows(d / "frames.csv"), rows(d / "thermo.csv")
    assert book["frames"] == len(frames) and book["thermo_rows"] == len(thermo)
    assert int(frames[-1]["step"]) == book["global_step"] < bad_step  # the bad frame was not written
    prov = json.loads((d / "provenance.json").read_text())
    assert prov["status"].startswith("failed: stage 'nvt-hot'")
    assert not (d / "final.extxyz").exists()


def test_replica_and_slurm_array_pick_the_sweep_value(tmp_path, monkeypatch):
    from sus2md.cli import main
    from sus2md.engine.run import select_replica

    stages = [{"type": "nvt", "name": "md", "steps": 100, "temperature_K": 300, **DYN}]
    path = write_protocol(tmp_path, stages, name="sweep", sweep={"parameter": "temperature_K", "values": [200.0, 400.0]})
    proto = load_protocol(path)
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")
    assert select_replica(proto, None) == 1 and select_replica(proto, 0) == 0
    monkeypatch.chdir(tmp_path)
    main(["run", str(path), "--steps", "3", "--no-progress"])  # returns normally on success
    d = tmp_path / "runs" / "sweep_replica1"
    stored = yaml.safe_load((d / "protocol.yaml").read_text())
    assert stored["stages"][0]["temperature_K"] == 400.0 and stored["stages"][0]["steps"] == 3
    assert stored["sweep"] is None
    assert [int(r["step"]) for r in rows(d / "thermo.csv")] == [3]
    assert json.loads((d / "provenance.json").read_text())["replica"] == 1


def test_platform_override_and_step_cap(tmp_path):
    from sus2md.engine.run import run_protocol

    stages = [{"type": "nvt", "name": "md", "steps": 1000, "temperature_K": 300, **DYN}]
    result = run_protocol(load_protocol(write_protocol(tmp_path, stages)), tmp_path / "run", platform="CPU",
                          max_steps=4, progress=False)
    prov = json.loads((tmp_path / "run" / "provenance.json").read_text())
    assert prov["platform"]["name"] == "CPU" and prov["max_steps"] == 4
    assert result.global_step == 4 and result.frames == 1


def test_npt_needs_a_periodic_structure(tmp_path):
    from sus2md.engine.run import run_protocol

    cluster = cu2se_cell()
    cluster.pbc = False
    cluster.center(vacuum=5.0)
    stages = [{"type": "npt", "name": "squeeze", "steps": 5, "temperature_K": 300, "pressure_bar": 1.0, **DYN}]
    proto = load_protocol(write_protocol(tmp_path, stages, atoms=cluster))
    with pytest.raises(ConfigError, match=r"stages\[0\] \(squeeze\): an npt stage needs a structure periodic"):
        run_protocol(proto, tmp_path / "run", progress=False)


def test_unwritable_out_dir_is_a_usage_error(tmp_path):
    from sus2md.engine.run import run_protocol

    (tmp_path / "file").write_text("not a directory")
    stages = [{"type": "nvt", "steps": 5, "temperature_K": 300, **DYN}]
    proto = load_protocol(write_protocol(tmp_path, stages))
    with pytest.raises(UsageError, match=r"cannot write to the output directory .*file/run"):
        run_protocol(proto, tmp_path / "file" / "run", progress=False)


def test_cli_exit_codes(tmp_path, capsys):
    from sus2md.cli import main

    bad = tmp_path / "bad.yaml"
    bad.write_text("structure: {path: x.extxyz}\nmodel: {path: m.mtp}\nstages: [{type: nvt, steps: 5}]\n")
    with pytest.raises(SystemExit) as ex:
        main(["run", str(bad), "--out", str(tmp_path / "r0")])
    assert ex.value.code == 2
    assert "temperature_K" in capsys.readouterr().err
    hot = [{"type": "nvt", "name": "nvt-hot", "steps": 400, "timestep_fs": 10.0, "temperature_K": 5000,
            "report_interval_steps": 5, "trajectory_interval_steps": 5}]
    with pytest.raises(SystemExit) as ex:
        main(["run", str(write_protocol(tmp_path, hot, atoms=cu2se_cell(5.0), seed=2)), "--out", str(tmp_path / "r1"),
              "--no-progress"])
    assert ex.value.code == 1
    assert "error: stage 'nvt-hot' step" in capsys.readouterr().err
