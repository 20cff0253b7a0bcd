"""The only home of unit constants.  The model core speaks eV, Å, amu; OpenMM speaks nm, kJ/mol, ps.

Values come from ASE's CODATA-2014 table (the same one ``ase.units`` uses), never typed by hand.
"""
from __future__ import annotations

from ase import units as _ase_units

#: 1 eV in kJ/mol
EV_TO_KJ_PER_MOL: float = _ase_units.eV / (_ase_units.kJ / _ase_units.mol)
KJ_PER_MOL_TO_EV: float = 1.0 / EV_TO_KJ_PER_MOL
#: 1 nm in Å
NM_TO_ANGSTROM: float = 10.0
ANGSTROM_TO_NM: float = 0.1
#: eV/Å³ -> GPa
EV_PER_A3_TO_GPA: float = _ase_units.eV / _ase_units.Angstrom**3 / _ase_units.GPa
#: eV/Å³ -> bar
EV_PER_A3_TO_BAR: float = _ase_units.eV / _ase_units.Angstrom**3 / _ase_units.bar
#: Boltzmann constant in eV/K
KB_EV: float = _ase_units.kB
#: force: eV/Å -> kJ/mol/nm
EV_PER_A_TO_KJ_PER_MOL_NM: float = EV_TO_KJ_PER_MOL * NM_TO_ANGSTROM
#: Boltzmann constant in kJ/mol/K
KB_KJ_PER_MOL: float = KB_EV * EV_TO_KJ_PER_MOL
#: pressure: bar -> kJ/mol/nm^3 (1 nm^3 = 1000 Å^3)
BAR_TO_KJ_PER_MOL_NM3: float = EV_TO_KJ_PER_MOL * 1000.0 / EV_PER_A3_TO_BAR
