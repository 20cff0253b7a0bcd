"""MLIP .cfg reading and writing: the authors' alloy test set, round trips, the virial sign and
one pinned message per kind of malformed input."""
import time

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from sus2md.errors import DataFileError, UnknownSpeciesError, UsageError
from sus2md.io.cfg import read_cfg, write_cfg
from sus2md.io.data import labels

# ../shared/reference/README.md, species order of alloy.mtp (type 0..52)
ALLOY_SPECIES = ("Li,Be,Na,Mg,Al,Si,K,Ca,Sc,Ti,V,Cr,Mn,Fe,Co,Ni,Cu,Zn,Ga,Ge,Sr,Y,Zr,Nb,Mo,Ru,Rh,Pd,Ag,Cd,In,"
                 "Sn,La,Ce,Pr,Nd,Sm,Gd,Tb,Dy,Ho,Er,Tm,Lu,Hf,Ta,W,Re,Os,Ir,Pt,Au,Pb").split(",")

# first configuration of alloy_test.cfg, copied from the file
FIRST_TYPES = [28] * 4 + [4] * 11 + [1, 41, 50, 45, 45, 45]
FIRST_VIRIAL_CFG_ORDER = [18.3945102, 9.86055708, 0.11663404, -0.36061967, 2.60284475, -0.10340308]


def write(tmp_path, text: str, name: str = "bad.cfg"):
    path = tmp_path / name
    path.write_text(text)
    return path


def cfg_text(size="2", cell=("2 0 0", "0 2 0", "0 0 2"), header="id type cartes_x cartes_y cartes_z fx fy fz",
             rows=("1 0 0.0 0.0 0.0 0.1 0.2 0.3", "2 1 1.0 1.0 1.0 -0.1 -0.2 -0.3"),
             tail=(" Energy", "  -3.5", " PlusStress:  xx yy zz yz xz xy", "  8 8 8 0 0 0"), end="END_CFG") -> str:
    """One small configuration; each argument replaces one part (None drops it)."""
    lines = ["BEGIN_CFG"]
    if size is not None:
        lines += [" Size", f"    {size}"]
    if cell is not None:
        lines += [" Supercell", *[f"    {r}" for r in cell]]
    lines += [f" AtomData:  {header}", *[f"    {r}" for r in rows], *tail]
    if end is not None:
        lines.append(end)
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# the authors' alloy test set


def test_alloy_test_cfg_counts_and_first_configuration(shared):
    frames = read_cfg(shared("reference", "alloy_test.cfg"))
    assert len(frames) == 2417
    assert sum(len(a) for a in frames) == 28991
    first = frames[0]
    assert len(first) == 21
    assert first.arrays["mtp_type"].tolist() == FIRST_TYPES
    assert first.arrays["mtp_type"].dtype == np.int64
    # placeholder elements: atomic number = type + 1
    np.testing.assert_array_equal(first.get_atomic_numbers() - 1, first.arrays["mtp_type"])
    np.testing.assert_allclose(first.cell.array, np.diag([4.78367856, 8.28557432, 9.55858668]), rtol=0, atol=0)
    assert first.pbc.all()
    np.testing.assert_array_equal(first.positions[0], [2.282555, 5.010050, 1.729314])
    np.testing.assert_array_equal(first.get_forces()[0], [0.361917, 0.794644, -0.052587])
    np.testing.assert_array_equal(first.positions[20], [2.521035, 2.068494, 6.405673])
    assert first.get_potential_energy() == -92.06875519
    w = first.info["virial_eV"]
    assert [w[0, 0], w[1, 1], w[2, 2], w[1, 2], w[0, 2], w[0, 1]] == FIRST_VIRIAL_CFG_ORDER
    np.testing.assert_array_equal(w, w.T)
    # ASE stress = -W / V, Voigt xx yy zz yz xz xy
    np.testing.assert_allclose(first.get_stress(), -np.asarray(FIRST_VIRIAL_CFG_ORDER) / first.get_volume(),
                               rtol=1e-14)
    # all 53 types occur, none outside 0..52
    types = np.concatenate([a.arrays["mtp_type"] for a in frames])
    assert types.min() == 0 and types.max() == 52 and np.unique(types).size == 53


