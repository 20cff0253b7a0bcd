"""The SUS2 model inside OpenMM (Reference and CPU platforms), on tiny Cu2Se cells.

References: the eager model (:func:`sus2md.nn.calc.evaluate`) times the unit factors of
:mod:`sus2md.units`; physical identities (energy conservation and its dt^2 scaling,
equipartition under Langevin dynamics) that need no stored numbers.  Model:
``../shared/reference/cu2se.mtp`` (species Cu, Se; r_c 6.5 Å), skipped without ../shared.
"""
from __future__ import annotations

import logging
import pickle

import numpy as np
import pytest
import torch

import openmm  # isort: skip
from openmm import unit  # isort: skip

from ase.build import bulk

from sus2md.engine.force import to_openmm_force
from sus2md.engine.integrators import create_simulation, make_barostat, make_integrator, make_platform, minimize
from sus2md.engine.system import build_system, write_topology_pdb
from sus2md.errors import UnknownSpeciesError, UsageError
from sus2md.export import compile_for_openmm
from sus2md.io.data import species_index
from sus2md.model import load_model
from sus2md.nn.calc import evaluate, graph_from_atoms
from sus2md.units import EV_PER_A_TO_KJ_PER_MOL_NM, EV_TO_KJ_PER_MOL

SPECIES = ["Cu", "Se"]
PLATFORMS = ["Reference", "CPU"]


@pytest.fixture(scope="module")
def mtp():
    from tests.conftest import shared_path

    return shared_path("reference", "cu2se.mtp")


def cu2se_cell(rattle: float = 0.05, seed: int = 1):
    """12-atom antifluorite Cu2Se cell, a = 5.84 Å < 2 r_c."""
    a = bulk("SeCu2", "fluorite", a=5.84, cubic=True)
    if rattle:
        a.rattle(rattle, seed=seed)
    return a


def eager(mtp, atoms) -> tuple[float, np.ndarray]:
    """(energy kJ/mol, forces (N, 3) kJ/mol/nm) from the eager float64 model."""
    model = load_model(mtp, species=SPECIES)
    a = atoms.copy()
    a.arrays["mtp_type"] = species_index(a, SPECIES)
    r = evaluate(model, graph_from_atoms([a], model.cutoff))
    return float(r.energy[0].detach()) * EV_TO_KJ_PER_MOL, r.forces.detach().numpy() * EV_PER_A_TO_KJ_PER_MOL_NM


def openmm_eval(model, atoms, platform="Reference", **kw) -> tuple[float, np.ndarray]:
    force = to_openmm_force(model, atoms, species=kw.pop("species", SPECIES), periodic=bool(atoms.pbc.all()), **kw)
    _, system, pos = build_system(atoms, force)
    ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName(platform))
    ctx.setPositions(pos)
    st = ctx.getState(getEnergy=True, getForces=True)
    return st.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole), st.getForces(asNumpy=True)._value


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("backend", ["torch", "python"])
def test_energy_forces_match_eager(mtp, platform, backend):
    atoms = cu2se_cell()
    e_ref, f_ref = eager(mtp, atoms)
    e, f = openmm_eval(mtp, atoms, platform, backend=backend)
    assert e == pytest.approx(e_ref, rel=1e-9)
    np.testing.assert_allclose(f, f_ref, rtol=0, atol=1e-6 * np.abs(f_ref).max())


def test_compiled_file_and_backends_agree(mtp, tmp_path):
    atoms = cu2se_cell()
    compile_for_openmm(mtp, tmp_path / "m.pt", species=SPECIES, dtype="float64")
    e_t, f_t = openmm_eval(tmp_path / "m.pt", atoms, "CPU", backend="torch")
    e_p, f_p = openmm_eval(tmp_path / "m.pt", atoms, "CPU", backend="python")
    e_m, f_m = openmm_eval(load_model(mtp, species=SPECIES), atoms, "CPU")
    assert e_t == pytest.approx(e_p, rel=1e-12) and e_t == pytest.approx(e_m, rel=1e-12)
    np.testing.assert_allclose(f_t, f_p, atol=1e-8)
    np.testing.assert_allclose(f_t, f_m, atol=1e-8)


