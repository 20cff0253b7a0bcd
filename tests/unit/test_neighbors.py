"""The torch neighbor list against ase.neighborlist.neighbor_list (all periodic images)."""
import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from ase.neighborlist import neighbor_list as ase_nl

from sus2md.nn.neighbors import neighbor_list


def _ours(atoms, cutoff, fn=neighbor_list):
    i, j, s = fn(torch.tensor(atoms.positions), torch.tensor(atoms.cell.array), torch.tensor(atoms.pbc), cutoff)
    return i.numpy(), j.numpy(), s.numpy().round().astype(int)


def _as_set(i, j, s):
    return set(zip(i.tolist(), j.tolist(), map(tuple, s.tolist())))


def _compare(atoms, cutoff, fn=neighbor_list):
    ours = _as_set(*_ours(atoms, cutoff, fn))
    ai, aj, aS = ase_nl("ijS", atoms, cutoff, self_interaction=False)
    ref = _as_set(ai, aj, aS)
    assert len(ours) == len(_ours(atoms, cutoff, fn)[0])  # no duplicates
    assert ours == ref


def _rng_atoms(n, cell, pbc, seed=0, outside=False):
    rng = np.random.default_rng(seed)
    frac = rng.uniform(-1.5 if outside else 0, 2.5 if outside else 1, size=(n, 3))
    return Atoms("Cu" * n, scaled_positions=None, positions=frac @ np.asarray(cell), cell=cell, pbc=pbc)


CASES = {
    "thin-cubic": (bulk("Cu", "fcc", a=3.6, cubic=True), 6.0),
    "primitive-fcc": (bulk("Cu", "fcc", a=3.6), 6.5),
    "single-atom": (Atoms("Cu", positions=[[0, 0, 0]], cell=np.eye(3) * 2.5, pbc=True), 6.0),
    "triclinic": (_rng_atoms(7, [[4.0, 0, 0], [1.5, 3.5, 0], [-1.0, 0.7, 5.0]], True, 1), 6.0),
    "triclinic-unwrapped": (_rng_atoms(9, [[4.0, 0, 0], [1.5, 3.5, 0], [-1.0, 0.7, 5.0]], True, 2, outside=True), 5.0),
    "slab-mixed-pbc": (_rng_atoms(12, [[5.0, 0, 0], [0, 6.0, 0], [0, 0, 20.0]], [True, True, False], 3), 4.5),
    "wire-mixed-pbc": (_rng_atoms(8, [[3.0, 0, 0], [0, 9.0, 0], [0, 0, 9.0]], [True, False, False], 4), 4.5),
    "cluster": (_rng_atoms(15, [[8.0, 0, 0], [0, 8.0, 0], [0, 0, 8.0]], False, 5), 3.5),
    "large-binning": (bulk("Cu", "fcc", a=3.6, cubic=True).repeat((6, 6, 6)), 5.0),
    "large-triclinic": (_rng_atoms(600, [[20.0, 0, 0], [4.0, 19.0, 0], [-3.0, 2.0, 18.0]], True, 6, outside=True), 5.0),
}


@pytest.mark.parametrize("name", list(CASES))
def test_matches_ase(name):
    atoms, cutoff = CASES[name]
    a = atoms.copy()
    a.rattle(0.05, seed=1)
    _compare(a, cutoff)


def test_scripted_matches_ase():
    scripted = torch.jit.script(neighbor_list)
    atoms, cutoff = CASES["triclinic-unwrapped"]
    _compare(atoms, cutoff, fn=scripted)


def test_zero_cell_rows_mean_non_periodic():
    """A .cfg without a lattice row is non-periodic along it even if flagged periodic."""
    a = _rng_atoms(10, [[6.0, 0, 0], [0, 6.0, 0], [0, 0, 6.0]], False, 7)
    i, j, s = neighbor_list(torch.tensor(a.positions), torch.zeros(3, 3, dtype=torch.float64), torch.ones(3, dtype=torch.bool), 4.0)
    assert _as_set(i.numpy(), j.numpy(), s.numpy().astype(int)) == _as_set(*ase_nl("ijS", a, 4.0))


def test_chunking_gives_same_result():
    atoms, cutoff = CASES["large-binning"]
    t = lambda x: torch.tensor(x)
    full = neighbor_list(t(atoms.positions), t(atoms.cell.array), t(atoms.pbc), cutoff)
    chunked = neighbor_list(t(atoms.positions), t(atoms.cell.array), t(atoms.pbc), cutoff, max_candidates=5000)
    assert _as_set(full[0].numpy(), full[1].numpy(), full[2].numpy().astype(int)) == _as_set(
        chunked[0].numpy(), chunked[1].numpy(), chunked[2].numpy().astype(int))
