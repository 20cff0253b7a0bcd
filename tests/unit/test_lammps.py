"""LAMMPS export: files parse back (data file types -> species, input regexes, model round trip)."""
import re

import ase.io
import numpy as np
import pytest
from ase import Atoms

from sus2md.errors import UnknownSpeciesError, UsageError
from sus2md.io.mtp import read_mtp, write_mtp
from sus2md.interop.lammps import MDSettings, export_lammps

from .helpers import cluster, random_model, small_cell


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("lmp") / "cuse.mtp"
    write_mtp(random_model(species=("Cu", "Se")).to_mtp(), path)
    return path


def _structure(triclinic: bool = True) -> Atoms:
    a = small_cell(seed=2, n_rep=(2, 1, 1), triclinic=triclinic)
    a.set_chemical_symbols(["Se"] * 3 + ["Cu"] * (len(a) - 3))  # Se first: ASE's default order would differ
    del a.arrays["mtp_type"]
    return a


def _read_data(path) -> Atoms:
    return ase.io.read(path, format="lammps-data", atom_style="atomic", units="metal")


def test_data_file_types_follow_model_species(model_file, tmp_path):
    atoms = _structure()
    out = export_lammps(model_file, atoms, tmp_path / "run")
    back = _read_data(out.data)
    assert np.array_equal(back.arrays["type"] - 1, np.where(np.array(atoms.get_chemical_symbols()) == "Cu", 0, 1))
    assert back.get_chemical_symbols() == atoms.get_chemical_symbols()  # from the Masses section
    assert np.allclose(back.cell.cellpar(), atoms.cell.cellpar(), atol=1e-8)
    d0 = atoms.get_all_distances(mic=True)
    assert np.allclose(back.get_all_distances(mic=True), d0, atol=1e-8)
    text = out.data.read_text()
    assert re.search(r"^\s*2 atom types", text, re.M)
    assert re.search(r"^1\s+63\.54\d*\s+# Cu$", text, re.M) and re.search(r"^2\s+78\.9\d*\s+# Se$", text, re.M)


def test_data_file_keeps_unused_species_types(model_file, tmp_path):
    atoms = Atoms("Se2", positions=[[0, 0, 0], [1.2, 1.2, 1.2]], cell=np.eye(3) * 4.8, pbc=True)
    out = export_lammps(model_file, atoms, tmp_path)
    assert re.search(r"^\s*2 atom types", out.data.read_text(), re.M)
    assert set(_read_data(out.data).arrays["type"]) == {2}


def test_input_script(model_file, tmp_path):
    md = MDSettings(ensemble="npt", temperature_K=600, pressure_bar=1.0, steps=5000, timestep_fs=2.0,
                    heat_flux_every=10)
    text = export_lammps(model_file, _structure(), tmp_path, md=md).input.read_text()
    for pattern in [r"^units\s+metal$", r"^atom_style\s+atomic$", r"^boundary\s+p p p$", r"^newton\s+on$",
                    r"^read_data\s+structure\.data$", r"^pair_style\s+sus2mtp model\.mtp$", r"^pair_coeff\s+\* \*$",
                    r"^timestep\s+0\.002$", r"^velocity\s+all create 600 12345 mom yes rot no dist gaussian$",
                    r"^fix\s+integrate all npt temp 600 600 0\.2 iso 1 1 2$", r"^run\s+5000$",
                    r"^compute\s+stress_atom all centroid/stress/atom NULL virial$",
                    r"^compute\s+flux all heat/flux ke_atom pe_atom stress_atom$",
                    r"^fix\s+heat_flux all print 10 ", r"^dump_modify\s+traj element Cu Se sort id$"]:
        assert re.search(pattern, text, re.M), pattern
    assert "type 1 = Cu" in text  # species mapping stated in the header comment


