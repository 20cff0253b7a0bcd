"""Physics of SUS2Potential: finite differences, invariances, supercells, cutoff, scripting, dtypes."""
import io

import numpy as np
import pytest
import torch

from sus2md import testing
from sus2md.nn.calc import evaluate, graph_from_atoms
from sus2md.nn.neighbors import neighbor_list

from .helpers import cluster, random_model, small_cell


@pytest.fixture(scope="module", params=[(2, 2, "K"), (3, 2, "LK"), (2, 3, "L")], ids=["l2k2-K", "l3k2-LK", "l2k3-L"])
def model(request):
    L, K, smap = request.param
    return random_model(L=L, K=K, scaling_map=smap)


@pytest.mark.parametrize("triclinic", [False, True])
def test_forces_match_central_differences(model, triclinic):
    atoms = small_cell(seed=1, triclinic=triclinic)
    scale = max(1.0, np.abs(testing.energy_forces_virial(model, atoms)[1]).max())
    assert testing.fd_force_error(model, atoms, h=1e-5) < 1e-7 * scale


def test_forces_cluster_non_periodic(model):
    atoms = cluster(6)
    scale = max(1.0, np.abs(testing.energy_forces_virial(model, atoms)[1]).max())
    assert testing.fd_force_error(model, atoms, h=1e-5) < 1e-7 * scale


@pytest.mark.parametrize("triclinic", [False, True])
def test_virial_matches_strain_derivative(model, triclinic):
    atoms = small_cell(seed=2, triclinic=triclinic)
    scale = max(1.0, np.abs(testing.energy_forces_virial(model, atoms)[2]).max())
    assert testing.fd_virial_error(model, atoms, h=1e-6) < 1e-7 * scale


def test_virial_symmetric_and_sums_like_forces(model):
    atoms = cluster(7, seed=3)
    e, f, w = testing.energy_forces_virial(model, atoms)
    assert np.abs(w - w.T).max() < 1e-10
    # for a finite cluster the virial equals sum_i r_i (x) F_i
    assert np.abs(w - atoms.positions.T @ f).max() < 1e-9
    assert np.abs(f.sum(0)).max() < 1e-10  # Newton's third law


@pytest.mark.parametrize("seed", [0, 1])
def test_invariances(model, seed):
    errs = testing.invariance_errors(model, small_cell(seed=seed, triclinic=bool(seed)), seed=seed)
    for k, v in errs.items():
        assert v < 1e-9, k


def test_supercell_consistency(model):
    # a 4-atom cell is thinner than 2 r_c: this checks the all-image neighbor list too
    assert testing.supercell_error(model, small_cell(seed=4), reps=(2, 2, 2)) < 1e-10
    assert testing.supercell_error(model, small_cell(seed=5, triclinic=True), reps=(1, 2, 3)) < 1e-10


def test_smooth_at_cutoff(model):
    """Energy and force are continuous as a neighbour crosses r_c; the force vanishes there."""
    rc = model.cutoff
    from ase import Atoms

    def ef(r):
        a = Atoms("Cu2", positions=[[0, 0, 0], [r, 0, 0]], pbc=False)
        a.arrays["mtp_type"] = np.array([0, 1])
        e, f, _ = testing.energy_forces_virial(model, a)
        return e, f[1, 0]

    e_in, f_in = ef(rc - 1e-6)
    e_out, f_out = ef(rc + 1e-6)
    assert abs(e_in - e_out) < 1e-9
    assert abs(f_in) < 1e-5 and f_out == 0.0
    # edges listed beyond r_c (Verlet skin) contribute nothing
    e_far, _ = ef(rc + 0.5)
    assert e_far == pytest.approx(e_out, abs=0)


def test_batched_equals_individual(model):
    frames = [small_cell(seed=s, n_rep=(1, 1, 1 + s % 2)) for s in range(4)] + [cluster(5)]
    g = graph_from_atoms(frames, model.cutoff)
    r = evaluate(model, g)
    off = 0
    for k, a in enumerate(frames):
        e, f, w = testing.energy_forces_virial(model, a)
        assert float(r.energy[k].detach()) == pytest.approx(e, abs=1e-10)
        assert np.abs(r.forces[off:off + len(a)].detach().numpy() - f).max() < 1e-10
        assert np.abs(r.virial[k].detach().numpy() - w).max() < 1e-10
        off += len(a)


