"""sus2md.export without OpenMM: the TorchScript adapter against the eager model.

References are the eager model itself (:func:`sus2md.nn.calc.evaluate`) times the unit factors
of :mod:`sus2md.units`, and exact identities (translations, supercells, primitive vs
conventional cell) that need no stored numbers.
"""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from ase.build import bulk, make_supercell

from sus2md.errors import ModelFileError, UsageError
from sus2md.export import METADATA_NAME, OpenMMAdapter, compile_for_openmm, load_compiled, scripted_adapter
from sus2md.io.data import species_index
from sus2md.nn.calc import evaluate, graph_from_atoms
from sus2md.nn.potential import SUS2Potential
from sus2md.train.init_model import init_mtp
from sus2md.units import EV_PER_A_TO_KJ_PER_MOL_NM, EV_TO_KJ_PER_MOL

SPECIES = ["Cu", "Se"]


@pytest.fixture(scope="module")
def model() -> SUS2Potential:
    """A small l2k2 model with random (seeded) coefficients: energies and forces are non-trivial."""
    pot = SUS2Potential.from_mtp(init_mtp(2, 2, SPECIES, cutoff=4.5, min_dist=2.0, radial_basis_size=6))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        pot.moment_coeffs.copy_(torch.randn(pot.moment_coeffs.shape, generator=gen, dtype=torch.float64))
        pot.radial.copy_(torch.randn(pot.radial.shape, generator=gen, dtype=torch.float64))
    return pot


def cu2se_cell(rattle: float = 0.05, seed: int = 1):
    """12-atom antifluorite Cu2Se cell, a = 5.84 Å (below 2 r_c: all images matter)."""
    a = bulk("SeCu2", "fluorite", a=5.84, cubic=True)
    if rattle:
        a.rattle(rattle, seed=seed)
    return a


def eager(model: SUS2Potential, atoms) -> tuple[float, np.ndarray]:
    """(energy kJ/mol, forces (N, 3) kJ/mol/nm) from the eager reference."""
    a = atoms.copy()
    a.arrays["mtp_type"] = species_index(a, SPECIES)
    r = evaluate(model, graph_from_atoms([a], model.cutoff))
    return float(r.energy[0].detach()) * EV_TO_KJ_PER_MOL, r.forces.detach().numpy() * EV_PER_A_TO_KJ_PER_MOL_NM


def adapter_eval(module, atoms, periodic: bool = True) -> tuple[float, np.ndarray]:
    module.set_species(torch.from_numpy(species_index(atoms, SPECIES)))
    box = torch.tensor(atoms.cell.array / 10) if periodic else None
    e, f = module(torch.tensor(atoms.positions / 10), box)
    return float(e), f.numpy()


def test_eager_scripted_saved_agree(model, tmp_path):
    atoms = cu2se_cell()
    e_ref, f_ref = eager(model, atoms)
    e_eager, f_eager = adapter_eval(OpenMMAdapter(model), atoms)
    e_scr, f_scr = adapter_eval(scripted_adapter(model, dtype="float64"), atoms)
    compile_for_openmm(model, tmp_path / "m.pt", dtype="float64")
    loaded, meta = load_compiled(tmp_path / "m.pt")
    e_load, f_load = adapter_eval(loaded, atoms)
    assert np.abs(f_ref).max() > 1.0  # the test model has real forces
    for e, f in [(e_eager, f_eager), (e_scr, f_scr), (e_load, f_load)]:
        assert e == pytest.approx(e_ref, rel=1e-12)
        np.testing.assert_allclose(f, f_ref, rtol=0, atol=1e-9 * np.abs(f_ref).max())


def test_energy_is_float64_and_forces_follow_input_dtype(model):
    atoms = cu2se_cell()
    module = scripted_adapter(model, dtype="float32")
    module.set_species(torch.from_numpy(species_index(atoms, SPECIES)))
    e, f = module(torch.tensor(atoms.positions / 10, dtype=torch.float64), torch.tensor(atoms.cell.array / 10))
    assert e.dtype == torch.float64 and f.dtype == torch.float64
    e32, f32 = module(torch.tensor(atoms.positions / 10, dtype=torch.float32), torch.tensor(atoms.cell.array / 10, dtype=torch.float32))
    assert f32.dtype == torch.float32


