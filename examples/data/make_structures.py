"""Generate the small example structures shipped in examples/data (run from this directory)."""
import numpy as np
from ase.build import bulk
from ase.io import write

# 108-atom fcc Cu at EMT's lattice constant (../shared/data/emt_alloy_stats.json: 3.5933 Å)
write("cu_fcc_108.extxyz", bulk("Cu", "fcc", a=3.5933, cubic=True).repeat((3, 3, 3)))

# 256-atom random 4-metal fcc alloy (Vegard lattice constant of EMT's a0), for the alloy examples
rng = np.random.default_rng(0)
a0 = {"Ni": 3.4887, "Cu": 3.5933, "Pd": 3.8837, "Au": 4.0615}
atoms = bulk("Cu", "fcc", a=1.0, cubic=True).repeat((4, 4, 4))
symbols = rng.choice(list(a0), size=len(atoms))
a = float(np.mean([a0[s] for s in symbols]))
atoms.set_cell(atoms.cell * a, scale_atoms=True)
atoms.set_chemical_symbols(symbols)
write("alloy_fcc_256.extxyz", atoms)