def test_float32_within_tolerance(mtp, tmp_path):
    """float32 model: energy within 1e-4 relative, forces within 1e-3 of max |F| (measured
    ~2e-5 and ~1e-5 on this cell: the SUS2 contraction cancels large terms)."""
    atoms = cu2se_cell()
    compile_for_openmm(mtp, tmp_path / "m32.pt", species=SPECIES, dtype="float32")
    e64, f64 = openmm_eval(mtp, atoms, "CPU")
    e32, f32 = openmm_eval(tmp_path / "m32.pt", atoms, "CPU")
    assert e32 != e64 and e32 == pytest.approx(e64, rel=1e-4)
    np.testing.assert_allclose(f32, f64, rtol=0, atol=1e-3 * np.abs(f64).max())


def test_shifted_across_boundaries_same_energy(mtp):
    atoms = cu2se_cell()
    e0, f0 = openmm_eval(mtp, atoms, "CPU")
    moved = atoms.copy()
    moved.positions += 0.61 * atoms.cell[1] + np.array([3.1, -0.7, 2.2])
    e1, f1 = openmm_eval(mtp, moved, "CPU")
    moved.wrap()
    e2, _ = openmm_eval(mtp, moved, "CPU")
    assert e1 == pytest.approx(e0, rel=1e-12) and e2 == pytest.approx(e0, rel=1e-12)
    np.testing.assert_allclose(f1, f0, atol=1e-7)


def test_small_cell_matches_all_image_eager_and_supercell(mtp):
    """4-atom fcc cubic cell (3.6 Å, far below 2 r_c = 13 Å), Cu with one Se."""
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.symbols[1] = "Se"
    atoms.rattle(0.05, seed=2)
    e_ref, f_ref = eager(mtp, atoms)
    e, f = openmm_eval(mtp, atoms, "Reference")
    assert e == pytest.approx(e_ref, rel=1e-9)
    np.testing.assert_allclose(f, f_ref, rtol=0, atol=1e-6 * np.abs(f_ref).max())
    e8, _ = openmm_eval(mtp, atoms.repeat((2, 2, 2)), "Reference")
    assert e8 == pytest.approx(8 * e, rel=1e-10)


def test_triclinic_box_is_reduced_and_matches_eager(mtp):
    """A skewed, rotated, left-handed cell: OpenMM gets a reduced box; energy and |F_i| unchanged."""
    from ase.build import make_supercell

    atoms = make_supercell(bulk("SeCu2", "fluorite", a=5.84), [[1, 0, 0], [2, 1, 0], [0, 1, -2]])
    atoms.rattle(0.05, seed=4)
    atoms.rotate(33, (1, 2, 3), rotate_cell=True)
    assert np.linalg.det(atoms.cell.array) < 0
    e_ref, f_ref = eager(mtp, atoms)
    force = to_openmm_force(mtp, atoms, species=SPECIES)
    _, system, _ = build_system(atoms, force)
    a, b, c = (np.array(v._value) for v in system.getDefaultPeriodicBoxVectors())
    assert a[1] == a[2] == b[2] == 0 and min(a[0], b[1], c[2]) > 0
    assert a[0] >= 2 * abs(b[0]) and a[0] >= 2 * abs(c[0]) and b[1] >= 2 * abs(c[1])
    e, f = openmm_eval(mtp, atoms, "CPU")
    assert e == pytest.approx(e_ref, rel=1e-9)
    np.testing.assert_allclose(np.linalg.norm(f, axis=1), np.linalg.norm(f_ref, axis=1), atol=1e-6 * np.abs(f_ref).max())


def test_non_periodic_cluster(mtp):
    atoms = cu2se_cell()
    atoms.pbc = False
    e_ref, f_ref = eager(mtp, atoms)
    e, f = openmm_eval(mtp, atoms, "Reference")
    assert e == pytest.approx(e_ref, rel=1e-9)
    np.testing.assert_allclose(f, f_ref, rtol=0, atol=1e-6 * np.abs(f_ref).max())


