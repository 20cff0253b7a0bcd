"""`sus2md eval`, `info`, `init` as a user runs them (real subprocess, exit codes, messages)."""
import json
import subprocess
import sys

import pytest


def sus2md(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "sus2md", *map(str, args)], capture_output=True, text=True, cwd=cwd)


def test_eval_prints_reference_errors(shared, tmp_path):
    out = tmp_path / "pred.json"
    r = sus2md("eval", shared("reference", "alloy.mtp"), shared("reference", "alloy_test.cfg"), "--output", out)
    assert r.returncode == 0, r.stderr
    assert "2417 configurations, 28991 atoms" in r.stdout
    assert "energy    meV/atom       27.2090     18.4061" in r.stdout
    assert "forces    eV/Å            0.2054      0.1234" in r.stdout
    data = json.loads(out.read_text())
    assert len(data) == 2417 and abs(data[0]["energy_eV"] - -92.02869579518) < 1e-8


def test_info_and_init(tmp_path):
    r = sus2md("init", "--L", 2, "--K", 3, "--species", "Cu,Ag,Au", "--cutoff", 5.0, "-o", tmp_path / "u.mtp")
    assert r.returncode == 0, r.stderr
    r = sus2md("info", tmp_path / "u.mtp")
    assert r.returncode == 0
    assert "species      3 (Cu, Ag, Au)" in r.stdout and "l2k3" in r.stdout and "trained      no" in r.stdout


@pytest.mark.parametrize("args,code,message", [
    (["info", "missing.mtp"], 2, "error: model file not found: missing.mtp"),
    (["init", "--L", 4, "--species", "Cu", "-o", "x.mtp"], 2, "error: L"),
    (["init", "--species", "Cu,Xx", "-o", "x.mtp"], 2, "Xx"),
    (["eval", "nothere.mtp", "data.cfg"], 2, "error: model file not found"),
])
def test_cli_errors_are_one_line_with_exit_code(tmp_path, args, code, message):
    r = sus2md(*args, cwd=tmp_path)
    assert r.returncode == code, (r.stdout, r.stderr)
    assert message in r.stderr
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_debug_shows_traceback(tmp_path):
    r = sus2md("--debug", "info", "missing.mtp", cwd=tmp_path)
    assert r.returncode != 0 and "Traceback" in r.stderr


def test_info_species_option(tmp_path, capsys):
    """`info` names the species from the file, from --species, or says how to give them."""
    from sus2md.cli import main
    from sus2md.io.mtp import read_mtp, write_mtp

    main(["init", "--L", "2", "--K", "1", "--species", "Cu,Se", "-o", str(tmp_path / "u.mtp")])
    m = read_mtp(tmp_path / "u.mtp")
    m.species_names = None
    write_mtp(m, tmp_path / "anon.mtp")
    capsys.readouterr()
    main(["info", str(tmp_path / "anon.mtp")])
    assert "species      2 (element names not stored: give them with --species" in capsys.readouterr().out
    main(["info", str(tmp_path / "anon.mtp"), "--species", "Cu,Se"])
    assert "species      2 (Cu, Se: from --species)" in capsys.readouterr().out
    main(["info", str(tmp_path / "u.mtp"), "--species", "Se,Cu"])
    assert "species      2 (Se, Cu: from --species; the file says Cu, Se)" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["info", str(tmp_path / "u.mtp"), "--species", "Cu"])
    assert exc.value.code == 2 and "1 species names given (Cu) but" in capsys.readouterr().err
