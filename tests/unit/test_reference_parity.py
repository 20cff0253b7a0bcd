"""Parity with the published SUS2 models (../shared/reference/README.md numbers).

The reference values come from the authors' README (float64, exact radial evaluation); they are
cited, not generated here.
"""
import numpy as np
import pytest

from sus2md.io.data import load_frames
from sus2md.io.structures import read_structure
from sus2md.model import error_metrics, evaluate_frames, load_model

FIRST = [  # (E eV, F[atom 0] eV/Å) for configurations 0..4 of alloy_test.cfg
    (-92.02869579518, (0.27597222045, 0.85776817941, 0.03092888500)),
    (-65.30374860279, (1.7185343923, 2.2680257964, -0.0553340536)),
    (-38.91648591621, (-0.0893511618, -0.4269729616, 0.2552333518)),
    (-110.01811773939, (0.7945922547, 0.3652603308, -0.1813676691)),
    (-76.28097926918, (-0.2348527747, -0.2595470595, -0.0295912131)),
]


@pytest.fixture(scope="module")
def alloy(request):
    from tests.conftest import shared_path

    model = load_model(shared_path("reference", "alloy.mtp"))
    frames = load_frames(shared_path("reference", "alloy_test.cfg"))
    return frames, evaluate_frames(model, frames)


def test_alloy_aggregates(alloy):
    frames, preds = alloy
    m = error_metrics(frames, preds)
    assert m["n_configs"] == 2417 and m["n_atoms"] == 28991
    assert m["energy_rmse_meV_atom"] == pytest.approx(27.21, abs=0.005)
    assert m["energy_mae_meV_atom"] == pytest.approx(18.41, abs=0.005)
    assert m["force_rmse_eV_A"] == pytest.approx(0.2054, abs=5e-5)
    assert m["force_mae_eV_A"] == pytest.approx(0.1234, abs=5e-5)
    assert m["virial_rmse_eV"] == pytest.approx(2.16, abs=0.005)
    assert sum(p.energy for p in preds) == pytest.approx(-136400.3321917, abs=2e-6)


def test_alloy_first_configurations(alloy):
    _, preds = alloy
    for p, (e, f0) in zip(preds, FIRST):
        assert p.energy == pytest.approx(e, abs=1e-8)
        assert np.abs(p.forces[0] - np.array(f0)).max() < 1e-8


def test_alloy_config0_virial(alloy):
    _, preds = alloy
    w = preds[0].virial
    voigt = w[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]  # .cfg order xx yy zz yz xz xy
    ref = [17.290806733, 13.025836121, -0.607811926, 0.272992981, 2.155388460, 1.473199944]
    assert np.abs(voigt - ref).max() < 1e-8


def test_cu2se_1500_perfect_lattice(shared):
    model = load_model(shared("reference", "cu2se.mtp"), species=["Cu", "Se"])
    atoms = read_structure(shared("reference", "cu2se_1500.lammps-data"), species=["Cu", "Se"])
    from sus2md.io.data import species_index

    atoms.arrays["mtp_type"] = species_index(atoms, ["Cu", "Se"])
    (p,) = evaluate_frames(model, [atoms])
    assert p.energy == pytest.approx(-6168.227159458, abs=1e-7)
    assert np.abs(p.forces).max() < 1e-9
    assert np.abs(np.diag(p.virial) - (-799.257557)).max() < 1e-5
    assert np.abs(p.virial - np.diag(np.diag(p.virial))).max() < 1e-8
