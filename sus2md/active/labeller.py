"""Labellers of ``sus2md learn``: an ASE calculator run in this process, or external labelling.

A label is the energy (eV), forces (eV/Å) and, for cells periodic in all three directions, the
stress (eV/Å^3, ASE's sign) of one configuration, stored the way ASE stores calculator results
(a ``SinglePointCalculator``), so labelled files are ordinary extxyz training data.  A label that
fails (the calculator raises, or returns non-finite numbers) is a :class:`LabelFailure`: the loop
reports and skips it, never keeps it.
"""
from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from sus2md.errors import ConfigError

__all__ = ["ASELabeller", "LabelFailure", "make_labeller"]


@dataclass
class LabelFailure:
    """Why one configuration got no label."""

    reason: str


class ASELabeller:
    """Labels configurations with an ASE calculator made from ``module:Class`` and ``kwargs``.

    Raises:
        ConfigError: the class cannot be imported or constructed (named, with the fix).
    """

    def __init__(self, path: str, kwargs: dict[str, Any]):
        module, _, name = path.partition(":")
        try:
            cls = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"labeller.calculator: cannot import {path!r} ({type(exc).__name__}: {exc}); give "
                              "'module:Class' of an installed ASE calculator, e.g. 'ase.calculators.emt:EMT'") from None
        try:
            self.calc = cls(**kwargs)
        except Exception as exc:  # noqa: BLE001 - any constructor error is a config problem
            raise ConfigError(f"labeller: {path}(**kwargs) failed: {type(exc).__name__}: {exc}; check "
                              "labeller.kwargs") from None
        self.name = path

    def label(self, atoms: Atoms) -> Atoms | LabelFailure:
        """A labelled copy of ``atoms`` (results in a SinglePointCalculator), or why not."""
        a = atoms.copy()
        a.calc = self.calc
        try:
            energy = float(a.get_potential_energy())
            forces = np.array(a.get_forces(), dtype=float)
            stress = np.array(a.get_stress(), dtype=float) if a.pbc.all() else None
        except Exception as exc:  # noqa: BLE001 - a failed label is reported and skipped, never kept
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            return LabelFailure(f"{self.name} raised {type(exc).__name__}: {first[:200]}")
        if not math.isfinite(energy) or not np.all(np.isfinite(forces)) or (
                stress is not None and not np.all(np.isfinite(stress))):
            return LabelFailure(f"{self.name} returned non-finite energy, forces or stress")
        out = atoms.copy()
        results = {"energy": energy, "forces": forces}
        if stress is not None:
            results["stress"] = stress
        out.calc = SinglePointCalculator(out, **results)
        return out


def make_labeller(spec: Any) -> ASELabeller | None:
    """The in-process labeller of a :class:`~sus2md.active.config.LabellerSpec`; None when
    labelling is external."""
    return None if spec.external else ASELabeller(spec.calculator, dict(spec.kwargs))
