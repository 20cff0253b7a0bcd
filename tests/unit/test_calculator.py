"""SUS2Calculator: the ASE Calculator contract, finite differences, and ASE's standard drivers.

Finite-difference and error tests use a random model (no ../shared needed); relaxations, MD,
EOS and phonons need a physical energy surface and use the authors' ``cu2se.mtp``.
"""
import numpy as np
import pytest
from ase import Atoms, units
from ase.calculators.calculator import PropertyNotImplementedError
from ase.calculators.fd import calculate_numerical_forces, calculate_numerical_stress
from ase.spacegroup import crystal

from sus2md.interop.ase import SUS2Calculator
from sus2md.errors import UnknownSpeciesError, UsageError
from sus2md.io.mtp import write_mtp

from .helpers import cluster, random_model, small_cell


@pytest.fixture(scope="module")
def model():
    return random_model(L=2, K=2, species=("Cu", "Se"))


def _symbols_only(atoms: Atoms) -> Atoms:
    a = atoms.copy()
    del a.arrays["mtp_type"]
    return a


@pytest.fixture
def cu2se(shared):
    """12-atom antifluorite Cu8Se4 cell with the authors' Cu2Se model."""
    a = crystal(["Se", "Cu"], basis=[(0, 0, 0), (0.25, 0.25, 0.25)], spacegroup=225, cellpar=[5.85] * 3 + [90] * 3)
    a.calc = SUS2Calculator(shared("reference", "cu2se.mtp"), species=["Cu", "Se"])
    return a


@pytest.mark.parametrize("triclinic", [False, True])
def test_forces_and_stress_match_ase_finite_differences(model, triclinic):
    a = _symbols_only(small_cell(seed=3, triclinic=triclinic))
    a.calc = SUS2Calculator(model)
    f = a.get_forces()
    assert np.abs(f - calculate_numerical_forces(a, eps=1e-5)).max() < 1e-7 * max(1.0, np.abs(f).max())
    s = a.get_stress()
    assert s.shape == (6,)
    assert np.abs(s - calculate_numerical_stress(a, eps=1e-6)).max() < 1e-7 * max(1.0, np.abs(s).max())


def test_results_are_consistent(model):
    a = _symbols_only(small_cell(seed=4))
    a.calc = SUS2Calculator(model)
    e = a.get_potential_energy()
    assert a.get_potential_energy(force_consistent=True) == e  # free_energy
    assert abs(a.get_potential_energies().sum() - e) < 1e-10
    w = a.calc.results["virial"]
    s = a.get_stress(voigt=False)
    assert np.allclose(s, -w / a.get_volume(), atol=1e-14)


def test_stress_only_for_3d_periodic(model):
    c = _symbols_only(cluster(6, seed=1))
    c.set_chemical_symbols(["Cu", "Se"] * 3)
    c.calc = SUS2Calculator(model)
    f = c.get_forces()
    assert np.abs(f - calculate_numerical_forces(c, eps=1e-5)).max() < 1e-7 * max(1.0, np.abs(f).max())
    with pytest.raises(PropertyNotImplementedError):
        c.get_stress()
    slab = _symbols_only(small_cell(seed=5))
    slab.pbc = (True, True, False)
    slab.calc = SUS2Calculator(model)
    f = slab.get_forces()
    assert np.abs(f - calculate_numerical_forces(slab, eps=1e-5)).max() < 1e-7 * max(1.0, np.abs(f).max())
    with pytest.raises(PropertyNotImplementedError):
        slab.get_stress()


def test_loads_model_file_and_matches_module(model, tmp_path):
    path = tmp_path / "m.mtp"
    write_mtp(model.to_mtp(), path)
    a = _symbols_only(small_cell(seed=6))
    e_file = SUS2Calculator(path).get_potential_energy(a)
    e_mod = SUS2Calculator(model).get_potential_energy(a)
    assert abs(e_file - e_mod) < 1e-9


