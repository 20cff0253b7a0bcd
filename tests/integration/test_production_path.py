"""The path users run: ``sus2md run`` on the fastest backend by default, every backend from a
protocol, the compiled step cached and reused, one thread setting, any import order.

A 12-atom antifluorite Cu2Se cell under the authors' cu2se.mtp (Reference platform, float64);
the compiled step of its shape is compiled once per test session (tests/conftest.py keeps the
cache in build/test-cache).
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tests.integration.test_run import cu2se_cell, rows, shared_model, write_protocol

ROOT = Path(__file__).resolve().parents[2]
STAGES = [{"type": "nvt", "name": "md", "steps": 10, "temperature_K": 300, "timestep_fs": 1.0,
           "report_interval_steps": 5, "trajectory_interval_steps": 10}]


def run(tmp: Path, name: str, **top) -> tuple[list[dict[str, str]], dict]:
    from sus2md.engine.run import run_protocol
    from sus2md.protocol import load_protocol

    path = write_protocol(tmp, STAGES, name=name, **top)
    run_protocol(load_protocol(path), tmp / f"run_{name}", progress=False)
    return rows(tmp / f"run_{name}" / "thermo.csv"), json.loads((tmp / f"run_{name}" / "provenance.json").read_text())


@pytest.fixture(scope="module")
def compiled_pt(tmp_path_factory) -> Path:
    from sus2md.export import compile_for_openmm

    path = tmp_path_factory.mktemp("pt") / "cu2se.pt"
    compile_for_openmm(shared_model(), path, species=["Cu", "Se"], dtype="float64")
    return path


@pytest.mark.parametrize("backend", ["auto", "compiled", "torch", "python"])
@pytest.mark.parametrize("model_kind", ["mtp", "pt"])
def test_every_backend_runs_from_a_protocol_with_the_same_numbers(tmp_path, backend, model_kind, compiled_pt):
    model = {"path": str(shared_model()), "species": ["Cu", "Se"]} if model_kind == "mtp" else {"path": str(compiled_pt)}
    thermo, prov = run(tmp_path, "b", backend=backend, model=model)
    ref, _ = run(tmp_path, "ref", backend="torch")
    for a, b in zip(thermo, ref, strict=True):
        assert float(a["potential_energy_eV"]) == pytest.approx(float(b["potential_energy_eV"]), abs=1e-8)
        assert float(a["temperature_K"]) == pytest.approx(float(b["temperature_K"]), abs=1e-6)
        # the compiled backend's pressure comes from its own step's virial, the others' from autograd
        assert float(a["pressure_bar"]) == pytest.approx(float(b["pressure_bar"]), abs=1e-6, rel=1e-9)
    engine = prov["engine"]
    assert engine["requested"] == backend
    assert engine["backend"] == ("compiled" if backend == "auto" else backend)  # the default is the fast one
    assert engine["dtype"] == "float64" and engine["device"] == "cpu" and engine["threads"] == 1
    if engine["backend"] == "compiled":
        assert engine["artefact"]["key"] and engine["fallback_reason"] is None


def test_default_backend_says_what_ran(tmp_path, caplog):
    """``sus2md run`` logs what runs at INFO by default (the CLI turns the engine's INFO lines on)."""
    from sus2md.cli import main

    path = write_protocol(tmp_path, STAGES, name="cli")
    main(["run", str(path), "--out", str(tmp_path / "cli_run"), "--no-progress"])
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("sus2md.engine")]
    assert any("SUS2 force: backend compiled (asked: auto), float64, device cpu" in m and "1 thread(s)" in m
               for m in lines), lines


def test_auto_falls_back_and_says_why_when_nothing_can_be_compiled(tmp_path, monkeypatch):
    from sus2md.errors import CompileError

    blocker = tmp_path / "not_a_directory"
    blocker.write_text("")
    monkeypatch.setenv("SUS2MD_CACHE_DIR", str(blocker / "cache"))  # cannot be created: no package, no compile
    _, prov = run(tmp_path, "fallback", backend="auto")
    assert prov["engine"]["backend"] == "torch"
    assert "cannot create the compile cache" in prov["engine"]["fallback_reason"]
    with pytest.raises(CompileError, match="SUS2MD_CACHE_DIR"):
        run(tmp_path, "insist", backend="compiled")


def test_a_pt_from_before_embedded_models_runs_auto_on_torch_and_refuses_compiled(tmp_path):
    """tests/corpus/tiny.pt was written before .pt files carried their model."""
    from sus2md.engine.force import make_force
    from sus2md.errors import CompileError

    old = ROOT / "tests" / "corpus" / "tiny.pt"
    force, info = make_force(old, ["Cu", "Se"], backend="auto", periodic=False)
    assert info.backend == "torch" and "holds no source model" in info.fallback_reason
    with pytest.raises(CompileError, match="recompile it"):
        make_force(old, ["Cu", "Se"], backend="compiled", periodic=False)


