"""OpenMM side of the interoperability layer: openmm-ml plugin and ASE <-> OpenMM parity.

openmm-ml tests skip (with the reason) when ``openmmml`` is not installed.
"""
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch  # noqa: F401  (before openmm)

import openmm  # isort: skip
from openmm import app, unit  # isort: skip

from sus2md.interop.ase import SUS2Calculator
from sus2md.io.mtp import write_mtp
from sus2md.units import ANGSTROM_TO_NM, KJ_PER_MOL_TO_EV, EV_PER_A_TO_KJ_PER_MOL_NM

from ..unit.helpers import random_model, small_cell


@pytest.fixture(scope="module")
def model():
    return random_model(L=2, K=2, species=("Cu", "Se"), seed=11)


@pytest.fixture(scope="module")
def model_file(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("openmmml") / "cuse.mtp"
    write_mtp(model.to_mtp(), path)
    return path


def _topology(atoms) -> app.Topology:
    top = app.Topology()
    chain = top.addChain()
    for s in atoms.get_chemical_symbols():
        top.addAtom(s, app.Element.getBySymbol(s), top.addResidue(s, chain))
    top.setPeriodicBoxVectors(atoms.cell.array * ANGSTROM_TO_NM * unit.nanometer)
    return top


def _energy_forces(system: openmm.System, positions_nm: np.ndarray) -> tuple[float, np.ndarray]:
    ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    ctx.setPositions(positions_nm)
    st = ctx.getState(getEnergy=True, getForces=True)
    e = st.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole) * KJ_PER_MOL_TO_EV
    f = st.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer) / EV_PER_A_TO_KJ_PER_MOL_NM
    return e, f


def _cell():
    a = small_cell(seed=3, n_rep=(1, 1, 2))
    del a.arrays["mtp_type"]
    return a


@pytest.mark.parametrize("backend", ["auto", "torch", "python"])
def test_openmmml_create_system_matches_ase(model, model_file, backend):
    mlpotential = pytest.importorskip("openmmml.mlpotential", reason="openmm-ml is optional (pip install openmmml)")
    atoms = _cell()
    potential = mlpotential.MLPotential("sus2", modelPath=str(model_file))
    system = potential.createSystem(_topology(atoms), backend=backend)
    assert system.usesPeriodicBoundaryConditions()
    e, f = _energy_forces(system, atoms.positions * ANGSTROM_TO_NM)
    calc = SUS2Calculator(model)
    assert abs(e - calc.get_potential_energy(atoms)) < 1e-8 * len(atoms)
    assert np.abs(f - calc.get_forces(atoms)).max() < 1e-7
    # moving an atom by a box vector changes nothing
    shifted = atoms.positions.copy()
    shifted[0] += atoms.cell[2]
    assert abs(_energy_forces(system, shifted * ANGSTROM_TO_NM)[0] - e) < 1e-8 * len(atoms)


def test_openmmml_arguments(model_file):
    mlpotential = pytest.importorskip("openmmml.mlpotential", reason="openmm-ml is optional (pip install openmmml)")
    from sus2md.errors import UnknownSpeciesError, UsageError

    with pytest.raises(UsageError, match="needs modelPath="):
        mlpotential.MLPotential("sus2")
    with pytest.raises(UsageError, match="unknown arguments lengthScale"):
        mlpotential.MLPotential("sus2", modelPath=str(model_file), lengthScale=0.1)
    atoms = _cell()
    atoms.symbols[0] = "S"
    with pytest.raises(UnknownSpeciesError):
        mlpotential.MLPotential("sus2", modelPath=str(model_file)).createSystem(_topology(atoms))


def test_openmmml_imported_before_torch(model_file):
    """openmm-ml imports openmm before torch; the plugin must still make TorchForce work."""
    pytest.importorskip("openmmml", reason="openmm-ml is optional (pip install openmmml)")
    script = textwrap.dedent(f"""
        import openmm
        from openmmml import MLPotential
        from openmm import app, unit
        import numpy as np
        top = app.Topology(); ch = top.addChain()
        for s in ["Cu", "Se", "Cu"]:
            top.addAtom(s, app.Element.getBySymbol(s), top.addResidue(s, ch))
        system = MLPotential("sus2", modelPath={str(model_file)!r}).createSystem(top, backend="torch")
        ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
        ctx.setPositions(np.array([[0, 0, 0], [0.24, 0, 0], [0, 0.25, 0.05]]))
        print(ctx.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                         env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert np.isfinite(float(out.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("backend", ["torch", "python"])
def test_ase_and_openmm_give_the_same_energies(model, backend):
    from sus2md.engine.force import to_openmm_force
    from sus2md.engine.system import build_system

    calc = SUS2Calculator(model)
    base = _cell()
    for k in range(3):
        atoms = base.copy()
        atoms.rattle(0.05, seed=k)
        force = to_openmm_force(model, atoms, backend=backend, dtype="float64")
        _, system, pos_nm = build_system(atoms, force)
        e, _ = _energy_forces(system, pos_nm)
        assert abs(e - calc.get_potential_energy(atoms)) < 1e-8 * len(atoms)
