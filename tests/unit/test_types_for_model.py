"""Frames meet a model: a type index beyond the model's species is one clear UnknownSpeciesError
(file, configuration, line, types, species count, fix) on every path, never an index error in
the potential (issue 12 item 4)."""
import ase.io
import numpy as np
import pytest
from ase import Atoms

from sus2md.active.grade import ActiveSet
from sus2md.errors import UnknownSpeciesError, UsageError
from sus2md.io.cfg import read_cfg
from sus2md.io.data import check_frames, load_frames, species_index
from sus2md.io.mtp import write_mtp
from sus2md.model import evaluate_frames, load_frames_for, load_model

from .helpers import random_model, small_cell

CFG = ("BEGIN_CFG\n Size\n    2\n Supercell\n    3.6 0 0\n    0 3.6 0\n    0 0 3.6\n"
       " AtomData:  id type cartes_x cartes_y cartes_z fx fy fz\n"
       "    1 {t0} 0.0 0.0 0.0 0 0 0\n    2 {t1} 1.8 1.8 0.0 0 0 0\n Energy\n    -1.0\nEND_CFG\n")


@pytest.fixture(scope="module")
def unnamed_model(tmp_path_factory):
    """A 2-species model whose .mtp names no elements (as the authors' files)."""
    path = tmp_path_factory.mktemp("types") / "unnamed.mtp"
    mtp = random_model().to_mtp()
    mtp.species_names = None
    write_mtp(mtp, path)
    return path


def _three_configs(tmp_path):
    """Configurations 1 and 3 fine; the 2nd (BEGIN_CFG at line 14) has types 5 and 7 (line 22 = 5)."""
    path = tmp_path / "mixed.cfg"
    path.write_text(CFG.format(t0=0, t1=1) + CFG.format(t0=5, t1=7) + CFG.format(t0=1, t1=0))
    return path


def test_cfg_types_are_checked_against_a_species_count(tmp_path):
    path = _three_configs(tmp_path)
    with pytest.raises(UnknownSpeciesError, match=r"mixed\.cfg:22: the 2nd configuration \(BEGIN_CFG at line 14\) has "
                                                  r"types 5, 7, beyond the model's 2 species \(types 0\.\.1\); .*at least "
                                                  r"8 species: use that model"):
        read_cfg(path, n_species=2)
    assert len(read_cfg(path, n_species=8)) == 3
    assert len(read_cfg(path)) == 3  # without a model, types are placeholders


def test_load_frames_checks_mtp_type_columns_of_other_formats(tmp_path):
    atoms = small_cell()
    atoms.info["mtp_types"] = [0, 1, 5, 1]
    del atoms.arrays["mtp_type"]
    ase.io.write(tmp_path / "d.extxyz", [small_cell(), atoms], format="extxyz")
    with pytest.raises(UnknownSpeciesError, match=r"d\.extxyz: the 2nd configuration has type 5, beyond the model's 2 "
                                                  r"species \(types 0\.\.1\); .*pass --species"):
        load_frames(tmp_path / "d.extxyz", n_species=2)
    with pytest.raises(UsageError, match="3 species names given"):
        load_frames(tmp_path / "d.extxyz", species=["Cu", "Se", "Ag"], n_species=2)


def test_empty_data_file_is_named(tmp_path):
    (tmp_path / "e.extxyz").write_text("")
    with pytest.raises(UsageError, match=r"e\.extxyz: the file is empty"):
        load_frames(tmp_path / "e.extxyz")


