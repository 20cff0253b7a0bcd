"""Untrained SUS2-MLIP v1.1 model descriptions: header, generated basis and species names.

An untrained ``.mtp`` file (the authors' ``untrained.mtp``) stops after
``alpha_moment_mapping``: it has no coefficient arrays, and the trainer initialises them
(SPEC-sus2 sections 2.1 and 3.5).  ``init_mtp`` builds exactly that description; the
coefficient fields of the returned :class:`MTPFile` are ``None``.
"""
from __future__ import annotations

import math
from numbers import Integral, Real

from ase.data import chemical_symbols

from sus2md.errors import UsageError
from sus2md.io.mtp import SCALING_MAPS, MTPFile
from sus2md.train.basis import make_basis

__all__ = ["init_mtp"]

DEFAULT_RADIAL_BASIS_TYPE = "RBChebyshev_sss"


def init_mtp(
    L: int,
    K: int,
    species: list[str],
    cutoff: float,
    min_dist: float = 0.0,
    radial_basis_size: int = 8,
    scaling_map: str = "K",
    scaling: float = 0.01,
    potential_name: str | None = None,
) -> MTPFile:
    """Return an untrained model with the SUS2 l{L}k{K} basis for ``species`` (element symbols).

    ``cutoff`` (Å) becomes ``max_dist``; ``min_dist`` (Å) only seeds the trainer's default
    scaling parameters and has no effect on evaluation.  ``scaling_map`` is ``K``, ``L`` or
    ``LK`` (how (alpha, r0) are shared between radial functions); ``scaling`` is the global
    radial multiplier.  The default ``potential_name`` is ``sus2mlip_l{L}k{K}``, as in the
    authors' untrained files.  Raises :class:`UsageError` naming the offending argument.
    """
    basis = make_basis(L, K)  # validates L and K
    _check_species(species)
    _check_radial(cutoff, min_dist, radial_basis_size)
    _check_scaling(scaling_map, scaling)
    name = _check_name(f"sus2mlip_l{L}k{K}" if potential_name is None else potential_name)
    return MTPFile(
        potential_name=name,
        scaling=float(scaling),
        L=int(L),
        scaling_map=scaling_map,
        species_count=len(species),
        potential_tag="",
        radial_basis_type=DEFAULT_RADIAL_BASIS_TYPE,
        min_dist=float(min_dist),
        max_dist=float(cutoff),
        radial_basis_size=int(radial_basis_size),
        radial_funcs_count=int(K) * (int(L) + 1),
        alpha_moments_count=basis.alpha_moments_count,
        # Writable copies: the MTPFile is a mutable record, the Basis arrays are read-only.
        alpha_index_basic=basis.alpha_index_basic.copy(),
        alpha_index_times=basis.alpha_index_times.copy(),
        alpha_moment_mapping=basis.alpha_moment_mapping.copy(),
        species_names=list(species),
    )


def _check_species(species: list[str]) -> None:
    if isinstance(species, str) or not isinstance(species, (list, tuple)):
        raise UsageError(f"species: expected a list of element symbols such as ['Cu', 'Se'], got {species!r}")
    if not species:
        raise UsageError("species: at least one element symbol is needed")
    # chemical_symbols[0] is ASE's dummy 'X', not an element.
    bad = [s for s in species if not isinstance(s, str) or s not in chemical_symbols[1:]]
    if bad:
        raise UsageError(f"species: not element symbol(s): {', '.join(map(repr, bad))} (symbols are case-sensitive, e.g. 'Cu')")
    dup = sorted({s for s in species if species.count(s) > 1})
    if dup:
        raise UsageError(f"species: each element may appear once, repeated: {', '.join(dup)}")


def _is_int(x: object) -> bool:
    return isinstance(x, Integral) and not isinstance(x, bool)


def _check_radial(cutoff: float, min_dist: float, radial_basis_size: int) -> None:
    if not _finite_number(cutoff) or cutoff <= 0:
        raise UsageError(f"cutoff: must be a finite number of Å > 0, got {cutoff!r}")
    if not _finite_number(min_dist) or not 0 <= min_dist < cutoff:
        raise UsageError(f"min_dist: must satisfy 0 <= min_dist < cutoff = {cutoff}, got {min_dist!r}")
    if not _is_int(radial_basis_size) or radial_basis_size < 1:
        raise UsageError(f"radial_basis_size: must be an integer >= 1, got {radial_basis_size!r}")


def _check_scaling(scaling_map: str, scaling: float) -> None:
    if scaling_map not in SCALING_MAPS:
        raise UsageError(f"scaling_map: must be one of {', '.join(SCALING_MAPS)}, got {scaling_map!r}")
    if not _finite_number(scaling) or scaling <= 0:
        raise UsageError(f"scaling: must be a finite number > 0, got {scaling!r}")


def _check_name(name: str) -> str:
    # The .mtp value is one whitespace-free token; brackets are reserved for the species suffix.
    if not isinstance(name, str) or not name or any(c.isspace() or c in "[]{}=" for c in name):
        raise UsageError(f"potential_name: must be a non-empty word without spaces, brackets, braces or '=', got {name!r}")
    return name


def _finite_number(x: object) -> bool:
    return isinstance(x, Real) and not isinstance(x, bool) and math.isfinite(x)