def test_cluster_is_boxed_and_shrink_wrapped(model_file, tmp_path):
    c = cluster(5, seed=1)
    c.set_chemical_symbols(["Cu", "Se", "Cu", "Se", "Cu"])
    out = export_lammps(model_file, c, tmp_path, md=MDSettings(ensemble="nve"))
    text = out.input.read_text()
    assert re.search(r"^boundary\s+s s s$", text, re.M) and re.search(r"^fix\s+integrate all nve$", text, re.M)
    back = _read_data(out.data)
    assert np.allclose(back.get_all_distances(), c.get_all_distances(), atol=1e-8)


def test_model_file_round_trip(model_file, tmp_path):
    out = export_lammps(model_file, _structure(), tmp_path)
    a, b = read_mtp(model_file), read_mtp(out.model)
    assert b.species_names == ["Cu", "Se"]
    for key in ("shift_coeffs", "scal_coeffs", "radial_coeffs", "species_coeffs", "moment_coeffs",
                "alpha_index_basic", "alpha_index_times", "alpha_moment_mapping"):
        assert np.array_equal(np.asarray(getattr(a, key)), np.asarray(getattr(b, key))), key
    assert (a.L, a.scaling, a.max_dist, a.min_dist, a.scaling_map, a.radial_basis_type) == \
           (b.L, b.scaling, b.max_dist, b.min_dist, b.scaling_map, b.radial_basis_type)
    readme = out.readme.read_text()
    assert "| 1 | 0 | Cu |" in readme and "| 2 | 1 | Se |" in readme and "mpirun -np 64 lmp -in in.lammps" in readme


def test_errors(model_file, tmp_path):
    atoms = _structure()
    with pytest.raises(UsageError, match="npt needs pressure_bar"):
        export_lammps(model_file, atoms, tmp_path, md=MDSettings(ensemble="npt"))
    with pytest.raises(UsageError, match="only used with ensemble npt"):
        export_lammps(model_file, atoms, tmp_path, md=MDSettings(pressure_bar=1.0))
    with pytest.raises(UsageError, match="ensemble must be one of"):
        export_lammps(model_file, atoms, tmp_path, md=MDSettings(ensemble="nph"))
    with pytest.raises(UsageError, match="npt needs a structure periodic"):
        export_lammps(model_file, cluster(3), tmp_path, md=MDSettings(ensemble="npt", pressure_bar=1.0))
    bad = atoms.copy()
    bad.symbols[0] = "S"
    with pytest.raises(UnknownSpeciesError, match="S"):
        export_lammps(model_file, bad, tmp_path)
    with pytest.raises(UsageError, match="3 species names given"):
        export_lammps(model_file, atoms, tmp_path, species=["Cu", "Se", "S"])


def _cli(args: list[str]) -> None:
    """Run the console entry point; success may return or exit with status 0."""
    from sus2md.cli import main

    try:
        main(args)
    except SystemExit as e:
        assert e.code in (0, None), e.code


def test_cli_export_lammps(model_file, tmp_path):
    structure = tmp_path / "s.extxyz"
    ase.io.write(structure, _structure(), format="extxyz")
    _cli(["export-lammps", str(model_file), str(structure), "-o", str(tmp_path / "out"), "--species", "Cu,Se",
          "--temperature-K", "500", "--ensemble", "nvt", "--steps", "100", "--timestep-fs", "0.5"])
    text = (tmp_path / "out" / "in.lammps").read_text()
    assert re.search(r"^fix\s+integrate all nvt temp 500 500 0\.05$", text, re.M)
    assert re.search(r"^run\s+100$", text, re.M)


def test_cli_reads_lammps_data_with_species(model_file, tmp_path, shared):
    _cli(["export-lammps", str(model_file), str(shared("reference", "cu2se_1500.lammps-data")), "-o",
          str(tmp_path), "--species", "Cu,Se", "--steps", "10"])
    back = _read_data(tmp_path / "structure.data")
    assert len(back) == 1500 and np.sum(back.arrays["type"] == 1) == 1000