def test_errors(mtp):
    atoms = cu2se_cell()
    atoms.symbols[0] = "S"
    with pytest.raises(UnknownSpeciesError, match=r"element S is not in the model's species \[Cu, Se\]"):
        to_openmm_force(mtp, atoms, species=SPECIES)
    with pytest.raises(UsageError, match="the model names no elements"):
        to_openmm_force(mtp, ["Cu", "Se"])
    with pytest.raises(UsageError, match="backend must be one of auto, torch, python, compiled"):
        to_openmm_force(mtp, ["Cu"], species=SPECIES, backend="jax")
    with pytest.raises(UsageError, match="CUDA graphs need backend='torch'"):
        to_openmm_force(mtp, ["Cu"], species=SPECIES, backend="python", use_cuda_graphs=True)
    with pytest.raises(UsageError, match="CUDA graphs need the CUDA platform, got CPU"):
        make_platform("cpu", cuda_graphs=True)
    with pytest.raises(UsageError, match="platform 'Metal' is not available; this installation has .*Reference.*CPU"):
        make_platform("Metal")
    with pytest.raises(UsageError, match="the structure is non-periodic but the force is not"):
        cluster = cu2se_cell()
        cluster.pbc = False
        build_system(cluster, to_openmm_force(mtp, cluster, species=SPECIES, periodic=True))
    with pytest.raises(UsageError, match="the langevin integrator needs temperature_K > 0"):
        make_integrator("langevin", 1.0)
    with pytest.raises(UsageError, match="barostat must be one of isotropic, anisotropic, flexible"):
        make_barostat("berendsen", 1.0, 300.0)


def test_compiled_dtype_override_and_private_copy(mtp, tmp_path):
    from sus2md.engine.force import bound_adapter

    compile_for_openmm(mtp, tmp_path / "m.pt", species=SPECIES)
    assert bound_adapter(tmp_path / "m.pt", ["Cu", "Se"]).model.shift.dtype == torch.float32
    assert bound_adapter(tmp_path / "m.pt", ["Cu", "Se"], dtype="float64").model.shift.dtype == torch.float64
    mine = bound_adapter(mtp, ["Se"], species=SPECIES)
    bound_adapter(mine, ["Cu", "Cu", "Se"])
    assert mine.species.tolist() == [1]  # binding works on a private copy
    with pytest.raises(UsageError, match="species Se,Cu given but the model's species are Cu,Se"):
        bound_adapter(tmp_path / "m.pt", ["Cu"], species=["Se", "Cu"])
    with pytest.raises(UsageError, match="'Qq' is not an element"):
        bound_adapter(tmp_path / "m.pt", ["Cu", "Qq"])


def test_python_force_pickles(mtp):
    """XmlSerializer pickles a PythonForce's function: ours survives the round trip."""
    atoms = cu2se_cell()
    force = to_openmm_force(mtp, atoms, species=SPECIES, backend="python")
    _, system, _ = build_system(atoms, force)
    copy = openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(system))
    assert copy.getNumForces() == system.getNumForces()
    from sus2md.engine.force import _PythonForceFunction

    fn = pickle.loads(pickle.dumps(_PythonForceFunction(torch.jit.script(torch.nn.Identity()), True)))
    assert fn.periodic


def test_pdb_topology_reads_in_mdtraj(mtp, tmp_path):
    import mdtraj

    atoms = cu2se_cell()
    top, system, pos = build_system(atoms, to_openmm_force(mtp, atoms, species=SPECIES))
    box = np.array([v._value for v in system.getDefaultPeriodicBoxVectors()])
    write_topology_pdb(top, pos, box, tmp_path / "top.pdb")
    traj = mdtraj.load(str(tmp_path / "top.pdb"))
    assert traj.n_atoms == 12 and [a.element.symbol for a in traj.topology.atoms] == atoms.get_chemical_symbols()
    np.testing.assert_allclose(traj.unitcell_vectors[0], box, atol=1e-3)
    np.testing.assert_allclose(traj.xyz[0], pos, atol=1e-3)


def _energies(sim, n_blocks: int, steps: int) -> np.ndarray:
    out = []
    for _ in range(n_blocks):
        sim.step(steps)
        st = sim.context.getState(getEnergy=True)
        out.append([st.getPotentialEnergy()._value, st.getKineticEnergy()._value])
    return np.array(out)


def test_nve_conserves_energy_with_dt2_scaling(mtp):
    """Velocity Verlet, float64, 300 K, 12 atoms: the total-energy fluctuation over 0.4 ps is
    < 1% of the kinetic-energy fluctuation, and shrinks ~4x when dt is halved (measured 4.4)."""
    ranges = []
    for dt_fs, steps in [(1.0, 10), (0.5, 20)]:
        sim = create_simulation(cu2se_cell(0.02), mtp, species=SPECIES, threads=1, integrator=make_integrator("verlet", dt_fs))
        sim.context.setVelocitiesToTemperature(300 * unit.kelvin, 1)
        e = _energies(sim, 40, steps)
        total = e.sum(axis=1)
        assert np.ptp(total) < 1e-2 * e[:, 1].std()
        ranges.append(np.ptp(total))
    assert 3.0 < ranges[0] / ranges[1] < 6.0


