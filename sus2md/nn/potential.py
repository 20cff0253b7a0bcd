r"""The SUS2-MLIP v1.1 potential as a TorchScript-clean ``torch.nn.Module`` (SPEC-sus2 sections 1-6).

For atom i of species t_i with neighbours j (all periodic images, r_ij < r_c)::

    E_i   = shift[t_i] + c[t_i] + c[t_i] * sum_a w_a B_i[map[a]]
    M_i[b] = sum_j R_{mu_b}(r_ij) u_x^a u_y^b u_z^c                      (basic moments)
    Mom[o] += m Mom[i0] Mom[i1]   for (i0, i1, m, o) in alpha_index_times  (derived moments)
    R_mu(r) = s w[t_i] w[t_j] sum_n C[mu, n] (r - r_c)^2 T_n(tanh(alpha_k (r - r0_k) / 2))

with (alpha_k, r0_k) = scal[block(mu)][t_i][t_j] (ordered pair), w the per-species values of
radial row 0 only, and s the global ``scaling``.  Forces and the virial come from autograd with
respect to the edge vectors ``r_e``: ``F_i += dE/dr_e``, ``F_j -= dE/dr_e``,
``W = -sum_e dE/dr_e (x) r_e`` (eV, the ``.cfg`` PlusStress convention).

The contraction graph (~1000 entries) is evaluated level by level: slots are renumbered so that
the outputs of each dependency level are contiguous, and each level is one gather-multiply-
scatter over all its entries.  The graph is only ~5 levels deep.
"""


from typing import List, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from sus2md.io.mtp import MTPFile


def _levels(n_basic: int, n_mom: int, times: np.ndarray) -> Tuple[np.ndarray, List[np.ndarray]]:
    """Dependency level of every slot and the times-entries grouped by the level of their output."""
    level = np.zeros(n_mom, dtype=np.int64)
    for i0, i1, _, o in times:  # file order is topological (SPEC 4.2)
        level[o] = max(level[o], 1 + max(level[i0], level[i1]))
    groups = [np.nonzero(level[times[:, 3]] == lv)[0] for lv in range(1, int(level.max(initial=0)) + 1)]
    return level, groups


