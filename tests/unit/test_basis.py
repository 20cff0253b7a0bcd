"""The SUS2 moment-basis generator against the contract in ../shared/SPEC-basis.md.

Sources of the numbers below: the published models in ../shared/reference (entry-for-entry
comparison), SPEC-basis section 4 (counts), section 5 (numerical rank) and section 7 (test
vectors, taken from the authors' untrained l2k1/l3k1 files).
"""
from __future__ import annotations

import numpy as np
import pytest

from sus2md.errors import UsageError
from sus2md.train.basis import Basis, exps, make_basis, mult

ALL_BASES = [(2, 1), (2, 2), (2, 3), (2, 4), (3, 1), (3, 2), (3, 3), (3, 4)]


# ----------------------------------------------------------------------------- (a) published models

@pytest.mark.parametrize("name", ["alloy.mtp", "cu2se.mtp", "solid_electrolytes.mtp"])
def test_matches_published_model(shared, name):
    from sus2md.io.mtp import read_mtp

    m = read_mtp(shared("reference", name))
    L1 = m.L + 1
    assert m.radial_funcs_count % L1 == 0
    b = make_basis(m.L, m.radial_funcs_count // L1)
    np.testing.assert_array_equal(b.alpha_index_basic, m.alpha_index_basic)
    np.testing.assert_array_equal(b.alpha_index_times, m.alpha_index_times)
    np.testing.assert_array_equal(b.alpha_moment_mapping, m.alpha_moment_mapping)
    assert b.alpha_moments_count == m.alpha_moments_count


# ----------------------------------------------------------------------------- (b) counts, section 4

@pytest.mark.parametrize(
    "L, K, n_basic, n_times, n_scal, n_mom",
    [
        (2, 1, 10, 64, 14, 35),
        (2, 2, 20, 199, 62, 104),
        (2, 3, 30, 436, 175, 238),
        (2, 4, 40, 818, 396, 480),
        (3, 1, 20, 180, 23, 78),
        (3, 2, 40, 535, 109, 219),
        (3, 3, 60, 1129, 322, 487),
        (3, 4, 80, 2053, 753, 973),
    ],
)
def test_counts(L, K, n_basic, n_times, n_scal, n_mom):
    b = make_basis(L, K)
    assert (b.n_basic, b.n_times, b.n_scal, b.alpha_moments_count) == (n_basic, n_times, n_scal, n_mom)
    # Closed forms of section 4, so the table and the formulas agree with each other too.
    p, t = K * (K + 1) // 2, K * (K + 1) * (K + 2) // 6
    scal2 = K + t + 6 * p + 2 * K * p + 2 * p * p + 2 * K * K
    scal3 = scal2 + 3 * p + K * p + 2 * p * p + p * (p + 1) // 2 + 2 * K * K
    assert b.n_scal == (scal2 if L == 2 else scal3)
    n_gram = 2 if L == 2 else 3
    assert b.alpha_moments_count == b.n_basic + (b.n_scal - K) + 6 * K * n_gram + 18 * K * (L == 3)


def test_cross_gram_variant_counts_and_prefix():
    """SPEC-basis section 8: SUS2-SH untrained l3k3 = published l3k3 + 27 appended scalars."""
    plain, cross = make_basis(3, 3), make_basis(3, 3, cross_gram=True)
    assert (cross.alpha_moments_count, cross.n_scal, cross.n_times) == (514, 349, 1291)
    np.testing.assert_array_equal(cross.alpha_index_basic, plain.alpha_index_basic)
    np.testing.assert_array_equal(cross.alpha_index_times[: plain.n_times], plain.alpha_index_times)
    np.testing.assert_array_equal(cross.alpha_moment_mapping[: plain.n_scal], plain.alpha_moment_mapping)
    np.testing.assert_array_equal(cross.alpha_moment_mapping[plain.n_scal:], np.arange(487, 514))


# ----------------------------------------------------------------------------- (c), (d) test vectors

def _terms(b: Basis, o: int) -> list[tuple[int, int, int]]:
    t = b.alpha_index_times
    return [tuple(int(x) for x in row[:3]) for row in t[t[:, 3] == o]]


def _dot_terms(x: list[int], y: list[int], m: list[int]) -> list[tuple[int, int, int]]:
    return list(zip(x, y, m))


M2 = [1, 2, 2, 1, 2, 1]

L2K1_TERMS = {
    10: [(0, 0, 1)],
    11: [(0, 10, 1)],
    12: [(1, 1, 1), (2, 2, 1), (3, 3, 1)],
    13: _dot_terms([4, 5, 6, 7, 8, 9], [4, 5, 6, 7, 8, 9], M2),
    14: [(0, 12, 1)],
    15: [(0, 13, 1)],
    16: [(12, 12, 1)],
    17: [(12, 13, 1)],
    18: [(13, 13, 1)],
    19: [(1, 1, 1)], 20: [(1, 2, 1)], 21: [(1, 3, 1)], 22: [(2, 2, 1)], 23: [(2, 3, 1)], 24: [(3, 3, 1)],
    25: _dot_terms([4, 5, 6, 7, 8, 9], list(range(19, 25)), M2),
    26: _dot_terms(list(range(19, 25)), list(range(19, 25)), M2),
    27: [(4, 4, 1), (5, 5, 1), (6, 6, 1)],
    28: [(4, 5, 1), (5, 7, 1), (6, 8, 1)],
    29: [(4, 6, 1), (5, 8, 1), (6, 9, 1)],
    30: [(5, 5, 1), (7, 7, 1), (8, 8, 1)],
    31: [(5, 6, 1), (7, 8, 1), (8, 9, 1)],
    32: [(6, 6, 1), (8, 8, 1), (9, 9, 1)],
    33: _dot_terms([4, 5, 6, 7, 8, 9], list(range(27, 33)), M2),
    34: _dot_terms(list(range(27, 33)), list(range(27, 33)), M2),
}


def test_l2k1_test_vectors():
    b = make_basis(2, 1)
    assert b.alpha_moments_count == 35
    for o, terms in L2K1_TERMS.items():
        assert _terms(b, o) == terms, f"slot {o}"
    # Slot by slot, in order: together with the count this pins the whole times list.
    assert [int(o) for o in b.alpha_index_times[:, 3]] == [o for o, ts in L2K1_TERMS.items() for _ in ts]
    assert b.alpha_moment_mapping.tolist() == [0, *range(10, 19), 25, 26, 33, 34]
    basic = [(0, 0, 0, 0), (1, 1, 0, 0), (1, 0, 1, 0), (1, 0, 0, 1)] + [(2, *e) for e in exps(2)]
    assert [tuple(r) for r in b.alpha_index_basic.tolist()] == basic


def test_l3k1_rank3_test_vectors():
    b = make_basis(3, 1)
    assert b.alpha_moments_count == 78
    assert [m for _, _, m in _terms(b, 29)] == [1, 3, 3, 3, 6, 3, 1, 3, 3, 1]  # P3
    v_slots = [(i, c) for i in (1, 2, 3) for c in range(4, 10)]  # V = v (x) A, axis outer
    assert [_terms(b, o) for o in range(30, 48)] == [[(i, c, 1)] for i, c in v_slots]
    wv = _terms(b, 48)
    assert wv[:8] == [(10, 30, 1), (11, 31, 2), (12, 32, 2), (13, 33, 1), (14, 34, 2), (15, 35, 1), (11, 36, 1), (13, 37, 2)]
    assert len(wv) == 18 and wv[-1] == (19, 47, 1)
    assert _terms(b, 51) == [(10, 11, 1), (11, 13, 2), (12, 14, 2), (13, 16, 1), (14, 17, 2), (15, 18, 1)]
    scal = set(b.alpha_moment_mapping.tolist())
    assert {48, 49, 56, 57, 58, 59, 60, 61} <= scal
    assert not scal & set(range(30, 48)) and not scal & set(range(50, 56))  # V and G3 components


def test_exps_and_mult():
    assert exps(1) == [(1, 0, 0), (0, 1, 0), (0, 0, 1)]
    assert [mult(e) for e in exps(2)] == M2
    assert [mult(e) for e in exps(3)] == [1, 3, 3, 3, 6, 3, 1, 3, 3, 1]


# ----------------------------------------------------------------------------- (e) structure

@pytest.mark.parametrize("L, K, cross", [(L, K, False) for L, K in ALL_BASES] + [(3, 3, True)])
def test_topological_order_and_operand_order(L, K, cross):
    b = make_basis(L, K, cross_gram=cross)
    t = b.alpha_index_times
    assert np.all(t[:, 0] <= t[:, 1])
    assert np.all(t[:, 2] >= 1)
    # Every slot is finished (its last write) before its first read, and outputs are contiguous.
    last_write = {int(o): i for i, o in enumerate(t[:, 3])}
    first_read: dict[int, int] = {}
    for i, (i0, i1) in enumerate(t[:, :2].tolist()):
        first_read.setdefault(i0, i)
        first_read.setdefault(i1, i)
    assert all(first_read[s] > last_write[s] for s in first_read if s in last_write)
    assert all(s < b.n_basic or s in last_write for s in first_read)
    outs = t[:, 3]
    assert np.all(np.diff(outs) >= 0) and np.all(np.diff(outs) <= 1)
    assert outs[0] == b.n_basic and outs[-1] == b.alpha_moments_count - 1
    # Mapping: ascending, unique, every rank-0 basic moment first.
    mp = b.alpha_moment_mapping
    assert np.all(np.diff(mp) > 0)
    assert mp[:K].tolist() == [k * (L + 1) * (L + 2) * (L + 3) // 6 for k in range(K)]


def test_basis_is_frozen_and_comparable():
    b = make_basis(2, 2)
    assert b == make_basis(2, 2) and b != make_basis(2, 3)
    with pytest.raises(ValueError):
        b.alpha_index_times[0, 0] = 5
    with pytest.raises(AttributeError):
        b.alpha_moments_count = 3  # type: ignore[misc]
    assert b.alpha_index_basic.dtype == np.int64 and b.alpha_index_times.shape == (199, 4)


# ----------------------------------------------------------------------------- (f) invariance and rank

def _evaluate(b: Basis, u: np.ndarray, R: np.ndarray) -> np.ndarray:
    """Scalars of ``b`` on neighbourhoods: u (n, nb, 3) unit vectors, R (n, nb, n_mu) radial values.

    Returns (n, n_scal), evaluated through the times list exactly as the engines do.
    """
    basic = b.alpha_index_basic
    mom = np.zeros((u.shape[0], b.alpha_moments_count))
    powers = u[..., None, :] ** basic[None, None, :, 1:]  # (n, nb, n_basic, 3)
    mom[:, : b.n_basic] = np.einsum("njb,njb->nb", R[:, :, basic[:, 0]], powers.prod(-1))
    for i0, i1, m, o in b.alpha_index_times.tolist():
        mom[:, o] += m * mom[:, i0] * mom[:, i1]
    return mom[:, b.alpha_moment_mapping]


def _random_neighbourhoods(rng: np.random.Generator, n: int, n_mu: int, nb: int = 9):
    u = rng.normal(size=(n, nb, 3))
    u /= np.linalg.norm(u, axis=-1, keepdims=True)
    R = rng.uniform(-1.0, 1.0, size=(n, nb, n_mu))  # independent per mu: generic radial channels
    return u, R


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


# n_scal minus the exact duplicates of section 5 (G:G_1 = P_1^2, and V:V = P_1 P_2 for L = 3).
RANKS = {(2, 1): 13, (2, 2): 59, (2, 3): 169, (3, 1): 21, (3, 2): 103, (3, 3): 310}


@pytest.mark.parametrize("L, K", list(RANKS))
def test_rotation_invariance_and_rank(L, K):
    rng = np.random.default_rng(1000 * L + K)
    b = make_basis(L, K)
    n = 2 * b.n_scal + 20
    u, R = _random_neighbourhoods(rng, n, K * (L + 1))
    X = _evaluate(b, u, R)
    X_rot = _evaluate(b, u @ _random_rotation(rng).T, R)
    scale = np.abs(X).max(axis=0)
    assert np.all(np.abs(X_rot - X) <= 1e-10 * scale)
    s = np.linalg.svd(X / np.linalg.norm(X, axis=0), compute_uv=False)
    rank = int(np.sum(s > 1e-9 * s[0]))
    assert rank == RANKS[L, K]
    # The drop is a true degeneracy, not a soft tail: a wide gap separates the two groups.
    assert s[rank - 1] > 1e-6 * s[0] and (rank == len(s) or s[rank] < 1e-12 * s[0])


def test_rank_deficit_is_the_documented_duplicates():
    """G:G_1(k,k') equals P_1(k,k')^2 (section 5); check it numerically for l2k1."""
    rng = np.random.default_rng(7)
    b = make_basis(2, 1)
    X = _evaluate(b, *_random_neighbourhoods(rng, 50, 3))
    col = {int(s): j for j, s in enumerate(b.alpha_moment_mapping)}
    np.testing.assert_allclose(X[:, col[26]], X[:, col[16]], rtol=1e-12)


# ----------------------------------------------------------------------------- (g) init_mtp

def test_init_mtp_round_trip(tmp_path):
    from sus2md.io.mtp import read_mtp, write_mtp
    from sus2md.train.init_model import init_mtp

    m = init_mtp(3, 2, ["Cu", "Se"], cutoff=6.5, min_dist=1.5, radial_basis_size=8, scaling_map="LK")
    assert not m.is_trained and m.moment_coeffs is None and m.radial_coeffs is None
    assert (m.species_count, m.radial_funcs_count, m.max_dist, m.species_names) == (2, 8, 6.5, ["Cu", "Se"])
    assert m.potential_name == "sus2mlip_l3k2"
    b = make_basis(3, 2)
    np.testing.assert_array_equal(m.alpha_index_times, b.alpha_index_times)
    path = tmp_path / "untrained.mtp"
    write_mtp(m, path)
    r = read_mtp(path)
    for key in ("L", "scaling", "scaling_map", "species_count", "potential_tag", "radial_basis_type", "min_dist",
                "max_dist", "radial_basis_size", "radial_funcs_count", "alpha_moments_count", "species_names"):
        assert getattr(r, key) == getattr(m, key), key
    for key in ("alpha_index_basic", "alpha_index_times", "alpha_moment_mapping"):
        np.testing.assert_array_equal(getattr(r, key), getattr(m, key))
    for key in ("shift_coeffs", "scal_coeffs", "radial_coeffs", "species_coeffs", "moment_coeffs"):
        assert getattr(r, key) is None, key
    assert r.potential_name.startswith(m.potential_name)  # the writer may append the species suffix


def test_init_mtp_defaults():
    from sus2md.train.init_model import init_mtp

    m = init_mtp(2, 3, ["Li"], cutoff=5.0)
    assert (m.scaling, m.scaling_map, m.min_dist, m.radial_basis_size) == (0.01, "K", 0.0, 8)
    assert (m.alpha_moments_count, len(m.alpha_moment_mapping), m.radial_funcs_count) == (238, 175, 9)
    m.alpha_index_times[0, 0] = 0  # the model record owns writable copies


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"species": ["Xx"]}, "species: not element"),
        ({"species": ["X"]}, "species: not element"),
        ({"species": ["cu"]}, "species: not element"),
        ({"species": []}, "species: at least one"),
        ({"species": "Cu"}, "species: expected a list"),
        ({"species": ["Cu", "Se", "Cu"]}, "species: each element may appear once, repeated: Cu"),
        ({"cutoff": 0.0}, "cutoff: must be"),
        ({"cutoff": float("nan")}, "cutoff: must be"),
        ({"min_dist": 7.0}, "min_dist: must satisfy"),
        ({"min_dist": -1.0}, "min_dist: must satisfy"),
        ({"radial_basis_size": 0}, "radial_basis_size: must be an integer"),
        ({"radial_basis_size": 2.5}, "radial_basis_size: must be an integer"),
        ({"scaling_map": "KL"}, "scaling_map: must be one of K, L, LK"),
        ({"scaling": -0.1}, "scaling: must be a finite number > 0"),
        ({"potential_name": "my model"}, "potential_name: must be a non-empty word"),
        ({"L": 4}, "L: the SUS2-MLIP basis is defined for L = 2 or 3"),
        ({"K": 0}, "K: the number of radial channels"),
    ],
)
def test_init_mtp_rejects_bad_input(kwargs, match):
    from sus2md.train.init_model import init_mtp

    args = {"L": 2, "K": 2, "species": ["Cu", "Se"], "cutoff": 6.0, **kwargs}
    with pytest.raises(UsageError, match=match):
        init_mtp(**args)


# ----------------------------------------------------------------------------- (h) bad L / K

@pytest.mark.parametrize("L", [0, 1, 4, 2.0, True, "2", None])
def test_bad_L(L):
    with pytest.raises(UsageError, match=r"L: the SUS2-MLIP basis is defined for L = 2 or 3, got"):
        make_basis(L, 2)


@pytest.mark.parametrize("K", [0, -1, 1.5, True, "3"])
def test_bad_K(K):
    with pytest.raises(UsageError, match=r"K: the number of radial channels must be an integer >= 1, got"):
        make_basis(2, K)


def test_cross_gram_needs_L3():
    with pytest.raises(UsageError, match=r"cross_gram: .* only for L = 3"):
        make_basis(2, 2, cross_gram=True)


def test_numpy_integers_accepted():
    assert make_basis(np.int64(2), np.int32(2)) == make_basis(2, 2)
