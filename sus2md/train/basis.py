"""The SUS2-MLIP v1.1 moment basis: ``make_basis(L, K)`` (contract: ``SPEC-basis.md``).

The basis is not selected by an MTP-style level cutoff.  It is a fixed template of
rotation-invariant families emitted in a fixed order, which reproduces the published
``alpha_*`` fields entry for entry.  With radial channels ``k = 0..K-1`` and ranks
``l = 0..L`` (``mu = k*(L+1) + l``), and ``M[k,l]`` the rank-l basic tensor:

* M0: ``M[k,0]``; F1: ``M_i M_j`` and ``M_i M_j M_k`` (rank-0 products);
* P_l: ``M[k,l] . M[k',l]`` (k <= k'), full contractions for l = 1..L;
* M0*P_l, P_l*P_l (unordered pairs), P_l*P_l' (l < l', all pairs);
* L = 3 only: P_3, ``W_k' : (v_k (x) A_k)`` and its square-type ``V:V``, the rank-3 Gram
  family and the rank-3 products;
* Gram families l = 1, 2: ``A_k' : G_l(k)`` and ``G_l(k) : G_l(k')`` with
  ``G_l(k) = M[k,l]`` contracted with itself over l-1 indices.

Each stored symmetric component of a rank-l tensor stands for ``l!/(a!b!c!)`` index
orderings; that count is the multiplicity ``m`` of a ``{i0, i1, m, o}`` times entry.
Derived slots are allocated consecutively in emission order, so the times list is
topologically ordered, and operands are always passed older-slot first (``i0 <= i1``).
The published bases contain exact duplicates (``G:G_1 = P_1^2``, ``V:V = P_1 P_2``);
they are kept, because ``moment_coeffs`` has one entry per scalar slot.
"""
from __future__ import annotations

from dataclasses import dataclass
from math import factorial

import numpy as np

from sus2md.errors import UsageError

__all__ = ["Basis", "make_basis", "exps", "mult"]

Exp = tuple[int, int, int]
Tensor = dict[object, int]  # component key (exponent, or (axis, exponent) for V) -> slot index

_AXES: tuple[Exp, ...] = ((1, 0, 0), (0, 1, 0), (0, 0, 1))


@dataclass(frozen=True, eq=False)
class Basis:
    """The four ``alpha_*`` arrays of a SUS2-MLIP moment basis (read-only int64 arrays).

    ``alpha_index_basic``: (n_basic, 4) rows ``{mu, a, b, c}``;
    ``alpha_index_times``: (n_times, 4) rows ``{i0, i1, m, o}``, in evaluation order;
    ``alpha_moment_mapping``: (n_scal,) scalar slots, ascending;
    ``alpha_moments_count``: total number of moment slots.
    """

    alpha_index_basic: np.ndarray
    alpha_index_times: np.ndarray
    alpha_moment_mapping: np.ndarray
    alpha_moments_count: int

    @property
    def n_basic(self) -> int:
        return int(self.alpha_index_basic.shape[0])

    @property
    def n_times(self) -> int:
        return int(self.alpha_index_times.shape[0])

    @property
    def n_scal(self) -> int:
        return int(self.alpha_moment_mapping.shape[0])

    def __eq__(self, other: object) -> bool:
        # The generated __eq__ would compare arrays elementwise and fail on truth value.
        if not isinstance(other, Basis):
            return NotImplemented
        return (
            self.alpha_moments_count == other.alpha_moments_count
            and np.array_equal(self.alpha_index_basic, other.alpha_index_basic)
            and np.array_equal(self.alpha_index_times, other.alpha_index_times)
            and np.array_equal(self.alpha_moment_mapping, other.alpha_moment_mapping)
        )

    __hash__ = None  # type: ignore[assignment]  # mutable-content arrays: not hashable


