"""The training force path (sus2md.train.fastpath) equals evaluate(): values, and parameter
gradients of a force/virial loss equal those of the double backward through autograd."""
import pytest
import torch

from sus2md.io.data import load_frames
from sus2md.nn.calc import evaluate
from sus2md.nn.potential import SUS2Potential
from sus2md.train import fastpath
from sus2md.train.dataset import make_batches
from sus2md.train.init_model import init_mtp
from sus2md.train.initialise import init_coefficients
from tests.unit.train_helpers import DATA, SPECIES


@pytest.fixture(scope="module", params=["float64", "float32"])
def setup(request):
    torch.manual_seed(0)
    mtp = init_coefficients(init_mtp(2, 2, SPECIES, 4.2, radial_basis_size=5), seed=3)
    mtp.radial_coeffs[:, :5] = torch.rand(mtp.radial_coeffs[:, :5].shape, dtype=torch.float64).numpy() - 0.5
    mtp.moment_coeffs = torch.randn(len(mtp.moment_coeffs), dtype=torch.float64).numpy()
    mtp.species_coeffs = 1.0 + 0.1 * torch.randn(len(SPECIES), dtype=torch.float64).numpy()
    dt = getattr(torch, request.param)
    model = SUS2Potential(mtp, dtype=dt)
    batch = make_batches(load_frames(DATA, species=SPECIES)[:6], model.cutoff, batch_atoms=1000, dtype=dt)[0]
    return model, batch, dt


def _loss(e, f, w, batch, weights):
    torch.manual_seed(1)
    return (weights[0] * e.square().sum() + weights[1] * (f * torch.randn_like(f)).square().sum()
            + weights[2] * (w * torch.randn_like(w)).sum())


def test_values_equal_evaluate(setup):
    model, batch, dt = setup
    ec = fastpath.edge_cache(model, batch.graph)
    e, f, w = fastpath.energy_forces_virial(model, ec, batch.graph.species)
    ref = evaluate(model, batch.graph, forces=True, virial=True)
    tol = 1e-10 if dt == torch.float64 else 2e-4
    scale = ref.forces.abs().max()
    assert torch.allclose(e.detach(), ref.energy.detach(), rtol=tol, atol=tol * float(ref.energy.detach().abs().max()))
    assert (f - ref.forces).abs().max() <= tol * scale
    assert (w - ref.virial).abs().max() <= tol * ref.virial.abs().max()
    assert ec.width >= int(torch.bincount(batch.graph.edge_i).max())


def test_buckets_cut_padding_and_change_nothing(setup):
    """Centres cut into many small buckets (each with its own width) give the same energies,
    forces, virials and parameter gradients as one bucket, with fewer padding slots."""
    model, batch, dt = setup
    params = [p for p in model.parameters()]
    for p in params:
        p.requires_grad_(True)
    one = fastpath.edge_cache(model, batch.graph, min_atoms=10 ** 9)
    many = fastpath.edge_cache(model, batch.graph, min_atoms=4, min_fill=0.97)
    assert len(one.buckets) == 1 and len(many.buckets) > 3
    assert many.slots < one.slots
    assert torch.equal(torch.sort(many.order).values, torch.arange(one.n_atoms))
    outs = [fastpath.energy_forces_virial(model, ec, batch.graph.species) for ec in (one, many)]
    tol = 1e-12 if dt == torch.float64 else 1e-5
    for a, b in zip(*outs):
        a, b = a.detach(), b.detach()
        assert (a - b).abs().max() <= tol * max(float(b.abs().max()), 1.0)
    grads = [torch.autograd.grad(_loss(*o, batch, (1.0, 0.3, 0.1)), params, allow_unused=True) for o in outs]
    for (name, _), a, b in zip(model.named_parameters(), *grads):
        if b is None:
            continue
        assert (a - b).abs().max() <= 10 * tol * max(float(b.abs().max()), 1e-12), name


@pytest.mark.parametrize("weights", [(0.0, 1.0, 0.0), (0.0, 0.0, 1.0), (1.0, 0.3, 0.1)])
def test_parameter_gradients_equal_double_backward(setup, weights):
    model, batch, dt = setup
    params = list(model.parameters())
    for p in params:
        p.requires_grad_(True)
    ec = fastpath.edge_cache(model, batch.graph)
    g_fast = torch.autograd.grad(_loss(*fastpath.energy_forces_virial(model, ec, batch.graph.species), batch, weights),
                                 params, allow_unused=True)
    ref = evaluate(model, batch.graph, forces=True, virial=True, create_graph=True)
    g_ref = torch.autograd.grad(_loss(ref.energy, ref.forces, ref.virial, batch, weights), params, allow_unused=True)
    tol = 1e-9 if dt == torch.float64 else 1e-3
    for (name, _), a, b in zip(model.named_parameters(), g_fast, g_ref):
        if b is None:
            assert a is None or a.abs().max() == 0, name
            continue
        assert (a - b).abs().max() <= tol * max(b.abs().max(), 1e-12), name


def test_cache_follows_the_model(setup):
    model, batch, dt = setup
    ec = fastpath.edge_cache(model, batch.graph)
    assert fastpath.matches(ec, model)
    other = SUS2Potential(init_coefficients(init_mtp(3, 1, SPECIES, 4.2, radial_basis_size=5), seed=0), dtype=dt)
    assert not fastpath.matches(ec, other)
