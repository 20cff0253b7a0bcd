"""The ``extrapolation`` section of a protocol: the run grades its states with GradeMonitor, logs
``max_gamma`` in thermo.csv, dumps extrapolative configurations and stops above ``break_gamma``.

Tiny and self-contained: a random l2k2 Cu/Se model (tests/unit/helpers), an active set from 40
rattled 8-atom fcc cells, the Reference platform, tens of steps."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from sus2md.errors import ConfigError, SimulationError, UsageError
from sus2md.protocol import load_protocol, validate_protocol
from tests.unit.helpers import random_model, small_cell

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

N_REP = (2, 1, 1)  # 8 atoms
DYN = {"timestep_fs": 1.0, "report_interval_steps": 5, "trajectory_interval_steps": 5}
SHORT = {**DYN, "timestep_fs": 0.25}  # the squeezed cell is hot under the random model


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Directory with m.mtp, train.extxyz (training configurations) and as.npz (their active set)."""
    import ase.io

    from sus2md.active.grade import ActiveSet
    from sus2md.io.mtp import write_mtp

    d = tmp_path_factory.mktemp("grade_run")
    model = random_model()
    write_mtp(model.to_mtp(), d / "m.mtp")
    train = [small_cell(seed=s, n_rep=N_REP, rattle=0.1) for s in range(40)]
    ase.io.write(d / "train.extxyz", train)
    ActiveSet.from_frames(model, train).save(d / "as.npz")
    return d, train


def write_protocol(d: Path, name: str, atoms, stages: list[dict], extrapolation: dict | None) -> Path:
    atoms.write(d / f"{name}.extxyz")
    data = {"structure": {"path": f"{name}.extxyz"}, "model": {"path": "m.mtp", "species": ["Cu", "Se"]},
            "platform": "Reference", "dtype": "float64", "threads": 1, "seed": 3, "stages": stages}
    if extrapolation is not None:
        data["extrapolation"] = extrapolation
    path = d / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def squeezed(seed: int = 50, factor: float = 0.95):
    """Compressed by 5 %: max gamma ~ 30 against the active set of ``setup`` (and MD stays sane)."""
    a = small_cell(seed=seed, n_rep=N_REP, rattle=0.05)
    a.set_cell(a.cell * factor, scale_atoms=True)
    return a


def test_in_domain_run_logs_gamma_below_warn(setup):
    from sus2md.engine.run import run_protocol

    d, train = setup
    stages = [{"type": "nvt", "name": "warm", "steps": 10, "temperature_K": 300, **DYN},
              {"type": "nve", "name": "free", "steps": 6, **DYN}]
    ex = {"training_data": "train.extxyz", "interval_steps": 5, "warn_gamma": 2.0, "break_gamma": 10.0}
    start = small_cell(seed=0, n_rep=N_REP, rattle=0.05)  # well inside the training configurations
    proto = load_protocol(write_protocol(d, "inside", start, stages, ex))
    assert proto.extrapolation.training_data == str(d / "train.extxyz")  # anchored at the protocol's directory
    result = run_protocol(proto, d / "run_in", progress=False)
    assert result.status == "completed"
    run = d / "run_in"
    with open(run / "thermo.csv") as fh:
        header = fh.readline().strip().split(",")
    from sus2md.engine.outputs import THERMO_COLUMNS

    assert header == list(THERMO_COLUMNS) and "max_gamma" in header
    thermo = rows(run / "thermo.csv")
    # graded at multiples of 5 and each stage's last step: every thermo row here
    assert [int(r["step"]) for r in thermo] == [5, 10, 15, 16]
    gammas = [float(r["max_gamma"]) for r in thermo]
    assert all(0 < g <= 2.0 for g in gammas), gammas
    assert not (run / "extrapolative.cfg").exists()
    assert (run / "active_set.npz").is_file()  # the set built from training_data is kept
    prov = json.loads((run / "provenance.json").read_text())
    assert prov["extrapolation"]["max_gamma"] == pytest.approx(max(gammas))
    assert prov["extrapolation"]["n_dumped"] == 0


def test_no_extrapolation_section_leaves_the_column_empty(setup):
    from sus2md.engine.run import run_protocol

    d, train = setup
    stages = [{"type": "nvt", "name": "md", "steps": 5, "temperature_K": 300, **DYN}]
    run_protocol(load_protocol(write_protocol(d, "plain", train[1], stages, None)), d / "run_plain", progress=False)
    thermo = rows(d / "run_plain" / "thermo.csv")
    assert len(thermo) == 1 and thermo[0]["max_gamma"] == ""


def test_squeezed_structure_breaks_with_the_last_good_state(setup):
    from sus2md.engine.run import run_protocol
    from sus2md.io.cfg import read_cfg

    d, _ = setup
    stages = [{"type": "nvt", "name": "squeeze", "steps": 40, "temperature_K": 300, **SHORT}]
    ex = {"active_set": "as.npz", "interval_steps": 10, "warn_gamma": 2.0, "break_gamma": 10.0,
          "dump_cfg": "far.cfg"}
    proto = load_protocol(write_protocol(d, "far", squeezed(), stages, ex))
    with pytest.raises(SimulationError, match=r"stage 'squeeze' step 10: extrapolation grade (\S+) at atom \d+ "
                                              r"\((Cu|Se)\) exceeds extrapolation.break_gamma 10; .*far.cfg.*last good "
                                              r"state kept in checkpoint.chk \(step 5\); add the dumped") as exc:
        run_protocol(proto, d / "run_far", progress=False)
    gamma = float(str(exc.value).split("extrapolation grade ")[1].split()[0])
    assert gamma > 10
    run = d / "run_far"
    book = json.loads((run / "checkpoint.json").read_text())
    assert book["step_in_stage"] == 5 and book["completed"] is False  # the previous report
    # the report at step 5 was written; nothing of step 10 was
    assert [int(r["step"]) for r in rows(run / "thermo.csv")] == [5]
    assert rows(run / "thermo.csv")[0]["max_gamma"] == ""  # step 5 is not a graded step
    dumped = read_cfg(run / "far.cfg", species=["Cu", "Se"])
    assert len(dumped) == 1 and float(dumped[0].info["max_gamma"]) == pytest.approx(gamma, rel=1e-2)
    assert int(dumped[0].info["step"]) == 10 and len(dumped[0]) == 8
    prov = json.loads((run / "provenance.json").read_text())
    assert prov["status"].startswith("failed: stage 'squeeze' step 10: extrapolation grade")