def exps(l: int) -> list[Exp]:
    """Exponent triples (a, b, c), a+b+c = l, ordered a descending then b descending."""
    return [(a, b, l - a - b) for a in range(l, -1, -1) for b in range(l - a, -1, -1)]


def mult(e: Exp) -> int:
    """Number of index orderings that the symmetric component ``e`` represents."""
    return factorial(sum(e)) // (factorial(e[0]) * factorial(e[1]) * factorial(e[2]))


def _add(e: Exp, f: Exp) -> Exp:
    return (e[0] + f[0], e[1] + f[1], e[2] + f[2])


def _split(ab: Exp) -> tuple[Exp, Exp]:
    """Split a rank-2 exponent into its first and second index, as unit exponents (a <= b)."""
    idx = [axis for axis in range(3) for _ in range(ab[axis])]
    return _AXES[idx[0]], _AXES[idx[1]]


class _Builder:
    """Accumulates slots and times entries while the template (SPEC-basis section 3) is emitted."""

    def __init__(self, L: int, K: int):
        self.L, self.K, self.L1 = L, K, L + 1
        self.basic = [(mu, *e) for mu in range(K * self.L1) for e in exps(mu % self.L1)]
        self._slot = {row: i for i, row in enumerate(self.basic)}
        self.n = len(self.basic)
        self.times: list[tuple[int, int, int, int]] = []
        self.scal = [self.s0(k) for k in range(K)]

    def B(self, k: int, l: int, e: Exp) -> int:
        return self._slot[(k * self.L1 + l, *e)]

    def s0(self, k: int) -> int:
        return self.B(k, 0, (0, 0, 0))

    def T(self, k: int, l: int) -> Tensor:
        return {e: self.B(k, l, e) for e in exps(l)}

    def emit(self, terms: list[tuple[int, int, int]], scalar: bool = True) -> int:
        o = self.n
        self.n += 1
        self.times += [(i0, i1, m, o) for i0, i1, m in terms]
        if scalar:
            self.scal.append(o)
        return o

    def dot(self, X: Tensor, Y: Tensor, r: int) -> int:
        return self.emit([(X[e], Y[e], mult(e)) for e in exps(r)])

    def pairs(self, l: int) -> list[int]:
        K = self.K
        return [self.dot(self.T(k, l), self.T(kk, l), l) for k in range(K) for kk in range(k, K)]

    def single(self, a: int, b: int) -> int:
        return self.emit([(a, b, 1)])


def _f1(b: _Builder) -> None:
    for i in range(b.K):
        for j in range(i, b.K):
            p = b.single(b.s0(i), b.s0(j))
            for k in range(j, b.K):
                b.single(b.s0(k), p)  # basic operand first: it is the older slot


def _m0_times(b: _Builder, P: list[int]) -> None:
    for k in range(b.K):
        for q in P:
            b.single(b.s0(k), q)


def _pairs_within(b: _Builder, P: list[int]) -> None:
    for ia, a in enumerate(P):
        for c in P[ia:]:
            b.single(a, c)


def _pairs_across(b: _Builder, Pa: list[int], Pb: list[int]) -> None:
    for a in Pa:
        for c in Pb:
            b.single(a, c)


def _gram(b: _Builder, l: int) -> list[Tensor]:
    """GRAM(l): build G_l(k), emit A_k' : G_l(k) for all k', then G_l(k) : G_l(k') for k <= k'."""
    G: list[Tensor] = []
    for k in range(b.K):
        g: Tensor = {}
        for ab in exps(2):
            ea, eb = _split(ab)
            terms = [(b.B(k, l, _add(ea, J)), b.B(k, l, _add(eb, J)), mult(J)) for J in exps(l - 1)]
            g[ab] = b.emit(terms, scalar=False)
        for kk in range(b.K):
            b.dot(b.T(kk, 2), g, 2)
        G.append(g)
    for k in range(b.K):
        for kk in range(k, b.K):
            b.dot(G[k], G[kk], 2)
    return G