@pytest.mark.parametrize("named", [True, False])
def test_every_model_entry_point_names_the_types(named, unnamed_model, tmp_path):
    model = random_model() if named else load_model(unnamed_model)
    path = _three_configs(tmp_path)
    with pytest.raises(UnknownSpeciesError, match=r"mixed\.cfg:22: the 2nd configuration .* types 5, 7, beyond the model's 2"):
        load_frames_for(model, path)
    frames = read_cfg(path)  # Python users may skip the check: the model entry points still say it
    hit = r"frames: the 2nd configuration has types 5, 7, beyond the model's 2 species"
    with pytest.raises(UnknownSpeciesError, match=hit):
        evaluate_frames(model, frames)
    with pytest.raises(UnknownSpeciesError, match=hit):
        ActiveSet.from_frames(model, frames)
    with pytest.raises(UnknownSpeciesError, match=r"\(2 of 3 configurations have such types, up to type 9\)"):
        frames[2].arrays["mtp_type"][:] = 9
        check_frames(frames, 2)
    bare = Atoms("Cu", positions=[[0, 0, 0]])
    with pytest.raises(UsageError, match=r"the 1st configuration has no arrays\['mtp_type'\]"):
        evaluate_frames(model, [bare])


def test_load_model_checks_species_symbols(unnamed_model):
    with pytest.raises(UsageError, match=r"species\[1\] = 'Xx' is not an element symbol"):
        load_model(unnamed_model, species=["Cu", "Xx"])


def test_a_cfg_structure_without_species_says_so():
    frames_types = np.array([0, 1, 5, 1])
    atoms = Atoms(numbers=frames_types + 1, positions=np.zeros((4, 3)))
    atoms.set_array("mtp_type", frames_types)
    with pytest.raises(UnknownSpeciesError, match=r"s\.cfg: the structure comes from a \.cfg file, which names no "
                                                  r"elements, only types 0, 1, 5 .*; the model's species are \[Cu, Se\] "
                                                  r"\(types 0\.\.1\); type 5 is beyond them"):
        species_index(atoms, ["Cu", "Se"], source="s.cfg")
    atoms.arrays["mtp_type"][2] = 0
    atoms.numbers[2] = 1
    with pytest.raises(UnknownSpeciesError, match=r"give the element of each type in type order \(structure\.species"):
        species_index(atoms, ["Cu", "Se"], source="s.cfg")


def test_cli_eval_of_the_53_type_alloy_set_with_the_cu2se_model(shared, capsys):
    """The issue's case: a 2-species model on a 53-type data set (was an index error in nn/potential)."""
    from sus2md.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["eval", str(shared("reference", "cu2se.mtp")), str(shared("reference", "alloy_test.cfg"))])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "alloy_test.cfg:9: the 1st configuration (BEGIN_CFG at line 1) has types 4, 28, 41, 45, 50, beyond the " \
           "model's 2 species (types 0..1)" in err


def test_broken_geometry_is_a_structure_error_before_the_potential(tmp_path):
    from sus2md.errors import StructureError
    from sus2md.io.structures import read_structure

    model = random_model()
    nan, flat = small_cell(), small_cell()
    nan.positions[1, 0] = np.nan
    flat.set_cell([[3.6, 0, 0], [7.2, 0, 0], [0, 0, 3.6]])
    with pytest.raises(StructureError, match=r"frames: the 2nd configuration: atom 1 \(\w+\) has a non-finite position"):
        evaluate_frames(model, [small_cell(), nan])
    with pytest.raises(StructureError, match=r"frames: the 1st configuration: the cell is degenerate"):
        ActiveSet.from_frames(model, [flat])
    ase.io.write(tmp_path / "flat.extxyz", [small_cell(), flat], format="extxyz")
    with pytest.raises(StructureError, match=r"flat\.extxyz: the 2nd configuration: the cell is degenerate"):
        load_frames(tmp_path / "flat.extxyz", species=["Cu", "Se"])
    empty = Atoms(cell=np.eye(3) * 3, pbc=True)
    empty.set_array("mtp_type", np.zeros(0, dtype=np.int64))
    assert evaluate_frames(model, [empty])[0].energy == 0.0  # a Size 0 configuration is allowed
    (tmp_path / "e.extxyz").write_text("")
    with pytest.raises(UsageError, match=r"e\.extxyz: the file is empty; expected a structure"):
        read_structure(tmp_path / "e.extxyz")
    with pytest.raises(UsageError, match=r"index 'abc' is not an index"):
        load_frames(_three_configs(tmp_path), index="abc")
