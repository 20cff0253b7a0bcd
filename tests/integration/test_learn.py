"""``sus2md learn``: the loop on a tiny Cu/Ni system with EMT as the labeller (seconds per run):
its files, interruption and ``kill -9`` then ``--resume`` (nothing lost, nothing labelled twice),
failed labels, external labelling, and bad input."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import ase.io
import numpy as np
import pytest
import yaml
from ase.build import bulk, fcc100
from ase.calculators.emt import EMT

from sus2md.errors import ConfigError, UnknownSpeciesError

ROOT = Path(__file__).resolve().parents[2]


class FlakyEMT(EMT):
    """EMT that fails on every ``fail_every``-th call and, with $SUS2MD_TEST_KILL_AT = n, kills its
    own process (SIGKILL) at the n-th call."""

    calls = 0

    def __init__(self, fail_every: int = 0, **kw):
        super().__init__(**kw)
        self.fail_every = fail_every

    def calculate(self, *args, **kwargs):
        FlakyEMT.calls += 1
        if os.environ.get("SUS2MD_TEST_KILL_AT") == str(FlakyEMT.calls):
            os.kill(os.getpid(), signal.SIGKILL)
        if self.fail_every and FlakyEMT.calls % self.fail_every == 0:
            raise RuntimeError("SCF did not converge")
        super().calculate(*args, **kwargs)


class Unlicensed(EMT):
    """A calculator whose constructor fails, as one without its license or binary would."""

    def __init__(self, **kw):
        raise RuntimeError("no license file found")


def start_structures(path: Path) -> None:
    rng = np.random.default_rng(0)
    frames = []
    for el in ("Cu", "Ni"):
        a = bulk(el, "fcc", cubic=True).repeat((2, 1, 1))
        a.rattle(0.05, seed=1)
        a.info["config_type"] = "bulk"
        frames.append(a)
    a = bulk("Cu", "fcc", a=3.56, cubic=True).repeat((2, 2, 1))
    s = a.get_chemical_symbols()
    for i in rng.choice(len(a), 6, replace=False):
        s[i] = "Ni"
    a.set_chemical_symbols(s)
    a.info["config_type"] = "alloy"
    frames.append(a)
    slab = fcc100("Cu", (2, 2, 3), vacuum=5.0, periodic=True)
    slab.info = {"config_type": "surface"}
    frames.append(slab)
    ase.io.write(path, frames)


def config(tmp: Path, **over) -> Path:
    start_structures(tmp / "start.extxyz")
    data = {"structures": ["start.extxyz"], "model": {"L": 2, "K": 2, "R": 4, "cutoff_A": 4.0, "species": ["Cu", "Ni"]},
            "labeller": {"calculator": "ase.calculators.emt:EMT"},
            "exploration": {"temperatures_K": [300, 1200], "pressures_bar": [0], "steps": 100, "replicas": 1,
                            "grade_interval_steps": 10},
            "grade": {"select_gamma": 1.5, "break_gamma": 20},
            "selected_per_iteration": 3,
            "training": {"optimizer": {"kind": "lbfgs", "max_steps": 10, "random_samples": 1, "init_subset": 5},
                         "validation_fraction": 0.2},
            "stopping": {"max_iterations": 3}, "threads": 1}
    for key, value in over.items():
        data[key] = value
    path = tmp / "learn.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def run(cfg_path: Path, out: Path, resume: bool = False):
    from sus2md.active.config import load_learn_config
    from sus2md.active.learn import learn

    return learn(load_learn_config(cfg_path), out, resume=resume)


def labels(out: Path) -> dict[str, float]:
    return {a.info["label_id"]: a.get_potential_energy() for a in ase.io.read(out / "train.extxyz", ":")}


def test_loop_labels_trains_explores_and_logs(tmp_path):
    from sus2md.model import load_model

    res = run(config(tmp_path), tmp_path / "run")
    out = tmp_path / "run"
    assert res.status == "max_iterations" and res.iterations == 3
    lab = labels(out)
    assert res.labels == len(lab) == len(list((out / "labels").glob("*.extxyz")))
    frames = ase.io.read(out / "train.extxyz", ":")
    assert [a.info["learn_iteration"] for a in frames][:4] == [0, 0, 0, 0]  # the 4 initial structures
    assert {a.info["learn_iteration"] for a in frames} == {0, 1, 2}
    assert all(np.isfinite(a.get_forces()).all() for a in frames)
    assert all(a.get_stress() is not None for a in frames)  # all periodic: energy, forces and stress
    rows = _csv(out / "log.csv")
    assert [int(r["iteration"]) for r in rows] == [0, 1, 2]
    assert [int(r["labels"]) for r in rows] == [4, 4 + int(rows[0]["new_labels"]),
                                                4 + int(rows[0]["new_labels"]) + int(rows[1]["new_labels"])]
    assert all(json.loads(r["max_gamma"]) for r in rows[:2])  # a grade per condition
    assert set(json.loads(rows[0]["max_gamma"])) == {"T300_P0", "T1200_P0"}
    assert (out / "learning.png").stat().st_size > 0
    load_model(out / "model.mtp", species=["Cu", "Ni"])
    # the slab (vacuum along c) explored NVT even at a pressure; the bulk cells NPT
    kinds = {p.stem: yaml.safe_load(p.read_text())["stages"][0]["type"] for p in (out / "iter_000" / "explore").glob("*.yaml")}
    assert set(kinds.values()) <= {"npt", "nvt"}
    again = run(config(tmp_path), out, resume=True)
    assert again.status == "max_iterations" and labels(out) == lab  # a done run does nothing more


def _csv(path: Path) -> list[dict]:
    import csv

    with open(path) as fh:
        return list(csv.DictReader(fh))


def test_kill9_while_labelling_then_resume_loses_and_repeats_nothing(tmp_path):
    cfg = config(tmp_path, labeller={"calculator": "tests.integration.test_learn:FlakyEMT"})
    ref = run(cfg, tmp_path / "reference")
    out = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SUS2MD_TEST_KILL_AT": "6"}  # 4 initial labels, then the 2nd new one
    cmd = [sys.executable, "-m", "sus2md", "learn", str(cfg), "--out", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    made = sorted(p.name for p in (out / "labels").glob("*.extxyz"))
    assert len(made) == 5 and not list((out / "labels").glob("*.tmp*"))
    env.pop("SUS2MD_TEST_KILL_AT")
    proc = subprocess.run(cmd + ["--resume"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert labels(out) == pytest.approx(labels(tmp_path / "reference"))
    assert sorted(p.name for p in (out / "labels").glob("*.extxyz"))[:5] == made
    assert ref.labels == len(labels(out))


def test_failed_labels_are_reported_and_skipped(tmp_path, caplog):
    cfg = config(tmp_path, labeller={"calculator": "tests.integration.test_learn:FlakyEMT", "kwargs": {"fail_every": 3}},
                 stopping={"max_iterations": 2})
    FlakyEMT.calls = 0
    out = tmp_path / "run"
    with caplog.at_level("WARNING", logger="sus2md.active"):
        run(cfg, out)
    failed = {**json.loads((out / "initial" / "failed.json").read_text()),
              **json.loads((out / "iter_000" / "failed.json").read_text())}
    assert len(failed) == 2 and all("SCF did not converge" in why for why in failed.values())
    assert not set(failed) & set(labels(out))
    assert int(_csv(out / "log.csv")[0]["failed_labels"]) == 1  # iteration 0's label phase
    assert "failed and is skipped: tests.integration.test_learn:FlakyEMT raised RuntimeError" in caplog.text


def test_external_labelling_stops_and_resumes(tmp_path):
    from sus2md.active.learn import LabellingPending

    cfg = config(tmp_path, labeller={"external": True}, stopping={"max_iterations": 2})
    out = tmp_path / "run"
    with pytest.raises(LabellingPending, match="4 configurations to label in .*initial/to_label.extxyz"):
        run(cfg, out)
    request = ase.io.read(out / "initial" / "to_label.extxyz", ":")
    assert (out / "initial" / "to_label.cfg").is_file()
    with pytest.raises(LabellingPending):  # nothing labelled yet: the same request
        run(cfg, out, resume=True)
    for a in request:
        a.calc = EMT()
        a.get_potential_energy(), a.get_forces(), a.get_stress()
    ase.io.write(out / "initial" / "labelled.extxyz", request)
    with pytest.raises(LabellingPending, match="iter_000/to_label.extxyz"):  # trained, explored, selected
        run(cfg, out, resume=True)
    assert len(labels(out)) == 4


def test_converges_when_exploration_finds_nothing_new(tmp_path):
    res = run(config(tmp_path, grade={"select_gamma": 1e9, "break_gamma": 1e9}), tmp_path / "run")
    assert res.status == "converged" and res.iterations == 1 and res.labels == 4
    assert _csv(tmp_path / "run" / "log.csv")[-1]["converged"] == "True"


def test_bad_input(tmp_path):
    with pytest.raises(ConfigError, match="labeller.calculator: cannot import 'ase.calculators.nope:EMT'"):
        run(config(tmp_path, labeller={"calculator": "ase.calculators.nope:EMT"}), tmp_path / "a")
    with pytest.raises(ConfigError, match="labeller: give exactly one of calculator"):
        run(config(tmp_path, labeller={"calculator": "ase.calculators.emt:EMT", "external": True}), tmp_path / "b")
    with pytest.raises(ConfigError, match=r"labeller: tests.integration.test_learn:Unlicensed\(\*\*kwargs\) failed: "
                                          "RuntimeError: no license file found"):
        run(config(tmp_path, labeller={"calculator": "tests.integration.test_learn:Unlicensed"}), tmp_path / "c")
    with pytest.raises(UnknownSpeciesError, match="start.extxyz frame 0"):
        run(config(tmp_path, model={"L": 2, "K": 2, "R": 4, "cutoff_A": 4.0, "species": ["Ni", "Au"]}), tmp_path / "d")
    with pytest.raises(ConfigError, match="structures\\[0\\]: no file matches nothing\\*.xyz"):
        run(config(tmp_path, structures=["nothing*.xyz"]), tmp_path / "e")
    with pytest.raises(ConfigError, match="exploration.temperatures_K"):
        run(config(tmp_path, exploration={"temperatures_K": []}), tmp_path / "f")


def test_shipped_example_config_is_valid():
    """examples/learn_emt.yaml validates and its starting structures suit its model (the run itself
    is benchmarks/learn_emt.py)."""
    from sus2md.active.config import LearnConfig, learn_config_from_dict
    from sus2md.active.learn import _initial_structures

    path = ROOT / "examples" / "learn_emt.yaml"
    data = yaml.safe_load(path.read_text())
    data.pop("test")  # ../shared may be absent; the rest must resolve from a fresh clone
    cfg: LearnConfig = learn_config_from_dict(data, base=path.parent)
    frames = _initial_structures(cfg, list(cfg.model.species))
    assert len(frames) <= 20
    kinds = {a.info["config_type"] for a in frames}
    assert {"bulk_fcc_small", "surface_fcc100", "surface_fcc111", "vacancy"} <= kinds


def test_random_composition_redecorates_and_scales_by_vegard():
    from sus2md.active.learn import _atomic_volume, random_composition

    cu = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2)
    species = ["Al", "Ni", "Cu", "Pd", "Ag", "Pt", "Au"]
    seen = set()
    for seed in range(20):
        a = random_composition(cu, species, np.random.default_rng(seed))
        assert len(a) == len(cu) and set(a.get_chemical_symbols()) <= set(species)
        seen |= set(a.get_chemical_symbols())
        ratio = np.mean([_atomic_volume(s) for s in a.get_chemical_symbols()]) / _atomic_volume("Cu")
        assert a.get_volume() == pytest.approx(cu.get_volume() * ratio, rel=1e-12)
        assert np.allclose(a.get_scaled_positions(), cu.get_scaled_positions())  # same lattice, scaled
    assert seen == set(species)
    same = [random_composition(cu, species, np.random.default_rng(3)) for _ in range(2)]
    assert same[0].get_chemical_symbols() == same[1].get_chemical_symbols()  # seeded
    assert cu.get_chemical_formula() == "Cu32"  # the input is left alone
    assert _atomic_volume("Al") == pytest.approx(4.05 ** 3 / 4, rel=1e-3)  # fcc reference state


def test_exploration_with_random_composition(tmp_path):
    cfg = config(tmp_path, stopping={"max_iterations": 2})
    data = yaml.safe_load(cfg.read_text())
    data["exploration"]["random_composition"] = True
    cfg.write_text(yaml.safe_dump(data, sort_keys=False))
    res = run(cfg, tmp_path / "run")
    assert res.iterations == 2
    formulas = {ase.io.read(p).get_chemical_formula() for p in (tmp_path / "run" / "iter_000" / "explore").glob("*.extxyz")}
    starts = {a.get_chemical_formula() for a in ase.io.read(tmp_path / "start.extxyz", ":")}
    assert formulas - starts  # compositions the starting structures do not have