def test_float32_within_tolerance_of_float64(model):
    """float32 model: energy within 1e-5 relative and forces within 1e-4 of max |F| of float64."""
    atoms = cu2se_cell()
    e64, f64 = adapter_eval(scripted_adapter(model, dtype="float64"), atoms)
    e32, f32 = adapter_eval(scripted_adapter(model, dtype="float32"), atoms)
    assert e32 == pytest.approx(e64, rel=1e-5)
    np.testing.assert_allclose(f32, f64, rtol=0, atol=1e-4 * np.abs(f64).max())


def test_non_periodic_cluster(model):
    atoms = cu2se_cell()
    atoms.pbc = False
    e_ref, f_ref = eager(model, atoms)
    e, f = adapter_eval(scripted_adapter(model), atoms, periodic=False)
    assert e == pytest.approx(e_ref, rel=1e-12)
    np.testing.assert_allclose(f, f_ref, rtol=0, atol=1e-9 * np.abs(f_ref).max())


def test_shift_across_periodic_boundaries(model):
    atoms = cu2se_cell()
    module = scripted_adapter(model)
    e0, f0 = adapter_eval(module, atoms)
    moved = atoms.copy()
    moved.positions += 0.37 * atoms.cell[0] + 1.3 * atoms.cell[2] + np.array([0.2, -0.4, 0.1])
    e1, f1 = adapter_eval(module, moved)  # unwrapped
    moved.wrap()
    e2, f2 = adapter_eval(module, moved)
    assert e1 == pytest.approx(e0, rel=1e-12) and e2 == pytest.approx(e0, rel=1e-12)
    np.testing.assert_allclose(f1, f0, atol=1e-8)
    np.testing.assert_allclose(f2, f0, atol=1e-8)


def test_small_cell_equals_supercell(model):
    """A cell thinner than 2 r_c (5.84 Å < 9 Å) must see all images: E(2x2x2) = 8 E(cell)."""
    atoms = cu2se_cell()
    module = scripted_adapter(model)
    e1, f1 = adapter_eval(module, atoms)
    sc = atoms.repeat((2, 2, 2))
    e8, f8 = adapter_eval(module, sc)
    assert e8 == pytest.approx(8 * e1, rel=1e-11)
    np.testing.assert_allclose(f8[: len(atoms)], f1, atol=1e-8)


def test_triclinic_primitive_cell(model):
    """Primitive (triclinic) fluorite cell: 4 E(primitive) = E(cubic); rattled = eager."""
    module = scripted_adapter(model)
    prim = bulk("SeCu2", "fluorite", a=5.84)
    e_prim, _ = adapter_eval(module, prim)
    e_cub, _ = adapter_eval(module, cu2se_cell(rattle=0.0))
    assert 4 * e_prim == pytest.approx(e_cub, rel=1e-11)
    skew = make_supercell(prim, [[1, 0, 0], [1, 1, 0], [0, 1, 2]])  # more skewed, 6 atoms
    skew.rattle(0.05, seed=3)
    e_ref, f_ref = eager(model, skew)
    e, f = adapter_eval(module, skew)
    assert e == pytest.approx(e_ref, rel=1e-12)
    np.testing.assert_allclose(f, f_ref, rtol=0, atol=1e-9 * np.abs(f_ref).max())


def test_unbound_species_is_an_error(model):
    atoms = cu2se_cell()
    module = scripted_adapter(model)
    with pytest.raises(Exception, match="species are bound for 0 particles but the system has 12"):
        module(torch.tensor(atoms.positions / 10), torch.tensor(atoms.cell.array / 10))


def test_metadata_contents(model, tmp_path, shared):
    mtp = shared("reference", "cu2se.mtp")
    meta = compile_for_openmm(mtp, tmp_path / "m.pt", species=SPECIES)
    _, loaded = load_compiled(tmp_path / "m.pt")
    assert loaded == meta
    assert meta["species"] == SPECIES and meta["cutoff_A"] == 6.5 and meta["dtype"] == "float32"
    assert meta["units"] == "positions nm, box nm, energy kJ/mol, forces kJ/mol/nm"
    assert meta["sus2md_version"] and meta["torch_version"] == torch.__version__ and meta["format_version"] == 1
    assert len(meta["source_model"]["sha256"]) == 64 and meta["source_model"]["path"].endswith("cu2se.mtp")
    assert meta["created"]