def test_alloy_test_cfg_with_species_and_speed(shared):
    path = shared("reference", "alloy_test.cfg")
    start = time.process_time()  # CPU time: robust to other processes on a shared machine
    frames = read_cfg(path, species=ALLOY_SPECIES)
    assert time.process_time() - start < 2.0
    first = frames[0]
    assert first.get_chemical_symbols()[:5] == ["Ag"] * 4 + ["Al"]
    assert first.get_chemical_symbols()[15:] == ["Be", "Er", "Pt", "Ta", "Ta", "Ta"]
    # the shared extxyz split was made from this file with these names
    assert first.get_chemical_formula() == "Ag4Al11BeErPtTa3"


def test_alloy_test_cfg_round_trip_is_exact(shared, tmp_path):
    frames = read_cfg(shared("reference", "alloy_test.cfg"))
    out = tmp_path / "copy.cfg"
    write_cfg(out, frames)
    again = read_cfg(out)
    assert len(again) == len(frames)

    def stacked(fs, get):
        return np.concatenate([np.asarray(get(a), dtype=float).reshape(-1) for a in fs])

    for get in (lambda a: a.arrays["mtp_type"], lambda a: a.positions, lambda a: a.cell.array, lambda a: a.pbc,
                lambda a: a.get_forces(), lambda a: a.get_potential_energy(), lambda a: a.info["virial_eV"]):
        np.testing.assert_allclose(stacked(again, get), stacked(frames, get), rtol=1e-10, atol=0)


# --------------------------------------------------------------------------------------------
# optional parts of the format


def test_virial_sign_convention(tmp_path):
    """PlusStress is W in eV; ASE stress is -W/V (SPEC-sus2 6.3)."""
    (a,) = read_cfg(write(tmp_path, cfg_text(tail=(" PlusStress:  xx yy zz yz xz xy", "  8 16 24 1 2 3"))))
    assert a.get_volume() == pytest.approx(8.0)
    np.testing.assert_allclose(a.get_stress(voigt=True), [-1, -2, -3, -0.125, -0.25, -0.375])
    np.testing.assert_allclose(labels(a)["virial_eV"], [[8, 3, 2], [3, 16, 1], [2, 1, 24]])


def test_virial_from_ase_stress_is_written_as_minus_stress_times_volume(tmp_path):
    atoms = Atoms("Cu2", positions=[[0, 0, 0], [1, 1, 1]], cell=np.diag([2.0, 3.0, 4.0]), pbc=True)
    stress = np.array([0.1, 0.2, 0.3, 0.01, 0.02, 0.03])
    atoms.calc = SinglePointCalculator(atoms, energy=-1.0, stress=stress)
    path = tmp_path / "s.cfg"
    write_cfg(path, [atoms], species=["Cu"])
    (back,) = read_cfg(path, species=["Cu"])
    w = back.info["virial_eV"]
    np.testing.assert_allclose([w[0, 0], w[1, 1], w[2, 2], w[1, 2], w[0, 2], w[0, 1]], -stress * 24.0)
    np.testing.assert_allclose(back.get_stress(), stress, rtol=1e-14)
    assert "PlusStress:" in path.read_text()