def _edges(model, atoms):
    pos = torch.tensor(atoms.positions)
    cell = torch.tensor(atoms.cell.array)
    i, j, s = neighbor_list(pos, cell, torch.tensor(atoms.pbc), model.cutoff)
    vec = pos[j] - pos[i] + s @ cell
    return torch.tensor(atoms.arrays["mtp_type"]), i, j, vec


def test_eager_script_saved_reloaded_agree(model):
    args = _edges(model, small_cell(seed=6))
    e_eager = model(*args)
    scripted = torch.jit.script(model)
    buf = io.BytesIO()
    torch.jit.save(scripted, buf)
    buf.seek(0)
    reloaded = torch.jit.load(buf)
    assert torch.equal(e_eager, scripted(*args))
    assert torch.equal(e_eager, reloaded(*args))


def test_float32_close_to_float64(model):
    atoms = small_cell(seed=7, n_rep=(2, 2, 2))
    e64, f64, w64 = testing.energy_forces_virial(model, atoms)
    m32 = random_model(L=model.L, K=model.n_mu // (model.L + 1), scaling_map=model.scaling_map).to(torch.float32)
    e32, f32, w32 = testing.energy_forces_virial(m32, atoms)
    # stated float32 tolerance: 1e-6 relative in energy, 1e-4 of the force scale
    assert abs(e32 - e64) <= 1e-6 * max(1.0, abs(e64)) * len(atoms)
    assert np.abs(f32 - f64).max() <= 1e-4 * max(1.0, np.abs(f64).max())


def test_mtp_round_trip_through_model(model, tmp_path):
    from sus2md.io.mtp import read_mtp, write_mtp
    from sus2md.nn.potential import SUS2Potential

    write_mtp(model.to_mtp(), tmp_path / "m.mtp")
    m2 = SUS2Potential(read_mtp(tmp_path / "m.mtp"))
    atoms = small_cell(seed=8)
    assert testing.energy_forces_virial(m2, atoms)[0] == testing.energy_forces_virial(model, atoms)[0]
    assert m2.species_names == ["Cu", "Se"]


@pytest.mark.parametrize("shuffle", [False, True])
def test_analytic_edge_gradients_equal_autograd(model, shuffle):
    species, i, j, vec = _edges(model, small_cell(seed=9, triclinic=True))
    if shuffle:  # edges not grouped by centre atom
        p = torch.randperm(i.shape[0], generator=torch.Generator().manual_seed(0))
        i, j, vec = i[p], j[p], vec[p]
    v = vec.clone().requires_grad_(True)
    e_auto = model(species, i, j, v)
    (d_auto,) = torch.autograd.grad(e_auto.sum(), v)
    e_an, d_an = model.energies_and_edge_gradients(species, i, j, vec)
    assert torch.allclose(e_an, e_auto.detach(), rtol=0, atol=1e-12 * max(1.0, float(e_auto.abs().max())))
    assert torch.allclose(d_an, d_auto, rtol=0, atol=1e-10 * max(1.0, float(d_auto.abs().max())))
    scripted = torch.jit.script(model)
    e_s, d_s = scripted.energies_and_edge_gradients(species, i, j, vec)
    assert torch.equal(e_s, e_an) and torch.equal(d_s, d_an)


def test_evaluate_analytic_equals_autograd(model):
    g = graph_from_atoms([small_cell(seed=s) for s in range(3)] + [cluster(5)], model.cutoff)
    a = evaluate(model, g)
    b = evaluate(model, g, analytic=True)
    assert torch.allclose(a.energy.detach(), b.energy, atol=1e-10)
    assert torch.allclose(a.forces, b.forces, atol=1e-9 * max(1.0, float(a.forces.abs().max())))
    assert torch.allclose(a.virial, b.virial, atol=1e-9 * max(1.0, float(a.virial.abs().max())))
