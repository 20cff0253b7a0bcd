"""Protocol schema: valid files load and resolve; every kind of mistake gets a one-line message
naming the YAML path."""
from __future__ import annotations

import copy
from pathlib import Path

import pydantic
import pytest

from sus2md.errors import ConfigError
from sus2md.protocol import NPTStage, NVTStage, load_protocol, validate_protocol

ROOT = Path(__file__).resolve().parents[2]

BASE = {
    "structure": {"path": "cu.extxyz"},
    "model": {"path": "m.mtp", "species": ["Cu", "Se"]},
    "stages": [
        {"type": "minimize"},
        {"type": "nvt", "steps": 100, "temperature_K": 300},
        {"type": "npt", "duration_ps": 0.5, "timestep_fs": 2.0, "temperature_K": 300, "pressure_bar": 1.0},
        {"type": "nve", "steps": 50, "heat_flux_interval_steps": 5},
    ],
}


def modified(edit) -> dict:
    data = copy.deepcopy(BASE)
    edit(data)
    return data


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "protocol.yaml"
    path.write_text(text)
    return path


def test_valid_protocol_resolves_names_steps_velocities_and_paths(tmp_path):
    path = write(tmp_path, "structure: {path: data/cu.extxyz}\nmodel: {path: m.mtp}\n"
                 "stages:\n  - {type: minimize}\n  - {type: nvt, duration_ps: 1, timestep_fs: 2, temperature_K: 300}\n"
                 "  - {type: nvt, steps: 10, temperature_K: 300}\n")
    p = load_protocol(path)
    assert [s.name for s in p.stages] == ["stage0_minimize", "stage1_nvt", "stage2_nvt"]
    assert p.stages[1].steps == 500 and p.stages[1].duration_ps is None
    assert p.stages[1].total_time_ps == pytest.approx(1.0)
    assert [s.initial_velocities for s in p.stages[1:]] == ["maxwell", "keep"]
    assert p.stages[1].friction_per_ps == 1.0 and p.stages[1].collision_frequency_per_ps is None
    assert p.structure.path == str((tmp_path / "data" / "cu.extxyz").resolve())
    assert (p.platform, p.precision, p.dtype, p.backend, p.seed) == ("CPU", "double", "float64", "auto", 0)
    assert p.n_replicas == 1


def test_resolved_dict_round_trips_and_has_every_default():
    p = validate_protocol(BASE)
    data = p.resolved_dict()
    assert validate_protocol(data) == p
    npt = data["stages"][2]
    assert list(npt)[0] == "type"
    assert npt["steps"] == 250 and npt["barostat"] == "isotropic" and npt["barostat_interval_steps"] == 25
    assert data["output"] == {"trajectory_format": "dcd", "checkpoint_interval_steps": 1000,
                              "final_structure_formats": ["extxyz", "cif"]}


def test_protocol_is_frozen():
    p = validate_protocol(BASE)
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        p.seed = 3  # type: ignore[misc]


def test_temperature_ramp():
    data = modified(lambda d: d["stages"][1].update(temperature_K=None, temperature_ramp_K=[300, 900]))
    stage = validate_protocol(data).stages[1]
    assert isinstance(stage, NVTStage)
    assert stage.temperature_at(0.0) == 300 and stage.temperature_at(0.5) == 600
    assert stage.temperature_at(1.5) == 900  # clipped


def test_sweep_temperature_applies_to_every_fixed_temperature_stage():
    data = modified(lambda d: d.update(sweep={"parameter": "temperature_K", "values": [500, 700]}))
    p = validate_protocol(data)
    assert p.n_replicas == 2
    r1 = p.for_replica(1)
    assert r1.sweep is None and r1.n_replicas == 1
    assert [getattr(s, "temperature_K", None) for s in r1.stages] == [None, 700, 700, None]


def test_sweep_seed():
    p = validate_protocol(modified(lambda d: d.update(sweep={"parameter": "seed", "values": [3, 4, 5]})))
    assert [p.for_replica(k).seed for k in range(3)] == [3, 4, 5]


def test_replica_out_of_range_names_the_sweep_length():
    p = validate_protocol(modified(lambda d: d.update(sweep={"parameter": "seed", "values": [3, 4]})))
    with pytest.raises(ConfigError, match=r"replica 2 out of range: the sweep has 2 value"):
        p.for_replica(2)


