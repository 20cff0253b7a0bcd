"""Data sets through ASE (load_frames, labels) and structures for simulation (read_structure,
validate_structure)."""
import ase.io
import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, fcc111

from sus2md.errors import DataFileError, StructureError, UnknownSpeciesError, UsageError
from sus2md.io.cfg import write_cfg
from sus2md.io.data import labels, load_frames, species_index
from sus2md.io.structures import read_structure, validate_structure

EMT_SPECIES = ["Al", "Ni", "Cu", "Pd", "Ag", "Pt", "Au"]
ALLOY_SPECIES = ("Li,Be,Na,Mg,Al,Si,K,Ca,Sc,Ti,V,Cr,Mn,Fe,Co,Ni,Cu,Zn,Ga,Ge,Sr,Y,Zr,Nb,Mo,Ru,Rh,Pd,Ag,Cd,In,"
                 "Sn,La,Ce,Pr,Nd,Sm,Gd,Tb,Dy,Ho,Er,Tm,Lu,Hf,Ta,W,Re,Os,Ir,Pt,Au,Pb").split(",")


# --------------------------------------------------------------------------------------------
# load_frames / labels


def test_emt_extxyz_with_species(shared):
    frames = load_frames(shared("data", "emt_alloy_test.extxyz"), species=EMT_SPECIES)
    assert len(frames) == 768  # ../shared/data/README.md
    assert sum(len(a) for a in frames) == 42082
    for a in frames[:50]:
        assert [EMT_SPECIES[t] for t in a.arrays["mtp_type"]] == a.get_chemical_symbols()
    a = frames[0]
    lab = labels(a)
    assert lab["energy"] == a.get_potential_energy()
    np.testing.assert_array_equal(lab["forces"], a.get_forces())
    # W = -sigma * V (SPEC-sus2 6.3)
    np.testing.assert_allclose(lab["virial_eV"], -a.get_stress(voigt=False) * a.get_volume(), rtol=1e-14)
    assert a.info["config_type"] == "bulk_fcc_small"


def test_extxyz_needs_species_or_stored_types(shared):
    path = shared("data", "emt_alloy_test.extxyz")
    with pytest.raises(UsageError, match=r"emt_alloy_test\.extxyz: elements .* need a species list"):
        load_frames(path, index="0:3")
    with pytest.raises(UnknownSpeciesError,
                       match=r"emt_alloy_test\.extxyz: elements Al, Ni, Pd, Ag, Pt, Au are not in the model's "
                             r"species \[Cu, Se\]"):
        load_frames(path, species=["Cu", "Se"], index="0:3")


def test_dft_split_types_from_info_match_alloy_species(shared):
    path = shared("data", "sus2_alloy_dft_split_test.extxyz")
    stored = load_frames(path, index="0:20")
    mapped = load_frames(path, species=ALLOY_SPECIES, index="0:20")
    for a, b in zip(stored, mapped):
        np.testing.assert_array_equal(a.arrays["mtp_type"], b.arrays["mtp_type"])


def test_load_frames_cfg_index_and_labels(tmp_path):
    frames = []
    for k in range(5):
        a = bulk("Cu", "fcc", a=3.6, cubic=True)
        a.positions[0] += 0.01 * k
        a.info["virial_eV"] = np.eye(3) * k
        frames.append(a)
    path = tmp_path / "d.cfg"
    write_cfg(path, frames, species=["Cu"])
    assert len(load_frames(path)) == 5
    assert len(load_frames(path, index="1:4")) == 3
    (last,) = load_frames(path, species=["Cu"], index=-1)
    assert last.get_chemical_symbols() == ["Cu"] * 4
    np.testing.assert_array_equal(labels(last)["virial_eV"], np.eye(3) * 4)
    assert labels(last)["energy"] is None and labels(last)["forces"] is None


def test_load_frames_missing_file(tmp_path):
    with pytest.raises(UsageError, match="file not found: .*missing.extxyz"):
        load_frames(tmp_path / "missing.extxyz")