def test_compiled_step_is_cached_per_shape_and_reused_by_other_coefficients(tmp_path, monkeypatch):
    import torch

    from sus2md.export.aot import compiled_adapter
    from sus2md.export.padded import PaddedAdapter
    from tests.unit.helpers import random_model, small_cell

    monkeypatch.setenv("SUS2MD_CACHE_DIR", str(tmp_path / "cache"))
    atoms = small_cell(seed=2, n_rep=(2, 1, 1))
    index = torch.tensor(atoms.arrays["mtp_type"])
    pos, box = torch.tensor(atoms.positions) / 10, torch.tensor(atoms.cell.array) / 10
    arts = []
    for seed in (0, 1):  # same shape, other coefficients: one compile
        model = random_model(seed=seed)
        adapter, art = compiled_adapter(model, index, species=["Cu", "Se"])
        ref = PaddedAdapter(model)
        ref.set_species(index)
        (e, f), (e_ref, f_ref) = adapter(pos, box), ref(pos, box)
        assert float(e) == pytest.approx(float(e_ref), abs=1e-9) and torch.allclose(f, f_ref, atol=1e-9)
        arts.append(art)
    assert not arts[0].cached and arts[1].cached and arts[0].path == arts[1].path
    assert json.loads(arts[0].path.with_suffix(".json").read_text())["compile_s"] > 0
    assert len(list((tmp_path / "cache" / "compiled").glob("*.pt2"))) == 1


def test_a_package_compiled_from_other_step_code_is_never_loaded(tmp_path, monkeypatch):
    """The cache key carries a digest of sus2md/nn and sus2md/export: after an upgrade (or a local
    edit) the step is compiled again instead of loading a package traced from older code (found: a
    stale package ran the EMT l2k3 model at half the speed of a fresh one)."""
    import shutil

    import torch

    from sus2md.export import aot
    from tests.unit.helpers import random_model

    model = random_model(seed=0)
    key = aot.artefact_key(model, torch.device("cpu"))
    assert key.endswith(f"-c{aot.code_digest()}")
    src = Path(aot.__file__).resolve().parents[1]
    copy = tmp_path / "sus2md"
    for sub in ("nn", "export"):
        shutil.copytree(src / sub, copy / sub)
    digest = aot.code_digest.__wrapped__
    monkeypatch.setattr(aot, "__file__", str(copy / "export" / "aot.py"))
    same = digest()
    (copy / "nn" / "potential.py").write_text((copy / "nn" / "potential.py").read_text() + "\n# edited\n")
    assert same == aot.code_digest() and digest() != same


def test_threads_default_to_idle_usable_cores_and_one_setting_drives_both(tmp_path):
    import torch

    from sus2md.engine.threads import apply_threads, default_threads, usable_cores

    n = default_threads()
    assert 1 <= n <= len(usable_cores())
    assert apply_threads(None) == torch.get_num_threads() >= 1
    _, prov = run(tmp_path, "thr", threads=2, platform="CPU")
    assert prov["engine"]["threads"] == 2 and prov["platform"]["properties"]["Threads"] == "2"


@pytest.mark.parametrize("order", ["openmm first", "sus2md first"])
def test_torchforce_works_whatever_the_import_order(order):
    """A plain OpenMM script starts with ``import openmm``; the Torch plugin must still load."""
    imports = "import openmm\nimport sus2md" if order == "openmm first" else "import sus2md\nimport openmm"
    script = textwrap.dedent(f"""
        {imports.splitlines()[0]}
        {imports.splitlines()[1]}
        from ase.build import bulk
        from sus2md.engine.system import build_system
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
        force = sus2md.to_openmm_force({str(ROOT / 'tests' / 'corpus' / 'tiny.mtp')!r}, atoms, backend="torch",
                                       species=["Cu", "Se"])
        top, system, pos = build_system(atoms, force)
        ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("CPU"))
        ctx.setPositions(pos)
        print("ENERGY", ctx.getState(getEnergy=True).getPotentialEnergy()._value)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    energy = float(out.stdout.split("ENERGY")[1])
    assert np.isfinite(energy)


def test_ase_calculator_keeps_its_neighbour_list_and_runs_compiled():
    from ase import units
    from ase.md.verlet import VelocityVerlet

    from sus2md.interop.ase import SUS2Calculator

    atoms = cu2se_cell().repeat(2)
    atoms.calc = calc = SUS2Calculator(shared_model(), species=["Cu", "Se"], threads=1)
    assert calc.backend == "compiled"
    atoms.rattle(0.01, seed=1)
    e0 = atoms.get_total_energy()
    VelocityVerlet(atoms, timestep=1.0 * units.fs).run(30)
    assert calc.adapter.nl_builds <= 3  # 31 calls, the list kept while atoms move less than skin/2
    assert abs(atoms.get_total_energy() - e0) < 1e-3 * len(atoms)