BAD = [
    ("typo key with suggestion", lambda d: d["stages"][1].update(temprature_K=300),
     r"^protocol\.yaml: stages\[1\]\.temprature_K: unknown key \(did you mean temperature_K\?\)$"),
    ("top-level typo", lambda d: d.update(plaform="CPU"), r"plaform: unknown key \(did you mean platform\?\)"),
    ("negative pressure", lambda d: d["stages"][2].update(pressure_bar=-5),
     r"^protocol\.yaml: stages\[2\]\.pressure_bar: must be >= 0, got -5$"),
    ("both steps and duration", lambda d: d["stages"][1].update(duration_ps=1.0),
     r"stages\[1\]: give exactly one of steps or duration_ps \(both given\)"),
    ("neither steps nor duration", lambda d: d["stages"][1].pop("steps"),
     r"stages\[1\]: give exactly one of steps or duration_ps \(neither given\)"),
    ("bad thermostat", lambda d: d["stages"][1].update(thermostat="berendsen"),
     r"stages\[1\]\.thermostat: must be one of langevin, nose-hoover; got 'berendsen'"),
    ("thermostat typo", lambda d: d["stages"][1].update(thermostat="nose-hover"),
     r"got 'nose-hover' \(did you mean nose-hoover\?\)"),
    ("bad platform", lambda d: d.update(platform="TPU"), r"platform: must be one of Reference, CPU, CUDA, OpenCL"),
    ("empty stages", lambda d: d.update(stages=[]), r"stages: must have at least 1 item"),
    ("ramp wrong length", lambda d: d["stages"][1].update(temperature_K=None, temperature_ramp_K=[300, 400, 500]),
     r"stages\[1\]\.temperature_ramp_K: must be \[start, end\] \(2 values\), got 3 values"),
    ("temperature and ramp", lambda d: d["stages"][1].update(temperature_ramp_K=[300, 400]),
     r"stages\[1\]: give exactly one of temperature_K or temperature_ramp_K"),
    ("huge timestep", lambda d: d["stages"][1].update(timestep_fs=20),
     r"stages\[1\]\.timestep_fs: must be in \(0, 10\] fs, got 20"),
    ("zero timestep", lambda d: d["stages"][1].update(timestep_fs=0), r"timestep_fs: must be in \(0, 10\] fs"),
    ("negative temperature", lambda d: d["stages"][1].update(temperature_K=-1),
     r"stages\[1\]\.temperature_K: must be > 0, got -1"),
    ("negative steps", lambda d: d["stages"][1].update(steps=-10), r"stages\[1\]\.steps: must be >= 0, got -10"),
    ("fractional steps", lambda d: d["stages"][1].update(steps=1.5), r"stages\[1\]\.steps: must be an integer"),
    ("zero interval", lambda d: d["stages"][3].update(report_interval_steps=0),
     r"stages\[3\]\.report_interval_steps: must be > 0, got 0"),
    ("unknown stage type", lambda d: d["stages"][1].update(type="nvtt"),
     r"stages\[1\]\.type: unknown stage type 'nvtt' \(did you mean nvt\?\); expected one of minimize"),
    ("missing stage type", lambda d: d["stages"][1].pop("type"), r"stages\[1\]\.type: missing"),
    ("friction with nose-hoover", lambda d: d["stages"][1].update(thermostat="nose-hoover", friction_per_ps=2.0),
     r"friction_per_ps does not apply to the nose-hoover thermostat"),
    ("missing model", lambda d: d.pop("model"), r"model: required key is missing"),
    ("bad supercell", lambda d: d["structure"].update(supercell=[2, 2]),
     r"structure\.supercell: must be \[nx, ny, nz\]"),
    ("duplicate stage names", lambda d: [s.update(name="run") for s in d["stages"][1:3]],
     r"stages: stage names must be unique, 'run' repeats"),
    ("non-integer seed sweep", lambda d: d.update(sweep={"parameter": "seed", "values": [1, 2.5]}),
     r"sweep\.values\[1\]: a seed must be a whole number"),
    ("sweep parameter typo", lambda d: d.update(sweep={"parameter": "temperature", "values": [300]}),
     r"sweep\.parameter: .*\(did you mean temperature_K\?\)"),
    ("string for bool", lambda d: d.update(cuda_graphs="yes"), r"cuda_graphs: must be true or false, got 'yes'"),
    ("nve maxwell without temperature", lambda d: d["stages"][3].update(initial_velocities="maxwell"),
     r"stages\[3\]\.initial_velocities: maxwell needs temperature_K"),
    ("stage not a mapping", lambda d: d["stages"].__setitem__(0, "minimize"), r"stages\[0\]: must be a mapping"),
]


@pytest.mark.parametrize("edit, pattern", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_protocol_names_the_yaml_path(edit, pattern):
    with pytest.raises(ConfigError, match=pattern):
        validate_protocol(modified(edit), source="protocol.yaml")


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    path = write(tmp_path, "structure: {path: a}\nmodel: {path: b\nstages: []\n")
    with pytest.raises(ConfigError, match=r"protocol\.yaml:3:7: YAML syntax error"):
        load_protocol(path)


def test_duplicate_yaml_key_is_an_error(tmp_path):
    path = write(tmp_path, "seed: 1\nseed: 2\n")
    with pytest.raises(ConfigError, match=r"protocol\.yaml:2:1: YAML syntax error: duplicate key 'seed'"):
        load_protocol(path)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(ConfigError, match=r"nope\.yaml: protocol file not found"):
        load_protocol(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match=r"got an empty document"):
        load_protocol(write(tmp_path, "# only a comment\n"))


SHIPPED = sorted((ROOT / "protocols").glob("*.yaml"))


def test_shipped_protocols_exist():
    names = {p.name for p in SHIPPED}
    assert {"demo.yaml", "nvt.yaml", "npt.yaml", "melt_quench.yaml", "diffusion.yaml"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_protocols_validate(path):
    p = load_protocol(path)
    assert p.structure.path == str((ROOT / "examples/data/cu_fcc_108.extxyz").resolve())
    assert p.model.path == str((ROOT / "models/emt_alloy.mtp").resolve())
    for k in range(p.n_replicas):
        replica = p.for_replica(k)
        assert validate_protocol(replica.resolved_dict()) == replica


def test_diffusion_sweep_leaves_the_ramped_melt_stage_alone():
    p = load_protocol(ROOT / "protocols" / "diffusion.yaml")
    r = p.for_replica(p.n_replicas - 1)
    melt = next(s for s in r.stages if s.name == "melt")
    production = next(s for s in r.stages if s.name == "production")
    assert isinstance(melt, NPTStage) and melt.temperature_ramp_K == [2200, 2200]
    assert production.temperature_K == p.sweep.values[-1]