def test_load_frames_unreadable_file(tmp_path):
    path = tmp_path / "junk.extxyz"
    path.write_text("this is not\nan extxyz file\n")
    with pytest.raises(DataFileError, match=r"junk\.extxyz: could not be read by ASE"):
        load_frames(path, species=["Cu"])


def test_species_index():
    atoms = Atoms("SeCuCu")
    assert species_index(atoms, ["Cu", "Se"]).tolist() == [1, 0, 0]
    with pytest.raises(UnknownSpeciesError, match=r"structure\.xyz: elements Zr, Hf are not in the model's species \[Cu, Se\]"):
        species_index(Atoms("ZrHfCu"), ["Cu", "Se"], source="structure.xyz")
    with pytest.raises(UnknownSpeciesError, match=r"s: element Zr is not"):
        species_index(Atoms("Zr"), ["Cu"], source="s")


# --------------------------------------------------------------------------------------------
# read_structure


def test_lammps_data_cu2se(shared):
    path = shared("reference", "cu2se_1500.lammps-data")
    atoms = read_structure(path)  # ASE guesses Cu/Se from the Masses section
    assert atoms.get_chemical_formula() == "Cu1000Se500"
    assert atoms.pbc.all()
    np.testing.assert_allclose(atoms.cell.cellpar(), [29.1997336302, 29.1997336302, 29.1997336302, 90, 90, 90],
                               atol=1e-8)
    typed = read_structure(path, species=["Cu", "Se"])
    assert typed.get_chemical_formula() == "Cu1000Se500"
    assert np.bincount(typed.arrays["mtp_type"]).tolist() == [1000, 500]
    np.testing.assert_array_equal(typed.arrays["mtp_type"], typed.arrays["type"] - 1)
    validate_structure(typed, source=path.name)
    with pytest.raises(UnknownSpeciesError, match=r"LAMMPS types 2 have no element in the model's species \[Cu\]"):
        read_structure(path, species=["Cu"])


def test_lammps_data_without_masses_takes_names_from_species(tmp_path):
    path = tmp_path / "nomass.lammps-data"
    ase.io.write(path, bulk("NaCl", "rocksalt", a=5.6, cubic=True), format="lammps-data", atom_style="atomic",
                 specorder=["Na", "Cl"])
    assert "Masses" not in path.read_text()
    atoms = read_structure(path, species=["Na", "Cl"])
    assert atoms.get_chemical_formula() == "Cl4Na4"
    assert atoms.get_chemical_symbols()[0] == "Na"


@pytest.mark.parametrize("name,fmt", [("s.extxyz", None), ("s.xyz", "xyz"), ("s.cif", None), ("POSCAR", None),
                                      ("s.vasp", None), ("s.pdb", None), ("s.cfg", None), ("s.lmp", "lammps-data")])
def test_read_structure_formats(tmp_path, name, fmt):
    ref = bulk("Cu", "fcc", a=3.6, cubic=True) * (2, 1, 1)
    path = tmp_path / name
    if name.endswith(".cfg"):
        write_cfg(path, ref, species=["Cu"])
    elif name.endswith(".lmp"):
        ase.io.write(path, ref, format="lammps-data", masses=True)
    else:
        ase.io.write(path, ref, format={"s.xyz": "extxyz", "POSCAR": "vasp", "s.vasp": "vasp"}.get(name))
    atoms = read_structure(path, format=fmt, species=["Cu"])
    assert len(atoms) == 8 and atoms.get_chemical_symbols() == ["Cu"] * 8
    assert atoms.arrays["mtp_type"].tolist() == [0] * 8
    np.testing.assert_allclose(atoms.cell.cellpar(), ref.cell.cellpar(), atol=1e-3)
    np.testing.assert_allclose(atoms.get_scaled_positions() % 1.0, ref.get_scaled_positions() % 1.0, atol=1e-3)


