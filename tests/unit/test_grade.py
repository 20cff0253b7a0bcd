"""Extrapolation grade: MaxVol active sets, save/load, select-add, the MD GradeMonitor, CLI."""
import logging

import numpy as np
import pytest

from sus2md.errors import SimulationError, UsageError
from sus2md.active.grade import (ActiveSet, GradeMonitor, _maxvol, basis_vectors, frame_max_gamma, grade,
                          model_sha256, select_configurations)
from sus2md.io.cfg import read_cfg, write_cfg
from sus2md.io.mtp import write_mtp
from tests.unit.helpers import random_model, small_cell


@pytest.fixture(scope="module")
def model():
    return random_model()


@pytest.fixture(scope="module")
def train():
    return [small_cell(seed=s, n_rep=(2, 2, 2), rattle=0.12) for s in range(10)]


@pytest.fixture(scope="module")
def aset(model, train):
    return ActiveSet.from_frames(model, train, tol=1e-6)


def squeezed(seed=50, factor=0.75):
    a = small_cell(seed=seed, n_rep=(2, 2, 2), rattle=0.12)
    a.set_cell(a.cell * factor, scale_atoms=True)
    return a


def test_training_atoms_grade_at_most_one_and_active_rows_exactly_one(model, train, aset):
    b, types, _ = basis_vectors(model, train)
    assert np.all(aset.gamma(b, types) <= 1 + 1e-6)
    for t, s in aset.sets.items():
        assert np.allclose(s.gamma(s.rows), 1.0, atol=1e-6)
    # l2k2 has 62 scalars with 3 exact duplicates (SPEC-basis 5): the numerical rank is 59
    assert aset.size() == {0: 59, 1: 59}


def test_far_out_configuration_extrapolates(model, aset):
    assert grade(model, aset, squeezed()).max() > 10
    assert grade(model, aset, small_cell(seed=77, n_rep=(2, 2, 2), rattle=0.08)).max() < 3


def test_maxvol_reaches_a_dominant_submatrix():
    rng = np.random.default_rng(0)
    Y = rng.normal(size=(300, 8)) * np.logspace(0, 2, 8)
    idx = _maxvol(Y, np.arange(8), tol=1e-6, max_iter=10000)
    C = np.linalg.solve(Y[idx].T, Y.T).T
    assert np.abs(C).max() <= 1 + 1e-6
    vol = abs(np.linalg.det(Y[idx]))
    assert all(abs(np.linalg.det(Y[rng.choice(300, 8, replace=False)])) <= vol for _ in range(200))


def test_few_atoms_give_a_reduced_span_and_new_directions_extrapolate(model):
    one = small_cell(seed=3)  # 4 atoms: far fewer than n_scal = 62
    s = ActiveSet.from_frames(model, [one])
    b, types, _ = basis_vectors(model, [one])
    assert all(n <= np.count_nonzero(types == t) for t, n in s.size().items())
    assert np.all(s.gamma(b, types) <= 1 + 1e-3)
    assert grade(model, s, small_cell(seed=4)).max() > 1


def test_species_without_training_atoms_grade_inf(model, train):
    only_type0 = [a[a.arrays["mtp_type"] == 0] for a in train[:3]]
    s = ActiveSet.from_frames(model, only_type0)
    g = grade(model, s, train[5])
    assert np.all(np.isinf(g[train[5].arrays["mtp_type"] == 1]))


def test_save_load_round_trip_and_model_mismatch(model, train, aset, tmp_path):
    aset.save(tmp_path / "a.npz")
    back = ActiveSet.load(tmp_path / "a.npz", model)
    cand = [squeezed(), train[0]]
    assert np.array_equal(frame_max_gamma(model, back, cand), frame_max_gamma(model, aset, cand))
    with pytest.raises(UsageError, match=r"a.npz was built for model sha256 [0-9a-f]{12}\.\.\., not this model"):
        ActiveSet.load(tmp_path / "a.npz", random_model(seed=1))
    (tmp_path / "junk.npz").write_text("not a zip")
    with pytest.raises(UsageError, match="junk.npz: not a sus2md active set"):
        ActiveSet.load(tmp_path / "junk.npz", model)
    with pytest.raises(UsageError, match="active set file not found"):
        ActiveSet.load(tmp_path / "missing.npz", model)