def test_non_periodic_and_slab_cells_features_weights_and_extra_columns(tmp_path):
    text = "\n".join([
        "BEGIN_CFG", " Size", "  2",
        " AtomData:  id type cartes_x cartes_y cartes_z site_en fx fy fz charge",
        "  1 1  0.0 0.0 0.0  -1.5  0.1 0.0 0.0  0.25",
        "  2 0  0.0 0.0 2.5  -2.5 -0.1 0.0 0.0 -0.25",
        " Energy", "  -4.0",
        " PlusStress:  xx yy zz yz xz xy", "  1 2 3 4 5 6",
        " EnergyWeight", "  0.5",
        " Feature   config_type  dimer",
        " Feature   note first line",
        " Feature   note second line",
        "END_CFG",
        "BEGIN_CFG", " Size", "  1", " Supercell", "   3.0 0.0 0.0", "   0.0 3.0 0.0",
        " AtomData:  id type cartes_x cartes_y cartes_z", "  1 0 0.5 0.5 7.0",
        "END_CFG", ""])
    dimer, slab = read_cfg(write(tmp_path, text, "ok.cfg"), species=["Cu", "Se"])
    assert not dimer.pbc.any() and dimer.get_chemical_symbols() == ["Se", "Cu"]
    assert "stress" not in dimer.calc.results  # no volume, but the virial is kept
    np.testing.assert_allclose(dimer.info["virial_eV"], [[1, 6, 5], [6, 2, 4], [5, 4, 3]])
    assert dimer.info["EnergyWeight"] == 0.5
    assert dimer.info["config_type"] == "dimer"
    assert dimer.info["note"] == "first line\nsecond line"
    np.testing.assert_array_equal(dimer.arrays["site_en"], [-1.5, -2.5])
    np.testing.assert_array_equal(dimer.arrays["charge"], [0.25, -0.25])
    assert slab.pbc.tolist() == [True, True, False]
    assert slab.calc is None and labels(slab) == {"energy": None, "forces": None, "virial_eV": None}
    np.testing.assert_array_equal(slab.positions, [[0.5, 0.5, 7.0]])  # not wrapped

    out = tmp_path / "again.cfg"
    write_cfg(out, [dimer, slab])
    d2, s2 = read_cfg(out, species=["Cu", "Se"])
    for key in ("EnergyWeight", "config_type", "note"):
        assert d2.info[key] == dimer.info[key]
    np.testing.assert_array_equal(d2.info["virial_eV"], dimer.info["virial_eV"])
    np.testing.assert_array_equal(d2.get_forces(), dimer.get_forces())
    np.testing.assert_array_equal(d2.arrays["site_en"], dimer.arrays["site_en"])
    np.testing.assert_array_equal(d2.arrays["charge"], dimer.arrays["charge"])
    assert s2.pbc.tolist() == [True, True, False]
    np.testing.assert_array_equal(s2.cell.array, slab.cell.array)


def test_direct_coordinates_and_headerless_atomdata(tmp_path):
    text = cfg_text(header="id type direct_x direct_y direct_z", rows=("1 0 0.5 0.25 0.0", "2 0 0 0 0.5"), tail=())
    (a,) = read_cfg(write(tmp_path, text, "direct.cfg"))
    np.testing.assert_allclose(a.positions, [[1.0, 0.5, 0.0], [0.0, 0.0, 1.0]])
    (b,) = read_cfg(write(tmp_path, cfg_text(header=""), "headerless.cfg"))
    np.testing.assert_array_equal(b.get_forces()[1], [-0.1, -0.2, -0.3])


def test_values_on_the_field_line_and_features_block(tmp_path):
    text = "\n".join(["BEGIN_CFG", " Size 1", " AtomData: id type cartes_x cartes_y cartes_z", "  1 0 0 0 0",
                      " Energy -1.25", " Features:  EFS_by  MV_grade", "  VASP  2.5", "END_CFG", ""])
    (a,) = read_cfg(write(tmp_path, text, "inline.cfg"))
    assert a.get_potential_energy() == -1.25
    assert a.info == {"EFS_by": "VASP", "MV_grade": "2.5"}


def test_write_maps_symbols_through_species(tmp_path):
    atoms = Atoms("SeCu2", positions=[[0, 0, 0], [1.2, 0, 0], [0, 1.3, 0]])
    path = tmp_path / "m.cfg"
    write_cfg(path, atoms, species=["Cu", "Se"])
    (back,) = read_cfg(path, species=["Cu", "Se"])
    assert back.arrays["mtp_type"].tolist() == [1, 0, 0]
    assert "Supercell" not in path.read_text() and not back.pbc.any()