def test_langevin_reaches_target_temperature(mtp):
    """LangevinMiddle at 600 K from a 100 K start; mean T over 0.4 ps within 15% (about 4
    standard errors for 12 atoms, 33 degrees of freedom with the COM motion removed)."""
    sim = create_simulation(cu2se_cell(0.02), mtp, species=SPECIES, threads=1,
                            integrator=make_integrator("langevin", 2.0, 600.0, friction_per_ps=20.0, seed=3))
    sim.context.setVelocitiesToTemperature(100 * unit.kelvin, 1)
    sim.step(200)
    ke = _energies(sim, 200, 5)[:, 1]
    dof = 3 * 12 - 3
    temps = 2 * ke / (dof * unit.MOLAR_GAS_CONSTANT_R.value_in_unit(unit.kilojoule_per_mole / unit.kelvin))
    assert abs(temps.mean() - 600.0) < 0.15 * 600.0


@pytest.mark.parametrize("kind", ["isotropic", "anisotropic", "flexible"])
def test_barostat_changes_volume(mtp, kind):
    atoms = cu2se_cell(0.02)
    sim = create_simulation(atoms, mtp, species=SPECIES, threads=1,
                            integrator=make_integrator("langevin", 2.0, 300.0, seed=1),
                            barostat=make_barostat(kind, 1.0, 300.0, interval_steps=2, seed=5))
    sim.context.setVelocitiesToTemperature(300 * unit.kelvin, 1)
    sim.step(40)
    box = sim.context.getState().getPeriodicBoxVolume().value_in_unit(unit.nanometer**3)
    assert box != pytest.approx(atoms.get_volume() / 1000, rel=1e-9)


def test_nose_hoover_runs(mtp):
    sim = create_simulation(cu2se_cell(0.02), mtp, species=SPECIES, threads=1,
                            integrator=make_integrator("nose-hoover", 1.0, 300.0, collision_frequency_per_ps=5.0))
    sim.context.setVelocitiesToTemperature(300 * unit.kelvin, 1)
    sim.step(20)
    assert np.isfinite(sim.context.getState(getEnergy=True).getPotentialEnergy()._value)


def test_minimization_lowers_energy_and_reports_convergence(mtp, caplog):
    sim = create_simulation(cu2se_cell(0.1), mtp, species=SPECIES, threads=1, integrator=make_integrator("verlet", 1.0))
    with caplog.at_level(logging.INFO, logger="sus2md.engine.integrators"):
        res = minimize(sim, tolerance_kJ_mol_nm=10.0, max_iterations=5, log_interval=2)
    assert res.energy_after_kJ_mol < res.energy_before_kJ_mol - 1.0
    assert res.iterations == 5 and not res.converged and not res.stopped  # capped: says so
    assert res.rms_force_kJ_mol_nm > 10.0 and res.max_force_kJ_mol_nm >= res.rms_force_kJ_mol_nm
    assert [r.message.split(",")[0] for r in caplog.records] == [f"minimize: iteration {k}" for k in (0, 2, 4)]
    res = minimize(sim, tolerance_kJ_mol_nm=1e3, max_iterations=200)
    assert res.converged and res.rms_force_kJ_mol_nm <= 1e3


def test_minimization_stops_when_asked(mtp):
    """should_stop is asked at every iteration: a signal flag ends a minimization at once."""
    sim = create_simulation(cu2se_cell(0.1), mtp, species=SPECIES, threads=1, integrator=make_integrator("verlet", 1.0))
    asked = []
    res = minimize(sim, tolerance_kJ_mol_nm=1e-6, max_iterations=0, should_stop=lambda: asked.append(1) or len(asked) >= 3)
    assert res.stopped and res.iterations == 3 and not res.converged


def test_compiled_backend_matches_eager_and_steps(mtp):
    """backend='compiled' (torch.compile of the analytic forces) gives the eager numbers."""
    atoms = cu2se_cell()
    e_ref, f_ref = eager(mtp, atoms)
    e, f = openmm_eval(mtp, atoms, "CPU", backend="compiled")
    assert e == pytest.approx(e_ref, rel=1e-9)
    np.testing.assert_allclose(f, f_ref, rtol=0, atol=1e-6 * np.abs(f_ref).max())
    with pytest.raises(UsageError, match="cannot use them"):
        to_openmm_force(mtp, atoms, species=SPECIES, backend="compiled", use_cuda_graphs=True)
