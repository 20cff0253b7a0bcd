"""Loss and exact linear least squares of the trainer (SPEC-sus2 8.1, 8.2)."""
import numpy as np
import pytest
import torch
from ase.calculators.singlepoint import SinglePointCalculator

from sus2md.io.data import load_frames
from sus2md.nn.calc import evaluate
from sus2md.nn.potential import SUS2Potential
from sus2md.train.dataset import make_batches
from sus2md.train.init_model import init_mtp
from sus2md.train.initialise import init_coefficients
from sus2md.train.explicit import descriptor_jacobian
from sus2md.train.linear import batch_rows, duplicate_moments, tie_duplicates, train_linear
from sus2md.train.loss import LossWeights, batch_loss
from tests.unit.train_helpers import DATA, SPECIES


@pytest.fixture(scope="module")
def setup():
    torch.set_num_threads(1)
    model = SUS2Potential(init_coefficients(init_mtp(2, 1, SPECIES, 4.2, radial_basis_size=5), seed=0))
    with torch.no_grad():
        model.radial.uniform_(-0.5, 0.5, generator=torch.Generator().manual_seed(1))
        model.scaling.fill_(0.5)
    frames = load_frames(DATA, species=SPECIES)[:10]
    return model, frames, make_batches(frames, model.cutoff, batch_atoms=40)


@pytest.mark.parametrize("per_atom", [False, True], ids=["energy_norm-total", "energy_norm-per_atom"])
def test_rows_reproduce_loss(setup, per_atom):
    """sum of squared weighted residuals of the design rows == the loss (same weights), also with
    species coefficients c_t != 1 (fine-tuning keeps them)."""
    model, _, batches = setup
    w = LossWeights(1.0, 0.01, 0.001, energy_per_atom=per_atom)
    with torch.no_grad():
        model.moment_coeffs.normal_(generator=torch.Generator().manual_seed(3))
        model.species_coeffs.copy_(torch.tensor([0.7, 1.3, 0.9], dtype=torch.float64))
    try:
        for b in batches:
            X, y = batch_rows(model, b, w)
            x = torch.cat([(model.shift + model.species_coeffs).detach(), model.moment_coeffs.detach()])
            res = ((X @ x - y) ** 2).sum()
            assert float(res) == pytest.approx(float(batch_loss(model, b, w, create_graph=False).detach()), rel=1e-9)
        before = sum(float(batch_loss(model, b, w, create_graph=False).detach()) for b in batches)
        train_linear(model, batches, w, normalize=False)
        after = sum(float(batch_loss(model, b, w, create_graph=False).detach()) for b in batches)
        assert after < before
        assert model.species_coeffs.tolist() == [0.7, 1.3, 0.9]
    finally:
        with torch.no_grad():
            model.species_coeffs.fill_(1.0)


def test_energy_norm_per_atom_weighs_every_configuration_alike(setup):
    """energy_norm total: sum_c (dE_c)^2 / N_c; per_atom: sum_c (dE_c / N_c)^2 (MACE's per-atom
    energy MSE), checked against the definition on configurations of different sizes."""
    model, frames, _ = setup
    smaller = frames[0].copy()
    del smaller[0]
    smaller.calc = SinglePointCalculator(smaller, energy=frames[0].get_potential_energy() * 0.9,
                                         forces=frames[0].get_forces()[1:])
    larger = frames[4].repeat((2, 1, 1))
    larger.calc = SinglePointCalculator(larger, energy=2 * frames[4].get_potential_energy(),
                                        forces=np.tile(frames[4].get_forces(), (2, 1)))
    b = make_batches([smaller, *frames[:3], larger], model.cutoff, batch_atoms=1000)[0]
    assert len(set(b.n_atoms.tolist())) == 3
    e = evaluate(model, b.graph, forces=False, virial=False, create_graph=False).energy.detach()
    de, n = e - b.energy, b.n_atoms.double()
    total = float(batch_loss(model, b, LossWeights(1.0, 0.0, 0.0), create_graph=False))
    per_atom = float(batch_loss(model, b, LossWeights(1.0, 0.0, 0.0, energy_per_atom=True), create_graph=False))
    assert total == pytest.approx(float((de**2 / n).sum()), rel=1e-10)
    assert per_atom == pytest.approx(float(((de / n) ** 2).sum()), rel=1e-10)
    assert per_atom != pytest.approx(total, rel=1e-3)


def test_energy_norm_reaches_the_loss_from_the_configuration(tmp_path):
    from tests.unit.train_helpers import tiny_config

    assert LossWeights.from_spec(tiny_config(tmp_path).loss) == LossWeights(1.0, 0.01, 0.001)
    cfg = tiny_config(tmp_path, loss__energy_norm="per_atom", loss__energy_weight=12.0)
    assert LossWeights.from_spec(cfg.loss) == LossWeights(12.0, 0.01, 0.001, energy_per_atom=True)


