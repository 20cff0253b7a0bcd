"""The Monte Carlo barostat of NPT stages (sus2md.engine.barostat) on systems whose answer is exact.

An ideal gas (no forces) at pressure P samples <V> = (N + 1) kT / P under volume and axis moves,
as in OpenMM's own barostat tests; the acceptance rule alone decides it, so a wrong Jacobian or
measure term moves the mean by many standard errors (the first version of this barostat
proposed steps proportional to the current volume without the Hastings factor and sampled 2.5 %
low: 7 standard errors).  The flexible barostat is not tested on the ideal gas: without elastic
forces the cell shape has no stationary distribution (a_x grows while c_z shrinks), so no mean
volume is defined; tests/integration/test_ensembles.py checks it on a crystal.  Runs are seeded
(Reference platform, seeded Langevin, seeded barostat), so each test is deterministic.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch  # noqa: F401  (before openmm)

import openmm  # isort: skip
from openmm import unit  # isort: skip

from sus2md.engine.barostat import KIND_MOVES, MOVE_KINDS, CellBarostat, reduce_box
from sus2md.units import BAR_TO_KJ_PER_MOL_NM3, KB_KJ_PER_MOL

N, T, P_BAR = 8, 300.0, 3.0  # few particles: N vs N + 1 in the acceptance rule differs by 12 %


def ideal_gas(seed: int = 1, box=(1.0, 0.5, 2.0)) -> openmm.Context:
    """N non-interacting unit-mass particles in a periodic box scaled to about (N+1) kT / P."""
    v0 = N * KB_KJ_PER_MOL * T / (P_BAR * BAR_TO_KJ_PER_MOL_NM3)
    length = (v0 / np.prod(box)) ** (1 / 3)
    system = openmm.System()
    system.setDefaultPeriodicBoxVectors(*(openmm.Vec3(*(length * b * np.eye(3)[k])) for k, b in enumerate(box)))
    for _ in range(N):
        system.addParticle(1.0)
    bonds = openmm.HarmonicBondForce()
    bonds.setUsesPeriodicBoundaryConditions(True)  # makes the System periodic
    system.addForce(bonds)
    integrator = openmm.LangevinMiddleIntegrator(T * unit.kelvin, 1.0 / unit.picosecond, 0.01 * unit.picosecond)
    integrator.setRandomNumberSeed(seed)
    ctx = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("Reference"))
    rng = np.random.default_rng(seed)
    ctx.setPositions(rng.uniform(0, 1, (N, 3)) * length * np.array(box))
    ctx.setVelocitiesToTemperature(T * unit.kelvin, seed)
    return ctx


def volume_nm3(ctx: openmm.Context) -> float:
    h = ctx.getState().getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer)
    return float(np.prod(np.diag(h)))


def sample(ctx: openmm.Context, baro: CellBarostat, n: int, every: int = 5) -> np.ndarray:
    out = []
    for _ in range(n):
        ctx.getIntegrator().step(every)
        baro.attempt(ctx)
        out.append(volume_nm3(ctx))
    return np.array(out)


def block_sem(x: np.ndarray, blocks: int = 20) -> float:
    means = np.array([b.mean() for b in np.array_split(x, blocks)])
    return float(means.std(ddof=1) / np.sqrt(blocks))


@pytest.mark.parametrize("kind", ["isotropic", "anisotropic"])
def test_ideal_gas_samples_the_npt_volume(kind):
    ctx = ideal_gas()
    baro = CellBarostat(kind, P_BAR, T, N, seed=7)
    sample(ctx, baro, 300)  # equilibrate, and let the step sizes adapt
    v = sample(ctx, baro, 20000)
    expected = (N + 1) * KB_KJ_PER_MOL * T / (P_BAR * BAR_TO_KJ_PER_MOL_NM3)
    sem = block_sem(v, 50)
    assert sem < 0.015 * expected  # enough independent samples for the check to mean something
    assert abs(v.mean() - expected) < 4 * sem, (v.mean(), expected, sem)
    # relative fluctuation of the exact Gamma(N + 2) volume distribution: 1/sqrt(N + 2)
    assert 0.6 / np.sqrt(N + 2) < v.std() / v.mean() < 1.6 / np.sqrt(N + 2)
    counts = baro.counts()
    for k in MOVE_KINDS:
        if k in KIND_MOVES[kind]:
            acc, att = counts[k]
            assert att > 10000 and acc / att > 0.15, (k, acc, att)
        else:
            assert counts[k] is None


def test_flexible_moves_carry_atoms_affinely_and_keep_the_box_reduced():
    """Shear trials keep fractional coordinates; every box is in OpenMM's reduced form."""
    ctx = ideal_gas(box=(1.0, 1.0, 1.0))
    baro = CellBarostat("flexible", P_BAR, T, N, seed=3)
    for _ in range(200):
        st = ctx.getState(getPositions=True)
        h0 = st.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer)
        frac0 = st.getPositions(asNumpy=True).value_in_unit(unit.nanometer) @ np.linalg.inv(h0)
        accepted = baro.attempt(ctx)
        st = ctx.getState(getPositions=True)
        h1 = np.asarray(st.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer))
        assert np.allclose(np.triu(h1, 1), 0)
        assert abs(h1[1, 0]) <= 0.5 * h1[0, 0] + 1e-12 and abs(h1[2, 0]) <= 0.5 * h1[0, 0] + 1e-12
        assert abs(h1[2, 1]) <= 0.5 * h1[1, 1] + 1e-12
        frac1 = st.getPositions(asNumpy=True).value_in_unit(unit.nanometer) @ np.linalg.inv(h1)
        d = frac1 - frac0
        assert np.allclose(d, np.round(d), atol=1e-9)  # the same fractional coordinates, up to lattice vectors
        if not accepted:
            assert np.allclose(h1, h0)
    assert baro.counts()["shear"][0] > 0 and baro.counts()["axis"][0] > 0


def test_state_round_trip_repeats_the_same_moves():
    """What a checkpoint keeps (generator, step sizes, counts) makes a resumed run identical."""
    a, b = ideal_gas(), ideal_gas()
    ba = CellBarostat("flexible", P_BAR, T, N, seed=5)
    sample(a, ba, 50, every=1)
    bb = CellBarostat("flexible", P_BAR, T, N, seed=999)
    bb.load_state(ba.state())
    b.setState(a.getState(getPositions=True, getVelocities=True, getParameters=True))
    for _ in range(30):
        assert ba.attempt(a) == bb.attempt(b)
    assert ba.counts() == bb.counts()
    assert np.allclose(a.getState().getPeriodicBoxVectors(asNumpy=True)._value,
                       b.getState().getPeriodicBoxVectors(asNumpy=True)._value)


def test_reduce_box_keeps_the_lattice():
    h = np.array([[2.0, 0, 0], [1.7, 2.0, 0], [-1.3, 1.9, 3.0]])
    r = reduce_box(h)
    assert abs(r[1, 0]) <= 1.0 and abs(r[2, 0]) <= 1.0 and abs(r[2, 1]) <= 1.0
    n = np.linalg.solve(h.T, r.T).T  # r = n h with integer n
    assert np.allclose(n, np.round(n)) and abs(abs(np.linalg.det(np.round(n))) - 1) < 1e-12


def test_bad_kind():
    with pytest.raises(ValueError, match="barostat kind must be one of isotropic, anisotropic, flexible"):
        CellBarostat("monoclinic", 1.0, 300.0, 10, seed=1)
