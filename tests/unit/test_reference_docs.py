"""docs/protocol.md and docs/training.md are generated from the schemas (sus2md/reference.py):
a committed page that differs from the schema fails here (regenerate with ``sus2md schema``)."""
from pathlib import Path

import pytest

from sus2md.reference import PAGES, render, undocumented, unit

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("page", sorted(PAGES))
def test_committed_page_is_the_generated_one(page):
    path = ROOT / PAGES[page][1]
    assert path.read_text() == render(page), (
        f"{PAGES[page][1]} is out of date with its schema; regenerate it: sus2md schema {page} -o {PAGES[page][1]}")


@pytest.mark.parametrize("page", sorted(PAGES))
def test_every_field_has_exactly_one_description(page):
    assert undocumented(page) == []


def _row(text: str, key: str) -> list[str]:
    line = next(ln for ln in text.splitlines() if ln.startswith(f"| `{key}` |"))
    return [c.strip() for c in line.strip("|").split(" | ")]


def test_protocol_rows_state_unit_default_and_allowed_values():
    text = render("protocol")
    assert _row(text, "backend")[1:4] == ["one of `auto`, `torch`, `python`, `compiled`", "—", "`auto`"]
    threads = _row(text, "threads")
    assert threads[1:4] == ["integer > 0 or null", "—", "`null`"] and "the cores this process may use" in threads[4]
    assert _row(text, "stages[].max_iterations")[1:4] == ["integer ≥ 0", "iterations", "`1000`"]
    assert "0: no cap" in _row(text, "stages[].max_iterations")[4]
    assert _row(text, "stages[].log_interval_iterations")[1:4] == ["integer > 0", "iterations", "`100`"]
    assert _row(text, "stages[].timestep_fs")[2:4] == ["fs", "`1.0`"]
    assert _row(text, "stages[].pressure_bar")[1:4] == ["number ≥ 0", "bar", "required"]
    assert _row(text, "structure.supercell")[3] == "`[1, 1, 1]`"
    for stage in ("minimize", "nvt", "npt", "nve"):
        assert f"### stages[] with type: {stage}" in text


def test_training_page_documents_the_init_to_train_link():
    text = " ".join(render("train").split())
    assert "`init_from` links `sus2md init` to `sus2md train`" in text
    assert "`model: {init_from: untrained.mtp}` trains it like a new model" in text
    assert _row(render("train"), "model.cutoff_A")[1:4] == ["number > 0", "Å", "`5.0`"]


def test_units_come_from_the_name():
    assert [unit(n) for n in ("temperature_K", "tolerance_kJ_mol_nm", "friction_per_ps", "steps", "K", "cutoff_A",
                              "max_time_min", "batch_atoms", "seed")] == \
        ["K", "kJ/(mol·nm)", "1/ps", "steps", "", "Å", "min", "atoms", ""]


def test_cli_prints_the_page(capsys):
    from sus2md.cli import main

    main(["schema", "train"])
    assert capsys.readouterr().out == render("train")


def test_readme_training_section_links_init_to_train():
    readme = (ROOT / "README.md").read_text()
    training = " ".join(readme[readme.index("## Training"):].split())
    assert "`model: {init_from: untrained.mtp}` trains the model `sus2md init` wrote" in training
    assert "docs/training.md" in training and "docs/protocol.md" in training