class SUS2Potential(torch.nn.Module):
    """SUS2 v1.1 moment-tensor potential (energies in eV, lengths in Å).

    Build with :meth:`from_mtp`; export with :meth:`to_mtp`.  ``forward`` maps a (batched) graph
    of atoms and directed edges to per-atom energies; :func:`sus2md.nn.calc.evaluate` adds the
    neighbor list, forces and virial.
    """

    species_names: List[str]
    mono_parent: List[int]
    mono_axis: List[int]
    mono_dterms: List[Tuple[int, int, int, float]]
    mu_block: List[int]

    def __init__(self, mtp: MTPFile, dtype: torch.dtype = torch.float64):
        super().__init__()
        if not mtp.is_trained:
            mtp = _with_default_coefficients(mtp)
        S, R, n_mu, L1 = mtp.species_count, mtp.radial_basis_size, mtp.radial_funcs_count, mtp.L + 1
        nb = mtp.n_blocks
        self.n_species = S
        self.L = mtp.L
        self.radial_basis_size = R
        self.n_mu = n_mu
        self.n_blocks = nb
        self.cutoff = float(mtp.max_dist)
        self.min_dist = float(mtp.min_dist)
        self.scaling_map = mtp.scaling_map
        self.radial_basis_type = mtp.radial_basis_type
        self.potential_name = mtp.potential_name
        self.species_names = list(mtp.species_names) if mtp.species_names else []
        # contiguous: a slice such as radial_coeffs[:, :R] would otherwise keep the row stride R + S
        f = lambda a: torch.nn.Parameter(torch.as_tensor(np.ascontiguousarray(a, dtype=np.float64)).to(dtype))
        scal = np.asarray(mtp.scal_coeffs).reshape(nb, 2, S, S)
        self.shift = f(mtp.shift_coeffs)
        self.alpha = f(scal[:, 0])  # (nb, S, S): [block][t_i][t_j]
        self.r0 = f(scal[:, 1])
        self.radial = f(mtp.radial_coeffs[:, :R])  # (n_mu, R) shared Chebyshev coefficients
        self.species_weight = f(mtp.radial_coeffs[0, R:])  # (S,) row 0 only (SPEC 2.3)
        self.register_buffer("radial_dead", torch.as_tensor(mtp.radial_coeffs[1:, R:].copy()))
        self.scaling = f(np.array(mtp.scaling))
        self.species_coeffs = f(mtp.species_coeffs)
        self.moment_coeffs = f(mtp.moment_coeffs)

        mu = np.arange(n_mu)
        block = {"K": mu // L1, "L": mu % L1, "LK": mu}[mtp.scaling_map]
        # Dense (nb*R, n_mu) map from per-block Chebyshev terms to radial functions.
        self.register_buffer("cheb_row", torch.as_tensor((block[:, None] * R + np.arange(R)[None, :]).reshape(-1)))
        self.register_buffer("cheb_col", torch.as_tensor(np.repeat(mu, R)))
        basic = np.asarray(mtp.alpha_index_basic, dtype=np.int64)
        # All monomials u_x^a u_y^b u_z^c with a+b+c <= L; each basic moment is one
        # (radial function, monomial) entry of the per-atom matrix sum_j R(r_j) (x) mono(u_j).
        monos = [(a, b, l - a - b) for l in range(mtp.L + 1) for a in range(l, -1, -1) for b in range(l - a, -1, -1)]
        mono_index = {e: k for k, e in enumerate(monos)}
        self.n_mono = len(monos)
        self.register_buffer("mono_exp", torch.as_tensor(np.array(monos, dtype=np.int64)))
        # d mono_m / d u_d = a_d(m) * mono_{m - e_d}: a (n_mono, 3*n_mono) matrix P so that
        # dE/du_d = sum_k mono_k (g_mono @ P)[d*n_mono + k]
        deriv = np.zeros((len(monos), 3 * len(monos)))
        for m_idx, ex in enumerate(monos):
            for d in range(3):
                if ex[d] > 0:
                    low = list(ex)
                    low[d] -= 1
                    deriv[m_idx, d * len(monos) + mono_index[tuple(low)]] = ex[d]
        self.register_buffer("mono_deriv", torch.as_tensor(deriv))
        self.register_buffer(
            "basic_flat", torch.as_tensor(np.array([mu * len(monos) + mono_index[(a, b, c)] for mu, a, b, c in basic], dtype=np.int64))
        )
        self._set_graph(mtp)
        self._set_padded_tables(monos, mono_index, block)
        self._mtp_template = mtp  # basis arrays and header for to_mtp (not scripted)

    # ------------------------------------------------------------------ graph setup
    def _set_graph(self, mtp: MTPFile) -> None:
        n_basic, n_mom = len(mtp.alpha_index_basic), mtp.alpha_moments_count
        times = np.asarray(mtp.alpha_index_times, dtype=np.int64)
        level, groups = _levels(n_basic, n_mom, times)
        # New slot numbering: basic slots first, then each level's outputs contiguously.
        new_id = np.full(n_mom, -1, dtype=np.int64)
        new_id[:n_basic] = np.arange(n_basic)
        nxt = n_basic
        level_slot_counts: List[int] = []
        entry_order = []
        for g in groups:
            outs = list(dict.fromkeys(times[g, 3].tolist()))  # first-appearance order
            new_id[outs] = np.arange(nxt, nxt + len(outs))
            level_slot_counts.append(len(outs))
            nxt += len(outs)
            entry_order.append(g)
        order = np.concatenate(entry_order) if entry_order else np.zeros(0, dtype=np.int64)
        t = times[order]
        unused = new_id < 0  # slots never written stay zero; give them ids after the last level
        new_id[unused] = np.arange(nxt, nxt + int(unused.sum()))
        self.n_unused_slots = int(unused.sum())
        self.register_buffer("t_i0", torch.as_tensor(new_id[t[:, 0]]))
        self.register_buffer("t_i1", torch.as_tensor(new_id[t[:, 1]]))
        self.register_buffer("t_m", torch.as_tensor(t[:, 2].astype(np.float64)))
        starts = np.cumsum([0] + level_slot_counts)
        out_local = np.empty(len(t), dtype=np.int64)
        pos = 0
        for lv, g in enumerate(entry_order):
            out_local[pos:pos + len(g)] = new_id[times[g, 3]] - n_basic - starts[lv]
            pos += len(g)
        self.register_buffer("t_out", torch.as_tensor(out_local))
        self.level_entry_counts: List[int] = [len(g) for g in entry_order]
        self.level_slot_counts: List[int] = level_slot_counts
        self.register_buffer("mapping", torch.as_tensor(new_id[np.asarray(mtp.alpha_moment_mapping)]))

    def _set_padded_tables(self, monos: List[Tuple[int, int, int]], mono_index: dict, block: np.ndarray) -> None:
        """Static tables of :meth:`padded_energies_and_gradients` (Python lists, unrolled by
        ``torch.compile``; non-persistent buffers, so ``state_dict`` is unchanged)."""
        # mono_k = mono_parent[k] * u[axis[k]] (k > 0): one product per monomial
        self.mono_parent = [0]
        self.mono_axis = [0]
        for ex in monos[1:]:
            d = next(a for a in range(3) if ex[a] > 0)
            low = list(ex)
            low[d] -= 1
            self.mono_parent.append(mono_index[tuple(low)])
            self.mono_axis.append(d)
        # d mono_k / d u_d = ex_d(k) mono_{k - e_d}: terms (d, k, k - e_d, ex_d)
        self.mono_dterms = []
        for d in range(3):
            for k, ex in enumerate(monos):
                if ex[d] > 0:
                    low = list(ex)
                    low[d] -= 1
                    self.mono_dterms.append((d, k, mono_index[tuple(low)], float(ex[d])))
        self.mu_block = [int(b) for b in block]
        n_basic = int(self.basic_flat.shape[0])
        n_full = self.n_mu * self.n_mono
        # basic moments = basic_sel @ (flattened per-atom moment matrix): a GEMM gives a contiguous
        # (n_basic, N) block; basic_inv_t scatters dE/dbasic back to the (mono, mu) matrix (index
        # n_basic = a zero row for entries that are not basic moments)
        sel = np.zeros((n_basic, n_full))
        sel[np.arange(n_basic), self.basic_flat.numpy()] = 1.0
        self.register_buffer("basic_sel", torch.as_tensor(sel), persistent=False)
        inv = np.full(n_full, n_basic, dtype=np.int64)
        inv[self.basic_flat.numpy()] = np.arange(n_basic)
        self.register_buffer("basic_inv_t", torch.as_tensor(inv.reshape(self.n_mu, self.n_mono).T.reshape(-1).copy()), persistent=False)

    @classmethod
    def from_mtp(cls, mtp: "MTPFile | str", dtype: torch.dtype = torch.float64, species: Optional[List[str]] = None) -> "SUS2Potential":
        """Model from an :class:`MTPFile` or a path; ``species`` attaches element names."""
        if not isinstance(mtp, MTPFile):
            from sus2md.io.mtp import read_mtp

            mtp = read_mtp(mtp)
        if species is not None:
            from sus2md.errors import UsageError

            if len(species) != mtp.species_count:
                raise UsageError(
                    f"{len(species)} species names given ({', '.join(species)}) but the model has species_count = {mtp.species_count}"
                )
            mtp = mtp.copy()
            mtp.species_names = list(species)
        return cls(mtp, dtype=dtype)

    def to_mtp(self) -> MTPFile:
        """The current parameters as an :class:`MTPFile` (float64, exact round trip)."""
        m = self._mtp_template.copy()
        g = lambda p: p.detach().cpu().double().numpy().copy()
        m.shift_coeffs = g(self.shift)
        m.scal_coeffs = np.stack([g(self.alpha), g(self.r0)], axis=1).reshape(-1)
        rc = np.empty((self.n_mu, self.radial_basis_size + self.n_species))
        rc[:, : self.radial_basis_size] = g(self.radial)
        rc[0, self.radial_basis_size:] = g(self.species_weight)
        rc[1:, self.radial_basis_size:] = self.radial_dead.detach().cpu().double().numpy()
        m.radial_coeffs = rc
        m.scaling = float(self.scaling.detach())
        m.species_coeffs = g(self.species_coeffs)
        m.moment_coeffs = g(self.moment_coeffs)
        m.species_names = list(self.species_names) if self.species_names else None
        return m

    # ------------------------------------------------------------------ evaluation
    def radial_functions(self, r: Tensor, ti: Tensor, tj: Tensor) -> Tensor:
        """R_mu(r; t_i, t_j) for every edge, (E, n_mu); zero beyond the cutoff."""
        return self._radial(r, ti, tj, False)[0]

    def _radial(self, r: Tensor, ti: Tensor, tj: Tensor, derivative: bool) -> Tuple[Tensor, Tensor]:
        """R_mu (E, n_mu) and, if asked, dR_mu/dr (SPEC 3.2: T_n' recurrence, dxi/dr = a/2 (1-xi^2))."""
        S = self.n_species
        nbr = self.n_blocks * self.radial_basis_size
        pair = ti * S + tj
        alpha = self.alpha.reshape(self.n_blocks, S * S).index_select(1, pair).t()  # (E, nb)
        r0 = self.r0.reshape(self.n_blocks, S * S).index_select(1, pair).t()
        xi = torch.tanh(0.5 * alpha * (r.unsqueeze(1) - r0))
        cheb = [torch.ones_like(xi), xi]
        for _ in range(2, self.radial_basis_size):
            cheb.append(2.0 * xi * cheb[-1] - cheb[-2])
        T = torch.stack(cheb[: self.radial_basis_size], dim=2).reshape(xi.shape[0], nbr)  # (E, nb*R)
        inside = r < self.cutoff
        fc = torch.where(inside, (r - self.cutoff) ** 2, torch.zeros_like(r))
        cmat = torch.zeros((nbr, self.n_mu), dtype=self.radial.dtype, device=self.radial.device).index_put(
            (self.cheb_row, self.cheb_col), self.radial.reshape(-1)
        )
        w = self.species_weight
        pref = self.scaling * w.index_select(0, ti) * w.index_select(0, tj)
        tc = T @ cmat  # (E, n_mu) contracted Chebyshev terms, shared by R and dR/dr
        rad = tc * (pref * fc).unsqueeze(1)
        if not derivative:
            return rad, rad
        dcheb = [torch.zeros_like(xi), torch.ones_like(xi)]
        for n in range(2, self.radial_basis_size):
            dcheb.append(2.0 * cheb[n - 1] + 2.0 * xi * dcheb[-1] - dcheb[-2])
        dxi = 0.5 * alpha * (1.0 - xi * xi)
        dT = (torch.stack(dcheb[: self.radial_basis_size], dim=2) * dxi.unsqueeze(2)).reshape(xi.shape[0], nbr)
        dfc = torch.where(inside, 2.0 * (r - self.cutoff), torch.zeros_like(r))
        drad = (tc * dfc.unsqueeze(1) + (dT @ cmat) * fc.unsqueeze(1)) * pref.unsqueeze(1)
        return rad, drad

    def _pad(self, species: Tensor, edge_i: Tensor, edge_j: Tensor, edge_vec: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor, int]:
        """Dense per-centre layout (N*max_nb, ...): padded vectors, t_i, t_j, slot of each edge,
        the sorting permutation used (empty if edges were already grouped by centre), max_nb."""
        n = species.shape[0]
        n_edges = edge_i.shape[0]
        order = torch.zeros(0, dtype=torch.long, device=edge_i.device)
        if n_edges > 1 and not bool((edge_i[1:] >= edge_i[:-1]).all()):
            order = torch.argsort(edge_i, stable=True)
            edge_i = edge_i.index_select(0, order)
            edge_j = edge_j.index_select(0, order)
            edge_vec = edge_vec.index_select(0, order)
        counts = torch.bincount(edge_i, minlength=n)
        max_nb = int(counts.max()) if n_edges > 0 else 1
        first = torch.cumsum(counts, 0) - counts
        flat = edge_i * max_nb + (torch.arange(n_edges, device=edge_i.device) - first.index_select(0, edge_i))
        far = torch.zeros((n * max_nb, 3), dtype=edge_vec.dtype, device=edge_vec.device)
        far[:, 0] = self.cutoff + 1.0  # padding: beyond the cutoff, contributes exactly 0
        vec = far.index_put((flat,), edge_vec)
        tj = torch.zeros(n * max_nb, dtype=species.dtype, device=species.device).index_put((flat,), species.index_select(0, edge_j))
        ti = species.repeat_interleave(max_nb)
        return vec, ti, tj, flat, order, max_nb

    def _monomials(self, u: Tensor) -> Tensor:
        """u_x^a u_y^b u_z^c for every (a,b,c) with a+b+c <= L, (E, n_mono)."""
        powers = [torch.ones_like(u)]
        for _ in range(self.L):
            powers.append(powers[-1] * u)
        pw = torch.stack(powers, dim=2)
        e = self.mono_exp
        mono = pw[:, 0, :].index_select(1, e[:, 0]) * pw[:, 1, :].index_select(1, e[:, 1]) * pw[:, 2, :].index_select(1, e[:, 2])
        return mono

    def _contract_rows(self, mom: Tensor) -> Tensor:
        """All moment slots (n_mom, N) from the basic ones (n_basic, N), moments as rows (N
        contiguous): one gather-multiply-scatter per level of the contraction graph."""
        n = mom.shape[1]
        e0 = 0
        for n_entries, n_slots in zip(self.level_entry_counts, self.level_slot_counts):
            i0 = self.t_i0[e0:e0 + n_entries]
            i1 = self.t_i1[e0:e0 + n_entries]
            prod = mom.index_select(0, i0) * mom.index_select(0, i1) * self.t_m[e0:e0 + n_entries].to(mom.dtype).unsqueeze(1)
            out = torch.zeros((n_slots, n), dtype=mom.dtype, device=mom.device).index_add(0, self.t_out[e0:e0 + n_entries], prod)
            mom = torch.cat([mom, out], dim=0)
            e0 += n_entries
        if self.n_unused_slots > 0:
            mom = torch.cat([mom, torch.zeros((self.n_unused_slots, n), dtype=mom.dtype, device=mom.device)], dim=0)
        return mom

    def _reverse_rows(self, mom: Tensor, G: Tensor) -> Tensor:
        """Reverse pass through the contraction graph, moments as rows: from G = dE/dMom seeded
        on the scalar moments, level by level G[i0] += G[o] m Mom[i1], G[i1] += G[o] m Mom[i0];
        rows 0..n_basic-1 of the result are dE/d(basic moments)."""
        slot_end = int(self.basic_flat.shape[0]) + sum(self.level_slot_counts)
        e_end = self.t_i0.shape[0]
        for lv in range(len(self.level_entry_counts) - 1, -1, -1):
            slot_end -= self.level_slot_counts[lv]
            e_start = e_end - self.level_entry_counts[lv]
            i0 = self.t_i0[e_start:e_end]
            i1 = self.t_i1[e_start:e_end]
            g_out = G.index_select(0, self.t_out[e_start:e_end] + slot_end) * self.t_m[e_start:e_end].to(G.dtype).unsqueeze(1)
            G = G.index_add(0, i0, g_out * mom.index_select(0, i1)).index_add(0, i1, g_out * mom.index_select(0, i0))
            e_end = e_start
        return G

    def _contract(self, mom: Tensor) -> Tensor:
        """All moment slots (N, n_mom) from the basic ones (N, n_basic)."""
        return self._contract_rows(mom.t()).t()

    @torch.jit.export
    def descriptors(self, species: Tensor, edge_i: Tensor, edge_j: Tensor, edge_vec: Tensor) -> Tensor:
        """Scalar basis functions B_i, (N, n_scal) (before the ``c[t_i]`` factor).

        Edges are laid out densely per centre atom, (N, max_neighbors), so the basic moments are
        one batched matrix product sum_j R_mu(r_ij) mono(u_ij) instead of a scatter over
        (edges x basic moments); padding slots hold a vector beyond the cutoff and contribute 0.
        """
        n = species.shape[0]
        vec, ti, tj, flat, order, max_nb = self._pad(species, edge_i, edge_j, edge_vec)
        r = torch.sqrt((vec * vec).sum(dim=1))
        rad = self.radial_functions(r, ti, tj).reshape(n, max_nb, self.n_mu)
        mono = self._monomials(vec / r.unsqueeze(1))
        full = torch.bmm(rad.transpose(1, 2), mono.reshape(n, max_nb, self.n_mono))  # (N, n_mu, n_mono)
        mom = full.reshape(n, self.n_mu * self.n_mono).index_select(1, self.basic_flat)
        return self._contract(mom).index_select(1, self.mapping)

    def forward(self, species: Tensor, edge_i: Tensor, edge_j: Tensor, edge_vec: Tensor) -> Tensor:
        """Per-atom energies E_i (N,), eV.

        Args:
            species: (N,) int64 species indices of the model.
            edge_i, edge_j: (E,) int64 centre and neighbour atom of each directed edge.
            edge_vec: (E, 3) r_j + T - r_i, Å (0 < |r| < r_c; edges beyond r_c contribute 0).
        """
        B = self.descriptors(species, edge_i, edge_j, edge_vec)
        c = self.species_coeffs.index_select(0, species)
        return self.shift.index_select(0, species) + c + c * (B @ self.moment_coeffs)

    @torch.jit.export
    def energies_and_edge_gradients(
        self, species: Tensor, edge_i: Tensor, edge_j: Tensor, edge_vec: Tensor
    ) -> Tuple[Tensor, Tensor]:
        """Per-atom energies (N,) eV and d_e = dE/dr_e (E, 3) eV/Å, analytically (SPEC 6.2).

        No autograd: the reverse pass through the contraction graph runs level by level
        (G[i0] += G[o] m Mom[i1], G[i1] += G[o] m Mom[i0]), then
        d_e = sum_b G_b d(R_mu u^abc)/dr_e with the chain rule through r and u.
        Used for inference (MD, evaluation); training differentiates ``forward`` instead.
        """
        n = species.shape[0]
        vec, ti, tj, flat, order, max_nb = self._pad(species, edge_i, edge_j, edge_vec)
        r = torch.sqrt((vec * vec).sum(dim=1))
        u = vec / r.unsqueeze(1)
        rad, drad = self._radial(r, ti, tj, True)
        mono = self._monomials(u)
        rad3 = rad.reshape(n, max_nb, self.n_mu)
        mono3 = mono.reshape(n, max_nb, self.n_mono)
        full = torch.bmm(rad3.transpose(1, 2), mono3)
        basic = full.reshape(n, self.n_mu * self.n_mono).index_select(1, self.basic_flat)
        mom = self._contract_rows(basic.t())  # (n_mom, N)
        c = self.species_coeffs.index_select(0, species)
        # (N, n_scal) row-major as in ``forward``: the same matrix-vector kernel, so float32 site
        # energies are bitwise those of the autograd path
        e_site = self.shift.index_select(0, species) + c + c * (mom.index_select(0, self.mapping).t().contiguous() @ self.moment_coeffs)
        # reverse pass: G = dE_i/dMom_i
        G = self._reverse_rows(mom, torch.zeros_like(mom).index_add(0, self.mapping, self.moment_coeffs.unsqueeze(1) * c.unsqueeze(0)))
        n_basic = basic.shape[1]
        g_full = torch.zeros((n, self.n_mu * self.n_mono), dtype=G.dtype, device=G.device).index_add(
            1, self.basic_flat, G[:n_basic].t()
        ).reshape(n, self.n_mu, self.n_mono)
        g_rad = torch.bmm(mono3, g_full.transpose(1, 2)).reshape(n * max_nb, self.n_mu)  # dE/dR_mu per edge
        # dE/du per edge through the monomial derivative matrix (one small matmul, no loops)
        g_mono_d = torch.bmm(rad3, g_full @ self.mono_deriv.to(g_full.dtype)).reshape(n * max_nb, 3, self.n_mono)
        de_du = (g_mono_d * mono.unsqueeze(1)).sum(dim=2)
        de_dr = (g_rad * drad).sum(dim=1)
        radial_part = (de_du * u).sum(dim=1, keepdim=True)
        d_pad = de_dr.unsqueeze(1) * u + (de_du - radial_part * u) / r.unsqueeze(1)
        d = d_pad.index_select(0, flat)
        if order.shape[0] > 0:
            d = torch.zeros_like(d).index_copy(0, order, d)
        return e_site, d

    # ------------------------------------------------------------------ padded inference path
    def padded_energies_and_gradients(self, species: Tensor, vec: Tensor, tj: Tensor) -> Tuple[Tensor, Tensor]:
        """Per-atom energies (N,) eV and dE/dr (N, 3, J) eV/Å of edges laid out per centre atom.

        Args:
            species: (N,) int64 species of the centre atoms.
            vec: (N, 3, J) edge vectors r_j + T - r_i (Å) of the J neighbour slots of every centre;
                a slot with |r| >= r_c (padding, or a Verlet-list pair outside the cutoff)
                contributes exactly 0 and gets a zero gradient.  |r| must not be 0.
            tj: (N, J) int64 species of the neighbour in each slot.

        The mathematics of :meth:`energies_and_edge_gradients`, arranged for ``torch.compile``:
        neighbour slots are the contiguous (vectorised) axis of every per-edge quantity, static
        loops (Chebyshev terms, monomials, their derivatives) unroll into fused kernels, the
        contraction graph runs with moments as rows (N contiguous), and the three per-atom
        products over the neighbours are batched matrix products.
        """
        n = vec.shape[0]
        dt = vec.dtype
        S = self.n_species
        R = self.radial_basis_size
        r = torch.sqrt((vec * vec).sum(1))  # (N, J)
        u = vec / r.unsqueeze(1)
        ti = species.unsqueeze(1)
        pair = ti * S + tj
        inside = r < self.cutoff
        fc = torch.where(inside, (r - self.cutoff) * (r - self.cutoff), torch.zeros_like(r))
        dfc = torch.where(inside, 2.0 * (r - self.cutoff), torch.zeros_like(r))
        w = self.species_weight
        pref = self.scaling * w.index_select(0, species).unsqueeze(1) * w[tj]
        alpha = self.alpha.reshape(self.n_blocks, S * S)
        r0 = self.r0.reshape(self.n_blocks, S * S)
        cheb: List[List[Tensor]] = []
        dcheb: List[List[Tensor]] = []
        for b in range(self.n_blocks):
            a_b = alpha[b][pair]
            xi = torch.tanh(0.5 * a_b * (r - r0[b][pair]))
            dxi = 0.5 * a_b * (1.0 - xi * xi)
            T = [torch.ones_like(xi), xi]
            dT = [torch.zeros_like(xi), torch.ones_like(xi)]
            for k in range(2, R):
                T.append(2.0 * xi * T[k - 1] - T[k - 2])
                dT.append(2.0 * T[k - 1] + 2.0 * xi * dT[k - 1] - dT[k - 2])
            cheb.append(T)
            dcheb.append([d * dxi for d in dT])
        C = self.radial
        rad_l: List[Tensor] = []
        drad_l: List[Tensor] = []
        pfc = pref * fc
        for mu in range(self.n_mu):
            T = cheb[self.mu_block[mu]]
            dT = dcheb[self.mu_block[mu]]
            tc = C[mu, 0] * T[0]
            dtc = C[mu, 0] * dT[0]
            for k in range(1, R):
                tc = tc + C[mu, k] * T[k]
                dtc = dtc + C[mu, k] * dT[k]
            rad_l.append(tc * pfc)
            drad_l.append((tc * dfc + dtc * fc) * pref)
        rad = torch.stack(rad_l, 1)  # (N, n_mu, J)
        mono_l: List[Tensor] = [torch.ones_like(r)]
        for k in range(1, self.n_mono):
            mono_l.append(mono_l[self.mono_parent[k]] * u[:, self.mono_axis[k]])
        mono = torch.stack(mono_l, 1)  # (N, n_mono, J)
        full = torch.bmm(rad, mono.transpose(1, 2))  # (N, n_mu, n_mono) sum over neighbours
        basic = torch.mm(self.basic_sel.to(dt), full.reshape(n, self.n_mu * self.n_mono).t())  # (n_basic, N)
        mom = self._contract_rows(basic)
        c = self.species_coeffs.index_select(0, species)
        e_site = self.shift.index_select(0, species) + c + c * (self.moment_coeffs.unsqueeze(0) @ mom.index_select(0, self.mapping)).squeeze(0)
        # reverse pass, G = dE_i/dMom_i as rows
        G = self._reverse_rows(mom, torch.zeros_like(mom).index_add(0, self.mapping, self.moment_coeffs.unsqueeze(1) * c.unsqueeze(0)))
        n_basic = basic.shape[0]
        g_basic = torch.cat([G[:n_basic], torch.zeros((1, n), dtype=dt, device=vec.device)], dim=0)
        g_t = g_basic.index_select(0, self.basic_inv_t).t().contiguous().reshape(n, self.n_mono, self.n_mu)
        de_dmono = torch.bmm(g_t, rad)  # (N, n_mono, J)
        de_drad = torch.bmm(g_t.transpose(1, 2), mono)  # (N, n_mu, J)
        de_dr = drad_l[0] * de_drad[:, 0]
        for mu in range(1, self.n_mu):
            de_dr = de_dr + drad_l[mu] * de_drad[:, mu]
        de_du_l = [torch.zeros_like(r), torch.zeros_like(r), torch.zeros_like(r)]
        for d, k, low, ex in self.mono_dterms:
            t = de_dmono[:, k] * mono_l[low]
            de_du_l[d] = de_du_l[d] + (t if ex == 1.0 else ex * t)
        de_du = torch.stack(de_du_l, 1)  # (N, 3, J)
        radial_part = (de_du * u).sum(1, keepdim=True)
        return e_site, de_dr.unsqueeze(1) * u + (de_du - radial_part * u) / r.unsqueeze(1)


def _with_default_coefficients(mtp: MTPFile) -> MTPFile:
    """Fill an untrained file's coefficients with the new trainer's deterministic defaults (SPEC 3.5)."""
    m = mtp.copy()
    S, nb = m.species_count, m.n_blocks
    if m.shift_coeffs is None:
        m.shift_coeffs = -np.ones(S)
    if m.scal_coeffs is None:
        t = np.arange(S)
        s = np.sqrt(t[:, None] + 1.0) + np.sqrt(t[None, :] + 1.0)
        s = (s - s.min()) / (s.max() - s.min()) if s.max() > s.min() else np.zeros_like(s)
        alpha = 4.0 + (2.0 - 4.0) * s
        r0 = 1.5 + (2.5 - 1.5) * s
        m.scal_coeffs = np.stack([np.broadcast_to(alpha, (nb, S, S)), np.broadcast_to(r0, (nb, S, S))], axis=1).reshape(-1)
    if m.radial_coeffs is None:
        rng = np.random.default_rng(0)
        rc = np.ones((m.radial_funcs_count, m.radial_basis_size + S))
        rc[:, : m.radial_basis_size] = 5e-3 * rng.uniform(-1, 1, (m.radial_funcs_count, m.radial_basis_size))
        m.radial_coeffs = rc
    if m.species_coeffs is None:
        m.species_coeffs = np.ones(S)
    if m.moment_coeffs is None:
        m.moment_coeffs = np.zeros(len(m.alpha_moment_mapping))
    return m