def test_read_structure_errors(tmp_path):
    with pytest.raises(UsageError, match="file not found: .*none.cif"):
        read_structure(tmp_path / "none.cif")
    ok = tmp_path / "ok.xyz"
    ase.io.write(ok, bulk("Cu"), format="extxyz")
    with pytest.raises(UsageError, match="unknown structure format 'gro2'; use one of extxyz, cif"):
        read_structure(ok, format="gro2")
    with pytest.raises(UnknownSpeciesError, match=r"ok\.xyz: element Cu is not in the model's species \[Na, Cl\]"):
        read_structure(ok, species=["Na", "Cl"])
    bad = tmp_path / "bad.cif"
    bad.write_text("not a cif\n")
    with pytest.raises(DataFileError, match=r"bad\.cif: could not be read as cif .*pass format= one of"):
        read_structure(bad)
    odd = tmp_path / "structure.unknownext"
    odd.write_text("1 2 3\n")
    with pytest.raises(DataFileError, match=r"structure\.unknownext: could not be read with ASE's format auto-detection"):
        read_structure(odd)


# --------------------------------------------------------------------------------------------
# validate_structure


def test_validate_accepts_good_structures():
    validate_structure(bulk("Cu", "fcc", a=3.6) * (3, 3, 3))
    validate_structure(fcc111("Cu", size=(2, 2, 3), vacuum=5.0, periodic=False))  # pbc T T F
    validate_structure(Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]]))  # molecule, no cell


def test_validate_empty_and_nonfinite():
    with pytest.raises(StructureError, match="POSCAR: the structure has no atoms"):
        validate_structure(Atoms(), source="POSCAR")
    atoms = bulk("Cu", cubic=True)
    atoms.positions[2, 1] = np.nan
    with pytest.raises(StructureError, match=r"structure: atom 2 \(Cu\) has a non-finite position"):
        validate_structure(atoms)
    atoms = bulk("Cu", cubic=True)
    atoms.cell[1, 1] = np.inf
    with pytest.raises(StructureError, match="the cell contains nan or inf"):
        validate_structure(atoms)


def test_validate_degenerate_cells():
    atoms = Atoms("Cu2", positions=[[0, 0, 0], [1.5, 1.5, 0]], cell=[[3, 0, 0], [0, 3, 0], [3, 3, 0]], pbc=True)
    with pytest.raises(StructureError, match=r"the cell is degenerate along the periodic directions abc \(volume 0\)"):
        validate_structure(atoms)
    slab = Atoms("Cu2", positions=[[0, 0, 0], [1.5, 0, 2]], cell=[[3, 0, 0], [6, 0, 0], [0, 0, 10]],
                 pbc=[True, True, False])
    with pytest.raises(StructureError, match=r"degenerate along the periodic directions ab \(area 0\)"):
        validate_structure(slab)
    zero = Atoms("Cu", cell=[[3, 0, 0], [0, 0, 0], [0, 0, 3]], pbc=True)
    with pytest.raises(StructureError, match="periodic direction b has a zero lattice vector"):
        validate_structure(zero)


def test_validate_overlaps():
    atoms = Atoms("CuSeCu", positions=[[0, 0, 0], [3, 0, 0], [0.3, 0, 0]], cell=[10, 10, 10], pbc=True)
    with pytest.raises(StructureError, match=r"atoms 0 \(Cu\) and 2 \(Cu\) are 0\.3 Å apart, closer than "
                                             r"min_distance_A = 0\.5 Å \(1 close pairs in all\)"):
        validate_structure(atoms)
    validate_structure(atoms, min_distance_A=0.2)
    # across the periodic boundary
    atoms = Atoms("CuSe", positions=[[0.1, 5, 5], [9.8, 5, 5]], cell=[10, 10, 10], pbc=True)
    with pytest.raises(StructureError, match=r"atoms 0 \(Cu\) and 1 \(Se\) are 0\.3 Å apart"):
        validate_structure(atoms)
    atoms.pbc = False
    validate_structure(atoms)
    # an atom and its own image in a tiny cell
    with pytest.raises(StructureError, match=r"atom 0 \(Cu\) is 0\.4 Å from its own periodic image"):
        validate_structure(Atoms("Cu", cell=[0.4, 5, 5], pbc=True))
    # duplicated atoms
    with pytest.raises(StructureError, match=r"atoms 0 \(Cu\) and 1 \(Cu\) are 0 Å apart"):
        validate_structure(Atoms("Cu2", positions=[[1, 1, 1], [1, 1, 1]]), source="dup")
