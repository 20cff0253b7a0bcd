"""The padded per-centre inference path (``compiled`` backend): same numbers as the edge-list path."""
import numpy as np
import pytest
import torch

from sus2md.export import OpenMMAdapter, PaddedAdapter
from sus2md.nn.neighbors import edge_vectors, neighbor_list

from .helpers import cluster, jiggled_frames, random_model, small_cell


@pytest.fixture(scope="module", params=[(2, 2, "K"), (3, 2, "LK"), (2, 3, "L")], ids=["l2k2-K", "l3k2-LK", "l2k3-L"])
def model(request):
    L, K, smap = request.param
    return random_model(L=L, K=K, scaling_map=smap)


def _padded(model, species, i, j, vec, extra_slots=3):
    """Edges (grouped by centre) laid out as (N, 3, J) with far-away padding slots."""
    n = species.shape[0]
    counts = torch.bincount(i, minlength=n)
    width = int(counts.max()) + extra_slots
    slot = torch.arange(i.shape[0]) - (torch.cumsum(counts, 0) - counts)[i]
    vp = torch.zeros((n, width, 3), dtype=vec.dtype)
    vp[:, :, 0] = model.cutoff + 1.0
    vp[i, slot] = vec
    tj = torch.zeros((n, width), dtype=torch.long)
    tj[i, slot] = species[j]
    return vp.transpose(1, 2).contiguous(), tj, slot


@pytest.mark.parametrize("skin", [0.0, 0.7])
def test_padded_gradients_equal_edge_list(model, skin):
    """Slots beyond r_c (padding, Verlet-skin pairs) contribute 0; the rest matches exactly."""
    atoms = small_cell(seed=9, triclinic=True, n_rep=(2, 1, 1))
    species = torch.tensor(atoms.arrays["mtp_type"])
    pos, cell = torch.tensor(atoms.positions), torch.tensor(atoms.cell.array)
    i, j, sh = neighbor_list(pos, cell, torch.ones(3, dtype=torch.bool), model.cutoff + skin)
    vec = edge_vectors(pos, cell, i, j, sh)
    vp, tj, slot = _padded(model, species, i, j, vec)
    inside = (vec * vec).sum(1) < model.cutoff ** 2
    with torch.no_grad():
        e_pad, d_pad = model.padded_energies_and_gradients(species, vp, tj)
        e_ref, d_ref = model.energies_and_edge_gradients(species, i[inside], j[inside], vec[inside])
    d_edges = d_pad.transpose(1, 2)[i, slot]
    scale = max(1.0, float(d_ref.abs().max()))
    assert torch.allclose(e_pad, e_ref, rtol=0, atol=1e-12 * max(1.0, float(e_ref.abs().max())))
    assert torch.allclose(d_edges[inside], d_ref, rtol=0, atol=1e-11 * scale)
    assert bool((d_edges[~inside] == 0).all())
    # padding slots: zero gradient too
    n_real = torch.bincount(i, minlength=species.shape[0])
    pad = torch.arange(vp.shape[2]).unsqueeze(0) >= n_real.unsqueeze(1)
    assert bool((d_pad.transpose(1, 2)[pad] == 0).all())


def test_padded_adapter_matches_scripted_adapter_along_a_trajectory():
    """Chunked padded Verlet list (rebuilds, several chunks) = TorchScript adapter with a fresh list."""
    model = random_model(L=3, K=2)
    atoms = small_cell(seed=3, n_rep=(2, 2, 2))
    species = torch.tensor(atoms.arrays["mtp_type"])
    padded = PaddedAdapter(model, skin_A=0.5, chunk_atoms=5)
    padded.set_species(species)
    ref = torch.jit.script(OpenMMAdapter(model, skin_A=0.0))
    ref.set_species(species)
    for p, box in jiggled_frames(atoms):  # rebuilds happen
        e1, f1 = padded(p, box)
        e2, f2 = ref(p, box)
        assert e1.dtype == torch.float64 and f1.dtype == p.dtype and f1.shape == p.shape
        assert torch.allclose(e1, e2, rtol=0, atol=1e-9) and torch.allclose(f1, f2, rtol=0, atol=1e-8)
    assert len(padded.chunks) == -(-len(atoms) // 5)
    assert 1 < padded.nl_builds < 12
    # a new box forces a rebuild; so does rebinding the species
    builds = padded.nl_builds
    padded(p, box * 1.01)
    assert padded.nl_builds == builds + 1
    padded.set_species(species)
    padded(p, box * 1.01)
    assert padded.nl_builds == builds + 2


def test_padded_adapter_cluster_and_float32():
    model = random_model()
    atoms = cluster(7, seed=2)
    species = torch.tensor(atoms.arrays["mtp_type"])
    ref = torch.jit.script(OpenMMAdapter(model))
    ref.set_species(species)
    p = torch.tensor(atoms.positions / 10.0)
    e_ref, f_ref = ref(p, None)
    for dtype, tol in ((torch.float64, 1e-10), (torch.float32, 1e-4)):
        ad = PaddedAdapter(random_model().to(dtype))
        ad.set_species(species)
        e, f = ad(p, None)
        scale = max(1.0, float(f_ref.abs().max()))
        assert abs(float(e - e_ref)) < tol * max(1.0, abs(float(e_ref)))
        assert float((f - f_ref).abs().max()) < tol * scale
    with pytest.raises(RuntimeError, match="species are bound for 7 particles"):
        ad(torch.zeros((3, 3), dtype=torch.float64), None)


@pytest.mark.parametrize("n_atoms", [1, 2, 9])
def test_padded_adapter_isolated_atoms(n_atoms):
    """Atoms without neighbours (and systems without any edge) give the scripted adapter's numbers."""
    model = random_model()
    rng = np.random.default_rng(n_atoms)
    pos = rng.uniform(0, 3.0, size=(n_atoms, 3))
    pos[0] += 40.0  # far from everything
    species = torch.tensor(rng.integers(0, 2, size=n_atoms))
    ref = torch.jit.script(OpenMMAdapter(model))
    ref.set_species(species)
    ad = PaddedAdapter(model, chunk_atoms=4)
    ad.set_species(species)
    p = torch.tensor(pos / 10.0)
    e_ref, f_ref = ref(p, None)
    e, f = ad(p, None)
    assert abs(float(e - e_ref)) < 1e-10 * max(1.0, abs(float(e_ref)))
    assert torch.allclose(f, f_ref, rtol=0, atol=1e-9)
    assert bool((f[0] == 0).all())