def test_species_errors(model, tmp_path):
    a = Atoms("CuS", positions=[[0, 0, 0], [2.2, 0, 0]])
    a.calc = SUS2Calculator(model)
    with pytest.raises(UnknownSpeciesError, match="S"):
        a.get_potential_energy()
    with pytest.raises(UsageError, match="differ from the model's own element names"):
        SUS2Calculator(model, species=["Se", "Cu"])
    unnamed = model.to_mtp()
    unnamed.species_names = None
    write_mtp(unnamed, tmp_path / "u.mtp")
    with pytest.raises(UsageError, match="pass species="):
        SUS2Calculator(tmp_path / "u.mtp")
    assert SUS2Calculator(tmp_path / "u.mtp", species=["Cu", "Se"]).species == ["Cu", "Se"]


def test_bfgs_and_cell_relaxation(cu2se):
    from ase.filters import FrechetCellFilter
    from ase.optimize import BFGS

    cu2se.rattle(0.05, seed=1)
    e0 = cu2se.get_potential_energy()
    opt = BFGS(cu2se, logfile=None)
    assert opt.run(fmax=1e-3, steps=200)
    assert cu2se.get_potential_energy() < e0
    assert opt.run(fmax=1e-3, steps=0)  # converged state is reported as converged
    opt = BFGS(FrechetCellFilter(cu2se), logfile=None)
    assert opt.run(fmax=1e-3, steps=300)
    assert np.abs(cu2se.get_stress()).max() < 2e-4  # eV/Å^3 (~0.03 GPa)


def test_velocity_verlet_conserves_energy(cu2se):
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary
    from ase.md.verlet import VelocityVerlet

    a = cu2se.repeat((2, 1, 1))
    a.calc = cu2se.calc
    MaxwellBoltzmannDistribution(a, temperature_K=300, rng=np.random.default_rng(0))
    Stationary(a)
    etot = []
    md = VelocityVerlet(a, timestep=1.0 * units.fs)
    md.attach(lambda: etot.append(a.get_total_energy()), interval=1)
    md.run(40)
    drift = np.ptp(etot) / len(a)
    assert a.get_temperature() > 50
    assert drift < 2e-5  # eV/atom over 40 fs (potential energy varies by ~1e-2)


def test_equation_of_state(cu2se):
    from ase.eos import EquationOfState

    cell0 = cu2se.cell.copy()
    vols, ens, press = [], [], []
    for x in np.linspace(0.97, 1.03, 7):
        cu2se.set_cell(cell0 * x, scale_atoms=True)
        vols.append(cu2se.get_volume())
        ens.append(cu2se.get_potential_energy())
        press.append(-cu2se.get_stress()[:3].mean())
    v0, e0, B = EquationOfState(vols, ens, eos="birchmurnaghan").fit()
    assert min(vols) < v0 < max(vols) and B > 0
    # the pressure from the stress vanishes where the E(V) fit has its minimum
    p_at_v0 = np.interp(v0, vols, press)
    assert abs(p_at_v0) < 0.02 * B


def test_phonopy_acoustic_sum_rule(cu2se):
    phonopy = pytest.importorskip("phonopy", reason="phonopy is optional (pip install phonopy)")
    from phonopy.structure.atoms import PhonopyAtoms

    cell = PhonopyAtoms(symbols=cu2se.get_chemical_symbols(), cell=cu2se.cell.array,
                        scaled_positions=cu2se.get_scaled_positions())
    ph = phonopy.Phonopy(cell, supercell_matrix=np.eye(3, dtype=int) * 2, primitive_matrix="F")
    ph.generate_displacements(distance=0.01)
    forces = []
    for sc in ph.supercells_with_displacements:
        a = Atoms(sc.symbols, cell=sc.cell, scaled_positions=sc.scaled_positions, pbc=True)
        a.calc = cu2se.calc
        forces.append(a.get_forces())
    ph.forces = np.array(forces)
    ph.produce_force_constants()
    freqs = ph.get_frequencies([0, 0, 0])  # THz
    assert np.abs(np.sort(np.abs(freqs))[:3]).max() < 0.05
    assert np.all(np.isfinite(freqs))

