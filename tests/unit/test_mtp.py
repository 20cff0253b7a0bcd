"""`.mtp` reading and writing: published files, exact round trips, line-numbered errors."""
from pathlib import Path

import numpy as np
import pytest

from sus2md.errors import ModelFileError, UsageError
from sus2md.io.mtp import format_mtp, read_mtp, write_mtp

MODELS = ["alloy.mtp", "cu2se.mtp", "solid_electrolytes.mtp"]
FIELDS = ["shift_coeffs", "scal_coeffs", "radial_coeffs", "species_coeffs", "moment_coeffs",
          "alpha_index_basic", "alpha_index_times", "alpha_moment_mapping"]


@pytest.mark.parametrize("name", MODELS)
def test_published_models_round_trip_byte_identical(shared, name, tmp_path):
    path = shared("reference", name)
    m = read_mtp(path)
    assert m.is_trained
    write_mtp(m, tmp_path / name)
    # the authors' Save format: our writer reproduces their files byte for byte (the published
    # files differ only in whether the last line ends with a newline; ours always does)
    assert (tmp_path / name).read_text().rstrip("\n") == Path(path).read_text().rstrip("\n")
    m2 = read_mtp(tmp_path / name)
    for f in FIELDS:
        assert np.array_equal(getattr(m, f), getattr(m2, f)), f


def test_shapes_and_blocks(shared):
    alloy = read_mtp(shared("reference", "alloy.mtp"))
    assert (alloy.species_count, alloy.L, alloy.n_blocks, alloy.radial_coeffs.shape) == (53, 2, 3, (9, 58))
    assert alloy.parameter_counts()["total"] == 17657
    se = read_mtp(shared("reference", "solid_electrolytes.mtp"))
    assert se.scaling_map == "LK" and se.n_blocks == 9
    cu = read_mtp(shared("reference", "cu2se.mtp"))
    assert cu.radial_basis_type == "RBChebyshev_sss_lmp" and cu.n_blocks == 2


def test_species_names_and_full_precision_round_trip(tmp_path):
    from tests.unit.helpers import random_model

    m = random_model().to_mtp()
    m.scal_coeffs = m.scal_coeffs + 1e-17 * np.pi  # values that need 17 digits
    write_mtp(m, tmp_path / "x.mtp")
    m2 = read_mtp(tmp_path / "x.mtp")
    assert m2.species_names == ["Cu", "Se"]
    assert "potential_name = sus2mlip_l2k2[Cu,Se]" in (tmp_path / "x.mtp").read_text()
    for f in FIELDS:
        assert np.array_equal(getattr(m, f), getattr(m2, f)), f


def test_untrained_file_reads(tmp_path):
    from sus2md.train.init_model import init_mtp

    write_mtp(init_mtp(3, 2, ["Cu", "Se"], 6.0), tmp_path / "u.mtp")
    m = read_mtp(tmp_path / "u.mtp")
    assert not m.is_trained and m.radial_coeffs is None and len(m.alpha_moment_mapping) == 109


GOOD = None


def _good_text():
    from tests.unit.helpers import random_model

    return format_mtp(random_model().to_mtp())


def _write(tmp_path, text):
    p = tmp_path / "bad.mtp"
    p.write_text(text)
    return p


BAD = [
    (lambda t: t.replace("MTP\n", "MPT\n", 1), r"bad.mtp:1: first line must be 'MTP'"),
    (lambda t: t.replace("version = 1.1.0", "version = 2.0.0"), r"bad.mtp:2: version 2.0.0 is not supported"),
    (lambda t: t.replace("L = 2\n", "L = two\n"), r"bad.mtp:5: L: expected an integer, got 'two'"),
    (lambda t: t.replace("L = 2\n", ""), r"required field 'L' is missing"),
    (lambda t: t.replace("species_count = 2", "species_count = 3"), r"bad.mtp:3: potential_name lists 2 species but species_count = 3"),
    (lambda t: t.replace("shift_coeffs = {", "shift_coeffs = {abc, "), r"bad.mtp:14: shift_coeffs: 'abc' is not a number"),
    (lambda t: t.replace("scaling_map = K", "scaling_map = Q"), r"scaling_map = 'Q': expected one of K, L, LK"),
    (lambda t: t.replace("alpha_moments_count = 104", "alpha_moments_count = 50"), r"alpha_index_times refers to a moment slot outside 0..49"),
    (lambda t: t.replace("radial_basis_type = RBChebyshev_sss", "radial_basis_type = RBChebyshev"), r"radial_basis_type = 'RBChebyshev': supported are"),
    (lambda t: t.replace("\tradial_funcs_count = 6", "\tradial_funcs_count = 7"), r"bad.mtp:24: radial_coeffs: expected 7 rows \(radial_funcs_count\), found 6"),
    (lambda t: t.replace("\tradial_funcs_count = 6", "\tradial_funcs_count = 5").replace(t[t.index("\t\t\t{"):].split("\n")[0] + "\n", "", 1), r"radial_funcs_count = 5: must be a positive multiple of L\+1 = 3"),
    (lambda t: "\n".join(l for l in t.split("\n") if not l.startswith("\t\t\t{")), r"radial_coeffs: expected 6 rows"),
    (lambda t: t.replace("alpha_index_basic = {{0, 0, 0, 0}", "alpha_index_basic = {{0, 0, 0}"), r"alpha_index_basic: entry 0 has 3 numbers, expected 4"),
    (lambda t: t.replace("\tmax_dist = ", "\tmax_dist = nan #"), r"max_dist: expected a number|max_dist: must be finite"),
    (lambda t: t + "\nscaling = 1\n", r"duplicate key 'scaling' \(first on line 4\)"),
    (lambda t: t + "\nfoo = 1\n", r"unknown key 'foo'"),
    (lambda t: t.replace("moment_coeffs = {", "moment_coeffs = {1.0, "), r"moment_coeffs has 63 numbers, expected 62"),
    (lambda t: t.replace("L = 2\n", "L = 4\n"), r"L = 4: sus2md supports L = 2 or 3"),
    (lambda t: t.replace("potential_name = sus2mlip_l2k2[Cu,Se]", "potential_name = x[Cu,Qq]"), r"unknown element symbol\(s\) Qq"),
    (lambda t: t.replace("alpha_moment_mapping = {", "alpha_moment_mapping = {1x, "), r"alpha_moment_mapping: holds a non-integer"),
    (lambda t: t.replace("species_count = 2\n", "species_count =\n"), r"species_count: expected an integer"),
]


@pytest.mark.parametrize("edit,message", BAD, ids=[m[:30] for _, m in BAD])
def test_bad_files_name_line_and_problem(tmp_path, edit, message):
    text = edit(_good_text())
    with pytest.raises(ModelFileError, match=message):
        read_mtp(_write(tmp_path, text))


def test_missing_and_binary_files(tmp_path):
    with pytest.raises(UsageError, match="model file not found: .*nope.mtp"):
        read_mtp(tmp_path / "nope.mtp")
    (tmp_path / "bin.mtp").write_bytes(b"\x80\x81\x00PK")
    with pytest.raises(ModelFileError, match="not a text file"):
        read_mtp(tmp_path / "bin.mtp")


def test_crlf_and_loose_spacing(tmp_path):
    text = _good_text().replace("alpha_moments_count = ", "alpha_moments_count =").replace("\n", "\r\n")
    m = read_mtp(_write(tmp_path, text))
    assert m.alpha_moments_count == 104