def _rewrite_metadata(src, dst, **changes) -> None:
    extra = {METADATA_NAME: ""}
    module = torch.jit.load(str(src), _extra_files=extra)
    meta = json.loads(extra[METADATA_NAME])
    meta.update(changes)
    torch.jit.save(module, str(dst), _extra_files={METADATA_NAME: json.dumps(meta)})


def test_load_compiled_errors(model, tmp_path):
    good = tmp_path / "m.pt"
    compile_for_openmm(model, good, dtype="float64")
    _rewrite_metadata(good, tmp_path / "v99.pt", format_version=99, sus2md_version="9.0")
    with pytest.raises(ModelFileError, match=r"format_version 99.*reads format_version 1; recompile it with `sus2md compile"):
        load_compiled(tmp_path / "v99.pt")
    torch.jit.save(torch.jit.script(OpenMMAdapter(model)), str(tmp_path / "plain.pt"))
    with pytest.raises(ModelFileError, match="not a sus2md compiled model"):
        load_compiled(tmp_path / "plain.pt")
    (tmp_path / "text.pt").write_text("not a model\n")
    with pytest.raises(ModelFileError, match="not a TorchScript file"):
        load_compiled(tmp_path / "text.pt")
    with pytest.raises(ModelFileError, match="file not found"):
        load_compiled(tmp_path / "missing.pt")
    _rewrite_metadata(good, tmp_path / "old.pt", torch_version="1.13.1")
    with pytest.warns(UserWarning, match="compiled with torch 1.13, running torch"):
        load_compiled(tmp_path / "old.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_compiled(good)


def test_species_required_and_checked(model, tmp_path, shared):
    mtp = shared("reference", "cu2se.mtp")
    with pytest.raises(UsageError, match=r"names no elements \(2 species\); pass species"):
        compile_for_openmm(mtp, tmp_path / "m.pt")
    with pytest.raises(UsageError, match="3 species names given"):
        compile_for_openmm(model, tmp_path / "m.pt", species=["Cu", "Se", "S"])
    with pytest.raises(UsageError, match="dtype must be float32 or float64, got 'float16'"):
        compile_for_openmm(model, tmp_path / "m.pt", dtype="float16")


def test_cli_compile(tmp_path, shared):
    """`sus2md compile` as a user runs it (subprocess from the repository root)."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    mtp, out = shared("reference", "cu2se.mtp"), tmp_path / "cu2se.pt"
    run = lambda *a: subprocess.run([sys.executable, "-m", "sus2md", "compile", *map(str, a)], capture_output=True, text=True, cwd=root)
    r = run(mtp, "-o", out, "--species", "Cu,Se", "--dtype", "float64")
    assert r.returncode == 0, r.stderr
    assert "species      Cu, Se" in r.stdout and "dtype        float64" in r.stdout and "cutoff       6.5 Å" in r.stdout
    assert load_compiled(out)[1]["dtype"] == "float64"
    r = run(mtp, "-o", out)
    assert r.returncode == 2 and r.stderr.strip().startswith("error: the model names no elements (2 species)")


def test_verlet_skin_gives_exact_forces_along_a_trajectory():
    """The cached list (r_c + skin) must give the same energy/forces as a fresh list every call."""
    from tests.unit.helpers import jiggled_frames, random_model, small_cell

    model = random_model()
    atoms = small_cell(seed=3, n_rep=(2, 2, 2))
    with_skin = torch.jit.script(OpenMMAdapter(model, skin_A=0.5))
    no_skin = torch.jit.script(OpenMMAdapter(model, skin_A=0.0))
    species = torch.tensor(atoms.arrays["mtp_type"])
    with_skin.set_species(species)
    no_skin.set_species(species)
    for p, box in jiggled_frames(atoms):  # rebuilds happen
        e1, f1 = with_skin(p, box)
        e2, f2 = no_skin(p, box)
        assert torch.allclose(e1, e2, rtol=0, atol=1e-9) and torch.allclose(f1, f2, rtol=0, atol=1e-8)
    assert 1 < with_skin.nl_builds < 12