def test_linear_solve_is_least_squares(setup):
    model, _, batches = setup
    w = LossWeights(1.0, 0.01, 0.001)
    train_linear(model, batches, w)
    X = torch.cat([batch_rows(model, b, w)[0] for b in batches]).numpy()
    y = torch.cat([batch_rows(model, b, w)[1] for b in batches]).numpy()
    x_np = np.linalg.lstsq(X, y, rcond=None)[0]
    x = torch.cat([model.shift.detach() + 1.0, model.moment_coeffs.detach()]).numpy()
    assert np.allclose(model.species_coeffs.detach().numpy(), 1.0)
    # Compare fitted values and residuals (coefficients need not be unique in a tiny set).
    assert np.allclose(X @ x, X @ x_np, rtol=1e-6, atol=1e-6 * np.abs(y).max())
    assert np.sum((X @ x - y) ** 2) <= np.sum((X @ x_np - y) ** 2) * (1 + 1e-8)


def test_loss_skips_missing_labels(setup):
    model, frames, _ = setup
    w = LossWeights(1.0, 0.01, 0.001)
    stripped = []
    for k, a in enumerate(frames[:4]):
        b = a.copy()
        res = a.calc.results
        kw = {"energy": res["energy"]} if k % 2 else {"forces": res["forces"]}
        b.calc = SinglePointCalculator(b, **kw)
        stripped.append(b)
    full = make_batches(frames[:4], model.cutoff, batch_atoms=100)[0]
    part = make_batches(stripped, model.cutoff, batch_atoms=100)[0]
    assert part.virial_mask.sum() == 0 and part.energy_mask.tolist() == [0, 1, 0, 1]
    # The loss of the stripped set is the full loss with exactly the removed terms left out.
    def per_term(b, wE, wF, wS):
        return float(batch_loss(model, b, LossWeights(wE, wF, wS), create_graph=False).detach())
    e_part = per_term(full, 1, 0, 0)
    expected = 0.0
    for k in range(4):
        one = make_batches(frames[k:k + 1], model.cutoff)[0]
        expected += per_term(one, 1, 0, 0) if k % 2 else per_term(one, 0, 0.01, 0)
    assert per_term(part, 1, 0.01, 0.001) == pytest.approx(expected, rel=1e-10)
    assert e_part > 0
    train_linear(model, [part], w)  # missing rows are simply absent
    assert torch.isfinite(model.moment_coeffs).all()


@pytest.mark.parametrize("L,K,pairs", [(2, 1, 1), (2, 3, 6), (3, 3, 12)])
def test_duplicate_moments_are_exactly_the_equal_columns(setup, L, K, pairs):
    """The generated (published) bases hold scalar moments that are one polynomial reached twice;
    duplicate_moments finds exactly the columns of B that are equal on real structures."""
    _, frames, _ = setup
    model = SUS2Potential(init_coefficients(init_mtp(L, K, SPECIES, 4.2, radial_basis_size=5), seed=0)).double()
    with torch.no_grad():
        model.radial.uniform_(-0.5, 0.5, generator=torch.Generator().manual_seed(1))
    groups = duplicate_moments(model)
    assert len(groups) == pairs and all(len(g) == 2 for g in groups)
    B = torch.cat([descriptor_jacobian(model, b.graph)[0] for b in make_batches(frames, model.cutoff, batch_atoms=40)])
    B = B / B.abs().amax(0).clamp_min(1e-300)
    dup = {tuple(g.tolist()) for g in groups}
    n = B.shape[1]
    for a in range(n):
        gap = (B[:, a + 1:] - B[:, a:a + 1]).abs().amax(0)  # against every later column
        equal = {(a, a + 1 + int(k)) for k in torch.nonzero(gap < 1e-12).flatten()}
        assert equal == {d for d in dup if d[0] == a}
        assert bool((gap[[k - a - 1 for k in range(a + 1, n) if (a, k) not in dup]] > 1e-6).all())


def test_tying_duplicates_keeps_the_model_and_the_solve_ties_them(setup):
    model, frames, batches = setup
    groups = duplicate_moments(model)
    train_linear(model, batches, LossWeights(1.0, 0.01, 0.001))
    c = model.moment_coeffs.detach()
    assert all(bool((c[g] == c[g[0]]).all()) for g in groups)  # the solve leaves them tied
    base = [evaluate(model, b.graph, forces=True) for b in batches]
    with torch.no_grad():  # move along the null direction: +d on one member, -d on the other
        for g in groups:
            model.moment_coeffs[g[0]] += 40.0
            model.moment_coeffs[g[1]] -= 40.0
    moved = [evaluate(model, b.graph, forces=True) for b in batches]
    tie_duplicates(model.moment_coeffs, groups)
    tied = [evaluate(model, b.graph, forces=True) for b in batches]
    assert torch.equal(model.moment_coeffs.detach(), c)
    for r0, r1, r2 in zip(base, moved, tied):
        for r in (r1, r2):
            assert torch.allclose(r.energy, r0.energy, rtol=0, atol=1e-9)
            assert torch.allclose(r.forces, r0.forces, rtol=0, atol=1e-9)