def test_write_errors(tmp_path):
    atoms = Atoms("ZrHfCu", positions=[[0, 0, 0], [2, 0, 0], [0, 2, 0]])
    with pytest.raises(UnknownSpeciesError, match=r"frame 0: elements Zr, Hf are not in the model's species \[Cu, Se\]"):
        write_cfg(tmp_path / "x.cfg", [atoms], species=["Cu", "Se"])
    with pytest.raises(UsageError, match=r"frame 0 has no arrays\['mtp_type'\] and no species list was given"):
        write_cfg(tmp_path / "x.cfg", [atoms])
    with pytest.raises(UsageError, match=r"species\[1\] = 'Xx' is not an element symbol"):
        write_cfg(tmp_path / "x.cfg", [atoms], species=["Cu", "Xx"])
    with pytest.raises(UsageError, match="species lists Cu twice"):
        read_cfg(write(tmp_path, cfg_text(), "ok.cfg"), species=["Cu", "Cu"])


def test_missing_file_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="file not found: .*nope.cfg"):
        read_cfg(tmp_path / "nope.cfg")


# --------------------------------------------------------------------------------------------
# malformed input: one pinned message each (line numbers are 1-based)

BAD_INPUTS = {
    "short row": (cfg_text(rows=("1 0 0.0 0.0 0.0 0.1 0.2 0.3", "2 1 1.0 1.0 1.0")),
                  r"bad\.cfg:10: AtomData row has 5 columns, expected 8 \(id type cartes_x"),
    "headerless short row": (cfg_text(header="", rows=("1 0 0.0 0.0", "2 1 1.0 1.0 1.0")),
                             r"bad\.cfg:9: AtomData row has 4 columns, expected 5 or 8 \(id type x y z \[fx fy fz\]\)"),
    "size too big": (cfg_text(size="3"),
                     r"bad\.cfg:11: Size says 3 atoms but 2 AtomData rows were found before line 11"),
    "size too small": (cfg_text(size="1"),
                       r"bad\.cfg:10: Size says 1 atoms but 2 AtomData rows follow the header at line 8"),
    "non-number": (cfg_text(rows=("1 0 0.0 abc 0.0 0.1 0.2 0.3", "2 1 1.0 1.0 1.0 -0.1 -0.2 -0.3")),
                   r"bad\.cfg:9: AtomData value 'abc' in column cartes_y is not a number"),
    "missing END_CFG": (cfg_text(end=None),
                        r"bad\.cfg:14: the configuration that starts at line 1 has no END_CFG before the end of the file"),
    "negative type": (cfg_text(rows=("1 -1 0.0 0.0 0.0 0.1 0.2 0.3", "2 1 1.0 1.0 1.0 -0.1 -0.2 -0.3")),
                      r"bad\.cfg:9: AtomData type -1 is negative"),
    "non-integer type": (cfg_text(rows=("1 0.5 0.0 0.0 0.0 0.1 0.2 0.3", "2 1 1.0 1.0 1.0 -0.1 -0.2 -0.3")),
                         r"bad\.cfg:9: AtomData type 0\.5 is not an integer"),
    "nan position": (cfg_text(rows=("1 0 0.0 0.0 0.0 0.1 0.2 0.3", "2 1 nan 1.0 1.0 -0.1 -0.2 -0.3")),
                     r"bad\.cfg:10: AtomData row contains nan or inf"),
    "bad energy": (cfg_text(tail=(" Energy", "  -3.5eV")), r"bad\.cfg:12: Energy value '-3\.5eV' is not a number"),
    "energy missing value": (cfg_text(tail=(" Energy", " PlusStress:  xx yy zz yz xz xy", "  1 1 1 0 0 0")),
                             r"bad\.cfg:11: Energy has no value: the next line is 'PlusStress: +xx yy zz yz xz xy', expected a number"),
    "short PlusStress": (cfg_text(tail=(" PlusStress:  xx yy zz yz xz xy", "  8 8 8 0 0")),
                         r"bad\.cfg:12: PlusStress has 5 values, expected 6"),
    "bad PlusStress header": (cfg_text(tail=(" PlusStress:  xx yy zz yz xz", "  8 8 8 0 0")),
                              r"bad\.cfg:11: PlusStress header must name the six components"),
    "legacy Stress": (cfg_text(tail=(" Stress:  xx yy zz yz xz xy", "  8 8 8 0 0 0")),
                      r"bad\.cfg:11: field 'Stress:' of old MLIP versions is not supported"),
    "unknown field": (cfg_text(tail=(" Enrgy", "  -3.5")), r"bad\.cfg:11: unknown field 'Enrgy'"),
    "unknown column": (cfg_text(header="id type cartes_x cartes_y cartes_z fx fy fz q"),
                       r"bad\.cfg:8: AtomData column 'q' is unknown"),
    "no positions": (cfg_text(header="id type fx fy fz", rows=("1 0 0 0 0",)),
                     r"bad\.cfg:8: AtomData header must name positions"),
    "supercell row": (cfg_text(cell=("2 0 0", "0 2", "0 0 2")), r"bad\.cfg:6: Supercell row has 2 numbers, expected 3"),
    "supercell 4 rows": (cfg_text(cell=("2 0 0", "0 2 0", "0 0 2", "1 1 1")),
                         r"bad\.cfg:4: Supercell has 4 rows; expected 1 to 3"),
    "size not integer": (cfg_text(size="2.5"), r"bad\.cfg:3: Size must be a non-negative integer, found '2.5'"),
    "duplicate energy": (cfg_text(tail=(" Energy", "  -3.5", " Energy", "  -3.6")),
                         r"bad\.cfg:13: Energy appears twice in one configuration \(first at line 11\)"),
    "ids out of order": (cfg_text(rows=("2 0 0.0 0.0 0.0 0.1 0.2 0.3", "1 1 1.0 1.0 1.0 -0.1 -0.2 -0.3")),
                         r"bad\.cfg:9: AtomData id is 2 but row 1 must have id 1"),
    "nested BEGIN_CFG": (cfg_text(end="BEGIN_CFG"),
                         r"bad\.cfg:15: BEGIN_CFG found inside the configuration that starts at line 1; add the missing END_CFG"),
    "text between configs": (cfg_text() + "garbage\n", r"bad\.cfg:16: expected BEGIN_CFG, found 'garbage'"),
    "features count": (cfg_text(tail=(" Features:  a b", "  1")),
                       r"bad\.cfg:12: Features: names 2 features but this line has 1 values"),
    "empty file": ("\n\n", r"bad\.cfg: contains no configurations"),
    "no AtomData": ("BEGIN_CFG\n Size\n 2\nEND_CFG\n", r"bad\.cfg:4: the configuration that starts at line 1 has no AtomData"),
    "direct without cell": (cfg_text(cell=None, header="id type direct_x direct_y direct_z",
                                     rows=("1 0 0 0 0", "2 0 0.5 0.5 0.5"), tail=()),
                            r"bad\.cfg:4: direct_x/y/z \(fractional\) positions need a 3D-periodic Supercell"),
}


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_malformed_cfg_raises_data_file_error(tmp_path, name):
    text, pattern = BAD_INPUTS[name]
    with pytest.raises(DataFileError, match=pattern):
        read_cfg(write(tmp_path, text))


def test_type_out_of_species_range(tmp_path):
    with pytest.raises(UnknownSpeciesError, match=r"bad\.cfg:10: the 1st configuration \(BEGIN_CFG at line 1\) has "
                                                  r"type 1, beyond the model's 1 species \[Cu\] \(types 0\.\.0\); .*"
                                                  r"need a model with at least 2 species"):
        read_cfg(write(tmp_path, cfg_text()), species=["Cu"])