def _wv_block(b: _Builder) -> None:
    """VA: V(k) = v_k (x) A_k (18 slots, axis outer), W_k' : V(k) for all k', then V:V."""
    V: list[Tensor] = []
    for k in range(b.K):
        v = {(i, c): b.emit([(b.B(k, 1, i), b.B(k, 2, c), 1)], scalar=False) for i in _AXES for c in exps(2)}
        for kk in range(b.K):
            # m counts only the orderings of the A block; the axis index i is explicit.
            b.emit([(b.B(kk, 3, _add(i, c)), v[i, c], mult(c)) for i in _AXES for c in exps(2)])
        V.append(v)
    for k in range(b.K):
        for kk in range(k, b.K):
            b.emit([(V[k][i, c], V[kk][i, c], mult(c)) for i in _AXES for c in exps(2)])


def _rank3_block(b: _Builder, P1: list[int], P2: list[int]) -> list[Tensor]:
    """The L = 3 material, inserted between P x P and GRAM(1): P3, VA, G3, products with P3."""
    P3 = b.pairs(3)
    _wv_block(b)
    G3 = _gram(b, 3)
    _pairs_across(b, P1 + P2, P3)
    _pairs_within(b, P3)
    _m0_times(b, P3)
    return G3


def _cross_gram(b: _Builder, G: dict[int, list[Tensor]]) -> None:
    """SUS2-SH variant (SPEC-basis section 8): G_l1(k) : G_l2(k'), k outer, all (k, k')."""
    for l1, l2 in ((1, 2), (3, 2), (3, 1)):
        for k in range(b.K):
            for kk in range(b.K):
                b.dot(G[l1][k], G[l2][kk], 2)


def _validate(L: int, K: int, cross_gram: bool) -> None:
    if isinstance(L, bool) or not isinstance(L, (int, np.integer)) or L not in (2, 3):
        raise UsageError(f"L: the SUS2-MLIP basis is defined for L = 2 or 3, got {L!r}")
    if isinstance(K, bool) or not isinstance(K, (int, np.integer)) or K < 1:
        raise UsageError(f"K: the number of radial channels must be an integer >= 1, got {K!r}")
    if cross_gram and L != 3:
        raise UsageError(f"cross_gram: the cross-rank Gram variant is defined only for L = 3, got L = {L}")


def make_basis(L: int, K: int, cross_gram: bool = False) -> Basis:
    """Generate the SUS2-MLIP v1.1 moment basis for tensor rank ``L`` (2 or 3) and ``K`` channels.

    With ``cross_gram=True`` (L = 3 only) the 3*K*K cross-rank Gram scalars of the SUS2-SH
    untrained ``l3k3.mtp`` are appended; no published trained model uses them.
    Raises :class:`UsageError` for an unsupported ``L`` or ``K``.
    """
    _validate(L, K, cross_gram)
    L, K = int(L), int(K)
    b = _Builder(L, K)
    _f1(b)
    P1, P2 = b.pairs(1), b.pairs(2)
    _m0_times(b, P1)
    _m0_times(b, P2)
    _pairs_within(b, P1)
    _pairs_across(b, P1, P2)
    _pairs_within(b, P2)
    G = {3: _rank3_block(b, P1, P2)} if L == 3 else {}
    G[1] = _gram(b, 1)
    G[2] = _gram(b, 2)
    if cross_gram:
        _cross_gram(b, G)
    return Basis(
        alpha_index_basic=_frozen(b.basic, (len(b.basic), 4)),
        alpha_index_times=_frozen(b.times, (len(b.times), 4)),
        alpha_moment_mapping=_frozen(sorted(b.scal), (len(b.scal),)),
        alpha_moments_count=b.n,
    )


def _frozen(rows: list, shape: tuple[int, ...]) -> np.ndarray:
    arr = np.asarray(rows, dtype=np.int64).reshape(shape)
    arr.setflags(write=False)  # the dataclass is frozen; keep its arrays so too
    return arr
