"""03 -- compile a model to TorchScript and run it in OpenMM by hand (no protocol file).

    python examples/03_compile_and_openmm.py           # models/emt_alloy.mtp on the 256-atom
                                                       # fcc alloy (examples/data), 500 steps
    python examples/03_compile_and_openmm.py --smoke   # seconds: tiny model, 32 atoms, 20 steps

``compile_for_openmm`` writes a TorchScript file with metadata (species, cutoff, units, dtype);
``load_compiled`` reads it back and checks it.  ``to_openmm_force`` turns a compiled file (or an
``.mtp``) into an OpenMM ``TorchForce`` bound to the particles' species; ``build_system`` makes
the Topology/System (masses, periodic box in OpenMM's reduced form, positions in nm).  From there
it is plain OpenMM.  Units at the boundary: the model speaks eV/Å, OpenMM kJ/mol/nm.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from _common import sibling  # examples/ is on sys.path when an example runs as a script

HERE = Path(__file__).resolve().parent

train_ex = sibling("02_train")


def example_atoms(smoke: bool):
    """smoke: 32-atom fcc Cu with a few Ni/Au; full: the 256-atom Ni-Cu-Pd-Au alloy of examples/data."""
    import ase.io
    from ase.build import bulk

    if not smoke:
        return ase.io.read(HERE / "data" / "alloy_fcc_256.extxyz")
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 2, 2))
    symbols = atoms.get_chemical_symbols()
    for i, el in ((0, "Ni"), (5, "Ni"), (10, "Au"), (20, "Au")):
        symbols[i] = el
    atoms.set_chemical_symbols(symbols)
    return atoms


def main(argv: list[str] | None = None) -> int:
    args = train_ex.parse(__doc__.splitlines()[0], argv)
    import torch  # noqa: F401  (before openmm, or the OpenMM Torch plugin fails to load)

    import openmm
    from openmm import app, unit

    from sus2md.interop.ase import SUS2Calculator
    from sus2md.engine.force import to_openmm_force
    from sus2md.engine.system import build_system
    from sus2md.export import compile_for_openmm, load_compiled
    from sus2md.units import EV_TO_KJ_PER_MOL

    model_path = train_ex.model_for(args.workdir, args.smoke, args.model)

    # 1. compile: .mtp -> TorchScript (.pt) with metadata; float32 is ~2x faster on CPU
    pt = args.workdir / "model.pt"
    meta = compile_for_openmm(model_path, pt, dtype="float32")
    _, meta = load_compiled(pt)  # what an engine reads back (checks format and torch version)
    print(f"compiled {model_path.name} -> {pt}: species {meta['species']}, cutoff {meta['cutoff_A']:.2f} Å, "
          f"dtype {meta['dtype']}, units {meta['units']}")

    # 2. an OpenMM System around the compiled model
    atoms = example_atoms(args.smoke)
    force = to_openmm_force(pt, atoms)  # TorchForce; backend="python" gives an openmm.PythonForce
    topology, system, positions_nm = build_system(atoms, force)  # + CMMotionRemover
    integrator = openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 1.0 / unit.picosecond, 2.0 * unit.femtosecond)
    integrator.setRandomNumberSeed(1)
    platform = openmm.Platform.getPlatformByName("CPU")
    props = {"Threads": "1"} if args.smoke else {}
    sim = app.Simulation(topology, system, integrator, platform, props)
    sim.context.setPositions(positions_nm * unit.nanometer)

    # 3. the same energy from OpenMM (float32 TorchScript) and from the eager float64 model in ASE
    e_omm = sim.context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    check = atoms.copy()
    check.calc = SUS2Calculator(model_path)
    e_ase = check.get_potential_energy() * EV_TO_KJ_PER_MOL
    print(f"{len(atoms)} atoms ({atoms.get_chemical_formula()}): E OpenMM {e_omm:.3f} kJ/mol, "
          f"E ASE {e_ase:.3f} kJ/mol, difference {abs(e_omm - e_ase) / len(atoms):.2e} kJ/mol/atom (float32 vs float64)")

    # 4. minimize and run Langevin dynamics
    sim.minimizeEnergy(maxIterations=50 if args.smoke else 200)
    sim.context.setVelocitiesToTemperature(300 * unit.kelvin, 1)
    steps = 20 if args.smoke else 200
    t0 = time.perf_counter()
    sim.step(steps)
    wall = time.perf_counter() - t0
    state = sim.context.getState(getEnergy=True)
    dof = 3 * len(atoms) - 3
    kinetic = state.getKineticEnergy().value_in_unit(unit.kilojoule_per_mole)
    temperature = 2 * kinetic / (dof * unit.MOLAR_GAS_CONSTANT_R.value_in_unit(unit.kilojoule_per_mole / unit.kelvin))
    pe = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole) / EV_TO_KJ_PER_MOL / len(atoms)
    print(f"{steps} steps of 2 fs in {wall:.2f} s ({steps * len(atoms) / wall:.0f} atom-steps/s): "
          f"T = {temperature:.0f} K, E_pot = {pe:.4f} eV/atom")
    if not np.isfinite(pe):
        raise SystemExit("the simulation blew up")
    print(f"next: python examples/04_run_protocol.py{' --smoke' if args.smoke else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