def test_cli_usage_error_exits_2(model_file, tmp_path, capsys):
    from sus2md.cli import main

    structure = tmp_path / "s.extxyz"
    ase.io.write(structure, _structure(), format="extxyz")
    with pytest.raises(SystemExit) as exc:
        main(["export-lammps", str(model_file), str(structure), "-o", str(tmp_path / "out"), "--ensemble", "npt"])
    assert exc.value.code == 2
    assert "npt needs pressure_bar" in capsys.readouterr().err


# --- issue 12 item 6: skewed cells, README statements ---------------------------------------

def _header_box(path) -> tuple[float, float, float, float, float, float]:
    """(lx, ly, lz, xy, xz, yz) from a LAMMPS data file header (tilts 0 for an orthogonal box)."""
    text = path.read_text()
    lengths = []
    for axis in "xyz":
        lo, hi = re.search(rf"^\s*(\S+)\s+(\S+)\s+{axis}lo {axis}hi", text, re.M).groups()
        lengths.append(float(hi) - float(lo))
    tilt = re.search(r"^\s*(\S+)\s+(\S+)\s+(\S+)\s+xy xz yz", text, re.M)
    return (*lengths, *(map(float, tilt.groups()) if tilt else (0.0, 0.0, 0.0)))


def _skewed(kind: str) -> Atoms:
    """Cells whose LAMMPS form (ASE's rotation to a lower-triangular cell) has tilts beyond the limits."""
    from ase.build import bulk

    if kind == "strained_primitive_fcc":  # the case, 3x3x3 instead of 5x5x5 to stay fast
        a = bulk("Cu", "fcc", a=3.6).repeat(3)
        a.set_cell(a.cell.array @ (np.eye(3) + [[0.08, 0.2, 0.0], [0, 0, 0], [0, 0, 0]]), scale_atoms=True)
    else:  # the same cubic crystal described by long, strongly tilted lattice vectors
        a = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 1, 1))
        a.set_cell(np.array([[1, 0, 0], [3, 1, 0], [-2, 4, 1]]) @ a.cell.array, scale_atoms=False)
    rng = np.random.default_rng(3)
    a.positions += rng.normal(scale=0.05, size=a.positions.shape)
    a.set_chemical_symbols(np.where(rng.integers(0, 2, len(a)) == 0, "Cu", "Se"))
    return a


@pytest.mark.parametrize("kind", ["strained_primitive_fcc", "unimodular_supercell"])
def test_skewed_cell_is_reduced_to_lammps_tilt_limits_and_stays_the_same_crystal(model_file, tmp_path, kind):
    from ase.calculators.lammps import Prism

    from sus2md.interop.ase import SUS2Calculator

    atoms = _skewed(kind)
    lx, ly, _, xy, xz, yz = Prism(atoms.cell.array).get_lammps_prism()[[0, 1, 2, 3, 4, 5]]
    assert max(abs(xy) / lx, abs(xz) / lx, abs(yz) / ly) > 0.5 + 1e-6  # LAMMPS: "Triclinic box skew is too large"
    out = export_lammps(model_file, atoms, tmp_path)
    lx, ly, lz, xy, xz, yz = _header_box(out.data)
    assert abs(xy) <= lx / 2 and abs(xz) <= lx / 2 and abs(yz) <= ly / 2, (lx, ly, xy, xz, yz)
    back = _read_data(out.data)
    assert abs(back.get_volume() - atoms.get_volume()) < 1e-8 * atoms.get_volume()
    assert back.get_chemical_symbols() == atoms.get_chemical_symbols()
    calc = SUS2Calculator(str(model_file))
    e0 = calc.get_potential_energy(atoms.copy())
    e1 = calc.get_potential_energy(back)
    assert abs(e1 - e0) < 1e-9 * max(1.0, abs(e0)), (e0, e1)


