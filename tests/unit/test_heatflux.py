"""Per-atom centroid virials and the heat current (sus2md.engine.heatflux)."""
import numpy as np
import pytest
import torch

from sus2md.engine.heatflux import (
    AMU_A2_PER_PS2_TO_EV,
    edge_derivatives,
    heat_current,
    heat_current_from_state,
    per_atom_virials,
)
from sus2md.nn.calc import evaluate, graph_from_atoms

from .helpers import cluster, random_model, small_cell


@pytest.fixture(scope="module", params=[(2, 2, "K"), (3, 2, "LK")], ids=["l2k2", "l3k2"])
def model(request):
    L, K, smap = request.param
    return random_model(L=L, K=K, scaling_map=smap, seed=3)


def _velocities(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(scale=5.0, size=(n, 3))  # Å/ps, ~room temperature


def _site_energies(model, atoms) -> np.ndarray:
    with torch.no_grad():
        r = evaluate(model, graph_from_atoms([atoms], model.cutoff), forces=False, virial=False)
    return r.site_energies.numpy()


@pytest.mark.parametrize("atoms", [small_cell(seed=1), small_cell(seed=2, triclinic=True), cluster(7, seed=2)],
                         ids=["cubic", "triclinic", "cluster"])
def test_per_atom_virials_sum_to_total_virial(model, atoms):
    w_atoms = per_atom_virials(model, atoms)
    assert w_atoms.shape == (len(atoms), 3, 3)
    w = evaluate(model, graph_from_atoms([atoms], model.cutoff)).virial[0].detach().numpy()
    assert np.abs(w_atoms.sum(axis=0) - w).max() < 1e-10
    # the per-atom tensors themselves are not symmetric (that is the point of the centroid form)
    assert np.abs(w_atoms - w_atoms.transpose(0, 2, 1)).max() > 1e-6


def test_edge_derivatives_match_finite_differences(model):
    g = graph_from_atoms([small_cell(seed=3, triclinic=True)], model.cutoff)
    _, d, vec = edge_derivatives(model, g)
    h = 1e-6
    for e in range(0, vec.shape[0], max(1, vec.shape[0] // 7)):
        for a in range(3):
            es = []
            for s in (h, -h):
                v = vec.clone()
                v[e, a] += s
                with torch.no_grad():
                    es.append(float(model(g.species, g.edge_i, g.edge_j, v).sum()))
            assert abs((es[0] - es[1]) / (2 * h) - float(d[e, a])) < 1e-7 * max(1.0, float(d.abs().max()))


def _energy_dipole_rate(model, atoms, v: np.ndarray, h: float = 1e-5) -> np.ndarray:
    """d/dt sum_i r_i e_i by finite differences of the site energies along the velocities."""
    e_pot = _site_energies(model, atoms)
    kin = 0.5 * atoms.get_masses() * (v * v).sum(1) * AMU_A2_PER_PS2_TO_EV
    g = graph_from_atoms([atoms], model.cutoff)
    forces = evaluate(model, g).forces.detach().numpy()
    shifted = []
    for s in (h, -h):
        a = atoms.copy()
        a.positions = atoms.positions + s * v
        shifted.append(_site_energies(model, a))
    de_pot_dt = (shifted[0] - shifted[1]) / (2 * h)
    de_kin_dt = (forces * v).sum(1)  # m v . a = F . v
    return ((e_pot + kin)[:, None] * v).sum(0) + (atoms.positions * (de_pot_dt + de_kin_dt)[:, None]).sum(0)


def test_heat_current_is_the_energy_dipole_rate_of_a_cluster(model):
    atoms = cluster(8, seed=4)
    v = _velocities(len(atoms), seed=1)
    j = heat_current(model, atoms, v)
    expected = _energy_dipole_rate(model, atoms, v)
    assert np.abs(j - expected).max() < 1e-6 * max(1.0, np.abs(expected).max())
    # attributing each edge term to the centre atom instead (non-centroid) is measurably wrong
    g = graph_from_atoms([atoms], model.cutoff)
    _, d, vec = edge_derivatives(model, g)
    w_centre = torch.zeros((len(atoms), 3, 3), dtype=d.dtype).index_add(0, g.edge_i, -vec.unsqueeze(2) * d.unsqueeze(1))
    j_wrong = heat_current(model, atoms, v, convective=True) - np.einsum("iab,ib->a", per_atom_virials(model, atoms), v) \
        + np.einsum("iab,ib->a", w_centre.numpy(), v)
    assert np.abs(j_wrong - expected).max() > 1e-3 * np.abs(expected).max()


def test_heat_current_is_extensive_and_image_invariant(model):
    # a 4-atom cell thinner than 2 r_c: self-image edges contribute
    atoms = small_cell(seed=5, triclinic=True)
    v = _velocities(len(atoms), seed=2)
    j = heat_current(model, atoms, v)
    reps = (2, 1, 3)
    sc = atoms.repeat(reps)
    j_sc = heat_current(model, sc, np.tile(v, (int(np.prod(reps)), 1)))
    assert np.abs(j_sc - np.prod(reps) * j).max() < 1e-9 * max(1.0, np.abs(j_sc).max())
    wrapped = atoms.copy()
    wrapped.positions[0] += atoms.cell[1] - 2 * atoms.cell[2]
    assert np.abs(heat_current(model, wrapped, v) - j).max() < 1e-9 * max(1.0, np.abs(j).max())
    j_pot = heat_current(model, atoms, v, convective=False)
    assert np.abs(j_pot - np.einsum("iab,ib->a", per_atom_virials(model, atoms), v)).max() < 1e-12


def test_heat_current_defaults_to_atoms_velocities(model):
    from ase import units

    atoms = small_cell(seed=6)
    v = _velocities(len(atoms), seed=3)
    atoms.set_velocities(v / (1000.0 * units.fs))  # Å/ps -> ASE velocity units
    assert np.allclose(heat_current(model, atoms), heat_current(model, atoms, v), rtol=1e-12, atol=1e-12)


def test_heat_current_from_openmm_state_units(model):
    atoms = small_cell(seed=7, triclinic=True)
    v = _velocities(len(atoms), seed=4)
    j = heat_current(model, atoms, v)
    symbols = atoms.get_chemical_symbols()
    j_state = heat_current_from_state(model, symbols, atoms.positions / 10.0, v / 10.0, atoms.cell.array / 10.0)
    assert np.abs(j_state - j).max() < 1e-10 * max(1.0, np.abs(j).max())
    j_idx = heat_current_from_state(model, atoms.arrays["mtp_type"], atoms.positions / 10.0, v / 10.0,
                                    atoms.cell.array / 10.0, masses_amu=atoms.get_masses())
    assert np.abs(j_idx - j).max() < 1e-10 * max(1.0, np.abs(j).max())
    openmm = pytest.importorskip("openmm")
    u = openmm.unit
    j_q = heat_current_from_state(model, symbols, (atoms.positions / 10.0) * u.nanometer,
                                  (v / 10.0) * u.nanometer / u.picosecond, atoms.cell.array / 10.0)
    assert np.abs(j_q - j).max() < 1e-10 * max(1.0, np.abs(j).max())


def test_heat_current_errors(model):
    from sus2md.errors import UsageError

    atoms = small_cell(seed=8)
    with pytest.raises(UsageError, match=r"velocities must have shape \(4, 3\)"):
        heat_current(model, atoms, np.zeros((3, 3)))
    with pytest.raises(UsageError, match="not among the model's species"):
        heat_current_from_state(model, ["Cu", "S", "Cu", "Cu"], atoms.positions / 10, np.zeros((4, 3)), None)


def test_per_atom_virials_of_the_authors_cu2se_cell(shared):
    """Reference: ../shared/reference/README.md (perfect 1500-atom cell, virial diagonal -799.257557 eV)."""
    from sus2md.io.structures import read_structure
    from sus2md.model import load_model

    m = load_model(shared("reference", "cu2se.mtp"), species=["Cu", "Se"])
    atoms = read_structure(shared("reference", "cu2se_1500.lammps-data"), species=["Cu", "Se"])
    w = per_atom_virials(m, atoms).sum(axis=0)
    assert np.allclose(np.diag(w), -799.257557, atol=2e-6)
    assert np.abs(w - np.diag(np.diag(w))).max() < 1e-8