def cli(args: list[str]) -> int:
    """Exit code of ``sus2md.cli.main(args)`` (success may return or raise SystemExit(0))."""
    from sus2md.cli import main

    try:
        main(args)
    except SystemExit as e:
        return int(e.code or 0)
    return 0


def test_cli_break_is_a_runtime_error_and_warnings_are_logged(setup, capsys, caplog):
    import logging

    d, _ = setup
    stages = [{"type": "nvt", "name": "squeeze", "steps": 15, "temperature_K": 300, **SHORT}]
    ex = {"active_set": "as.npz", "interval_steps": 5, "warn_gamma": 1.5, "break_gamma": 1e6}
    path = write_protocol(d, "warn", squeezed(), stages, ex)
    with caplog.at_level(logging.WARNING, logger="sus2md.active.grade"):
        assert cli(["run", str(path), "--out", str(d / "run_warn"), "--no-progress"]) == 0
    assert "step 5: extrapolation grade" in caplog.text and "above 1.5" in caplog.text
    assert len([r for r in rows(d / "run_warn" / "thermo.csv") if float(r["max_gamma"]) > 1.5]) == 3
    assert (d / "run_warn" / "extrapolative.cfg").read_text().count("BEGIN_CFG") == 3
    capsys.readouterr()
    path = write_protocol(d, "brk", squeezed(), stages, {**ex, "break_gamma": 10.0})
    assert cli(["run", str(path), "--out", str(d / "run_brk"), "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: stage 'squeeze' step 5: extrapolation grade")
    assert "Traceback" not in "\n".join(err)


def test_bad_active_set_is_refused_before_the_run_directory_is_made(setup, tmp_path):
    from sus2md.engine.run import run_protocol

    d, train = setup
    stages = [{"type": "nvt", "steps": 5, "temperature_K": 300, **DYN}]
    other = random_model(seed=4)
    from sus2md.active.grade import ActiveSet

    ActiveSet.from_frames(other, train[:3]).save(d / "other.npz")
    proto = load_protocol(write_protocol(d, "other", train[0], stages, {"active_set": "other.npz"}))
    with pytest.raises(UsageError, match=r"other.npz was built for model sha256 .* rebuild the active set"):
        run_protocol(proto, tmp_path / "never", progress=False)
    assert not (tmp_path / "never").exists()
    proto = load_protocol(write_protocol(d, "missing", train[0], stages, {"active_set": "nope.npz"}))
    with pytest.raises(UsageError, match=r"extrapolation.active_set: file not found: .*nope.npz; build an active set"):
        run_protocol(proto, tmp_path / "never", progress=False)


@pytest.mark.parametrize("ex, msg", [
    ({}, r"extrapolation: give exactly one of active_set or training_data \(neither given\)"),
    ({"active_set": "a.npz", "training_data": "t.cfg"}, r"exactly one of active_set or training_data \(both"),
    ({"active_set": "a.npz", "warn_gamma": 5.0, "break_gamma": 2.0}, r"extrapolation.warn_gamma: must be <= break_gamma"),
    ({"active_set": "a.npz", "interval_steps": 0}, r"extrapolation.interval_steps: must be > 0, got 0"),
    ({"active_set": "a.npz", "warn_gama": 3.0}, r"extrapolation.warn_gama: unknown key \(did you mean warn_gamma\?\)"),
    ({"active_set": "a.npz", "dump_cfg": "../x.cfg"}, r"extrapolation.dump_cfg: must be a file name inside the run"),
    ({"active_set": "a.npz", "species": ["Cu"]}, r"extrapolation.species: only applies with training_data"),
])
def test_protocol_section_validation(ex, msg):
    data = {"structure": {"path": "s.extxyz"}, "model": {"path": "m.mtp"}, "extrapolation": ex,
            "stages": [{"type": "nve", "steps": 1}]}
    with pytest.raises(ConfigError, match=msg):
        validate_protocol(data, source="p.yaml")


def test_resolved_protocol_round_trips_with_extrapolation(tmp_path):
    data = {"structure": {"path": "s.extxyz"}, "model": {"path": "m.mtp"}, "stages": [{"type": "nve", "steps": 1}],
            "extrapolation": {"training_data": "t.cfg", "species": ["Cu", "Se"], "warn_gamma": 3}}
    p = validate_protocol(data, base_dir=tmp_path)
    assert p.extrapolation.training_data == str(tmp_path / "t.cfg") and p.extrapolation.warn_gamma == 3.0
    again = validate_protocol(json.loads(json.dumps(p.resolved_dict())))
    assert again.extrapolation == p.extrapolation
    assert np.isclose(again.extrapolation.break_gamma, 10.0)