def test_skewed_slab_keeps_its_non_periodic_direction(model_file, tmp_path):
    """A slab (periodic in a, b only) is reduced in-plane; nothing is wrapped along c."""
    from sus2md.interop.ase import SUS2Calculator

    atoms = _skewed("unimodular_supercell")
    atoms.set_cell([atoms.cell[0], atoms.cell[1], [0.0, 0.0, 40.0]], scale_atoms=False)
    atoms.positions[:, 2] -= atoms.positions[:, 2].mean()  # the slab crosses z = 0, the cell's c face
    atoms.pbc = [True, True, False]
    out = export_lammps(model_file, atoms, tmp_path)
    lx, ly, lz, xy, xz, yz = _header_box(out.data)
    assert abs(xy) <= lx / 2
    back = _read_data(out.data)
    back.pbc = atoms.pbc
    calc = SUS2Calculator(str(model_file))
    assert abs(calc.get_potential_energy(back) - calc.get_potential_energy(atoms.copy())) < 1e-9 * len(atoms)


def test_readme_states_the_table_error_and_the_confirmed_virial_swap(model_file, tmp_path):
    readme = export_lammps(model_file, _structure(), tmp_path, md=MDSettings(heat_flux_every=5)).readme.read_text()
    flat = " ".join(readme.split())
    assert "1e-9" not in readme
    assert "1.1e-6 eV per cell (7.6e-10 eV/atom)" in flat and "3e-8 eV/Å" in flat and "tabstep²" in flat
    assert "swap the off-diagonal components (confirmed)" in flat and "This is confirmed" in flat
    for line in ["| xy (`c_ID[4]`) | yx = Σ r_y·F_x | `c_ID[7]` |", "| yx (`c_ID[7]`) | xy = Σ r_x·F_y | `c_ID[4]` |",
                 "| xz (`c_ID[5]`) | zx = Σ r_z·F_x | `c_ID[8]` |", "| zx (`c_ID[8]`) | xz = Σ r_x·F_z | `c_ID[5]` |",
                 "| yz (`c_ID[6]`) | zy = Σ r_z·F_y | `c_ID[9]` |", "| zy (`c_ID[9]`) | yz = Σ r_y·F_z | `c_ID[6]` |"]:
        assert line in readme, line
    # J_a = sum e v_a - sum_b S_ab v_b with S_ab read from the transposed slot ba
    assert "v_e*vx-(c_S[1]*vx+c_S[7]*vy+c_S[8]*vz)" in readme
    assert "v_e*vy-(c_S[4]*vx+c_S[2]*vy+c_S[9]*vz)" in readme
    assert "v_e*vz-(c_S[5]*vx+c_S[6]*vy+c_S[3]*vz)" in readme
    assert "heat_flux.txt` of this directory" in flat


@pytest.mark.parametrize("name, atoms, match", [
    ("empty", Atoms(cell=np.eye(3) * 4, pbc=True), "structure has no atoms"),
    ("nan", Atoms("CuSe", positions=[[0, 0, 0], [np.nan, 1, 1]], cell=np.eye(3) * 4, pbc=True), "non-finite position"),
    ("degenerate", Atoms("CuSe", positions=[[0, 0, 0], [1, 1, 1]], cell=[[4, 0, 0], [8, 0, 0], [0, 0, 4]], pbc=True),
     "the cell is degenerate"),
    ("overlap", Atoms("CuSe", positions=[[0, 0, 0], [0.1, 0, 0]], cell=np.eye(3) * 4, pbc=True), "0.1 Å apart"),
])
def test_unusable_structures_are_refused_before_writing(model_file, tmp_path, name, atoms, match):
    from sus2md.errors import StructureError

    with pytest.raises(StructureError, match=rf"^s\.extxyz: .*{re.escape(match)}"):
        export_lammps(model_file, atoms, tmp_path / name, source="s.extxyz")
    assert not (tmp_path / name).exists()


@pytest.mark.parametrize("seed", [0, -1])
def test_velocity_seed_must_be_positive(model_file, tmp_path, seed):
    with pytest.raises(UsageError, match=rf"seed must be a positive integer .*got {seed}"):
        export_lammps(model_file, _structure(), tmp_path, md=MDSettings(seed=seed))