def test_select_takes_the_novel_configuration_first_and_not_its_twin(model, train, aset):
    cand = [small_cell(seed=60 + k, n_rep=(2, 2, 2), rattle=0.1) for k in range(3)]
    cand[1:1] = [squeezed(), squeezed()]  # indices 1 and 2: the same novel cell twice
    chosen = select_configurations(model, train, cand, threshold=2.0, max_new=5, active_set=aset)
    assert chosen[0] in (1, 2)
    assert not {1, 2} <= set(chosen)  # after adding one, its twin is interpolation
    assert select_configurations(model, train, cand, threshold=2.0, max_new=0, active_set=aset) == []


def test_monitor_warns_dumps_and_breaks(model, aset, tmp_path, caplog):
    far = squeezed()
    g = grade(model, aset, far).max()
    args = (far.arrays["mtp_type"], far.positions, far.cell.array, far.pbc)
    inside = small_cell(seed=77, n_rep=(2, 2, 2), rattle=0.08)
    mon = GradeMonitor(model, aset, warn_threshold=g / 2, break_threshold=2 * g, dump_path=tmp_path / "x.cfg")
    assert mon.check(inside.arrays["mtp_type"], inside.positions, inside.cell.array, inside.pbc, step=1) < g / 2
    assert not (tmp_path / "x.cfg").exists()
    with caplog.at_level(logging.WARNING, logger="sus2md.active.grade"):
        assert mon.check(*args, step=5) == pytest.approx(g)
        mon.check(*args, step=6)
    assert "step 5: extrapolation grade" in caplog.text
    dumped = read_cfg(tmp_path / "x.cfg", species=["Cu", "Se"])
    assert [a.info["step"] for a in dumped] == ["5", "6"] and np.allclose(dumped[0].positions, far.positions)
    stop = GradeMonitor(model, aset, warn_threshold=g / 4, break_threshold=g / 2)
    with pytest.raises(SimulationError, match=r"step 7: extrapolation grade .* at atom \d+ \((Cu|Se)\) exceeds"):
        stop.check(*args, step=7)
    with pytest.raises(UsageError, match="0 < warn <= break"):
        GradeMonitor(model, aset, warn_threshold=5, break_threshold=2)
    with pytest.raises(UsageError, match="another model"):
        GradeMonitor(random_model(seed=2), aset)


def test_model_hash_depends_on_parameters(model):
    assert model_sha256(model) == model_sha256(random_model())
    assert model_sha256(model) != model_sha256(random_model(seed=3))


def test_cli_grade_and_select(model, train, tmp_path):
    import typer
    from typer.testing import CliRunner

    from sus2md.commands.reliability import COMMANDS

    app = typer.Typer()
    for fn in COMMANDS:
        app.command(getattr(fn, "cli_name", fn.__name__))(fn)
    run = lambda *a: CliRunner().invoke(app, [str(x) for x in a])
    write_mtp(model.to_mtp(), tmp_path / "m.mtp")
    write_cfg(tmp_path / "train.cfg", train)
    write_cfg(tmp_path / "cand.cfg", [train[5], squeezed()])
    m, tr, ca = tmp_path / "m.mtp", tmp_path / "train.cfg", tmp_path / "cand.cfg"
    r = run("grade", m, tr, ca, "--active-set", tmp_path / "as.npz")
    assert r.exit_code == 0, r.output
    assert "1 of 2 configurations above 2" in r.output
    assert ActiveSet.load(tmp_path / "as.npz", model).size() == {0: 59, 1: 59}
    r = run("select", m, tr, ca, "-o", tmp_path / "new.cfg", "--max", 1)
    assert r.exit_code == 0, r.output
    assert "2 candidates, 1 with max grade > 2" in r.output and "selected 1 configurations" in r.output
    assert np.allclose(read_cfg(tmp_path / "new.cfg")[0].positions, squeezed().positions)
    r = run("select", m, tr, ca, "--threshold", -1)
    assert isinstance(r.exception, UsageError) and "--threshold must be > 0" in str(r.exception)
