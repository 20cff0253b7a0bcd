"""Regenerate the bad-input corpus of this directory (``python tests/corpus/make_corpus.py``).

The files are committed; this script only documents how they were made and rebuilds them after a
format change.  ``tiny.mtp`` is a random l2k2 Cu/Se model (tests/unit/helpers.random_model with
R=4, cutoff 4 Å); every bad ``.mtp`` is a small edit of it.  ``expected.yaml`` (hand-written)
says what each input must do on the command line.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))


def w(name: str, text: str | bytes) -> None:
    p = HERE / name
    p.parent.mkdir(parents=True, exist_ok=True)
    (p.write_bytes if isinstance(text, bytes) else p.write_text)(text)


def xyz(symbols: list[str], positions: list[tuple], cell: list[list[float]] | None, pbc: str = "T T T") -> str:
    lattice = "" if cell is None else 'Lattice="' + " ".join(f"{x:g}" for v in cell for x in v) + '" '
    lines = [str(len(symbols)), f'{lattice}Properties=species:S:1:pos:R:3 pbc="{pbc}"']
    lines += [f"{s} {x} {y} {z}" for s, (x, y, z) in zip(symbols, positions)]
    return "\n".join(lines) + "\n"


FCC = [(0.0, 0.0, 0.0), (0.0, 1.8, 1.8), (1.8, 0.0, 1.8), (1.8, 1.8, 0.0)]
CUBE = [[3.6, 0, 0], [0, 3.6, 0], [0, 0, 3.6]]
SPECIES = ["Cu", "Se", "Cu", "Se"]

PROTO = """structure: {{path: {structure}}}
model: {{path: {model}, species: [Cu, Se]}}
platform: Reference
threads: 1
{extra}stages:
{stages}"""
NVT = "  - {type: nvt, steps: 2, temperature_K: 300, report_interval_steps: 1, trajectory_interval_steps: 1}\n"
NPT = "  - {type: npt, steps: 2, temperature_K: 300, pressure_bar: 1.0}\n"


def proto(name: str, structure: str = "good.extxyz", model: str = "tiny.mtp", stages: str = NVT, extra: str = "") -> None:
    w(name, PROTO.format(structure=structure, model=model, stages=stages, extra=extra))


def main() -> None:
    from sus2md.io.mtp import write_mtp
    from tests.unit.helpers import random_model

    write_mtp(random_model(L=2, K=2, R=4, cutoff=4.0).to_mtp(), HERE / "tiny.mtp")
    good = (HERE / "tiny.mtp").read_text()
    lines = good.splitlines(keepends=True)

    def sub(pattern: str, repl: str, count: int = 1) -> str:
        out, n = re.subn(pattern, repl, good, count=count, flags=re.M)
        assert n, pattern
        return out

    # --- .mtp models (sus2md info / eval) ---
    w("mtp_empty.mtp", "")
    w("mtp_not_mtp.mtp", "This is a README, not a model.\n")
    w("mtp_truncated.mtp", "".join(lines[: len(lines) // 2]) + lines[len(lines) // 2][:40])
    w("mtp_missing_field.mtp", sub(r"^\s*radial_funcs_count = .*\n", ""))
    w("mtp_species_count_wrong.mtp", sub(r"^species_count = 2$", "species_count = 3"))
    w("mtp_not_a_number.mtp", sub(r"^(\s*)max_dist = .*$", r"\1max_dist = five"))
    w("mtp_moment_count_disagrees.mtp", sub(r"^alpha_scalar_moments = 62$", "alpha_scalar_moments = 61"))
    w("mtp_list_too_short.mtp", sub(r"^species_coeffs = \{([^,]*),[^}]*\}", r"species_coeffs = {\1}"))
    w("mtp_nan_coeff.mtp", sub(r"^shift_coeffs = \{[^,]*,", "shift_coeffs = {nan,"))
    w("mtp_unknown_key.mtp", sub(r"^L = 2$", "L = 2\nmagic_number = 7"))
    w("mtp_binary.mtp", bytes(range(256)) * 4)
    w("mtp_bad_version.mtp", sub(r"^version = 1.1.0$", "version = 2.0"))

    # --- .cfg data (sus2md eval tiny.mtp X.cfg) ---
    cfg = ("BEGIN_CFG\n Size\n    2\n Supercell\n    3.6 0 0\n    0 3.6 0\n    0 0 3.6\n"
           " AtomData:  id type cartes_x cartes_y cartes_z fx fy fz\n"
           "    1 0 0.0 0.0 0.0 0 0 0\n    2 1 1.8 1.8 0.0 0 0 0\n Energy\n    -1.0\nEND_CFG\n")
    w("cfg_truncated.cfg", cfg[: cfg.index(" Energy")])
    w("cfg_size_disagrees.cfg", cfg.replace("Size\n    2", "Size\n    3"))
    w("cfg_not_a_number.cfg", cfg.replace("1.8 1.8 0.0", "1.8 abc 0.0"))
    w("cfg_type_out_of_range.cfg", cfg.replace("    2 1 1.8", "    2 7 1.8"))
    w("cfg_no_begin.cfg", cfg.replace("BEGIN_CFG\n", ""))

    # --- data made for another model (issue 12 item 4): types beyond the model's species ---
    w("good.cfg", cfg)
    w("tiny_unnamed.mtp", sub(r"^potential_name = (\S+)\[Cu,Se\]$", r"potential_name = \1"))
    beyond = cfg.replace("    1 0 0.0", "    1 5 0.0").replace("    2 1 1.8", "    2 7 1.8")
    w("cfg_types_beyond_model.cfg", cfg + beyond)  # the 2nd configuration: types 5 and 7
    w("xyz_types_beyond_model.extxyz", xyz(SPECIES, FCC, CUBE).replace("Properties=", 'mtp_types="0 1 5 1" Properties='))
    w("empty.extxyz", "")
    train = ("model: {{L: 2, K: 1, R: 4, cutoff_A: 4.0, species: [Cu, Se]}}\n"
             "data: {{train: {train}{more}}}\n"
             "optimizer: {{max_steps: 1, random_samples: 0, init_subset: 1}}\n"
             "output: {{model: {model}, progress: false}}\n")
    w("train_validation_beyond_model.yaml", train.format(train="good.cfg", more=", validation: cfg_types_beyond_model.cfg",
                                                         model="t.mtp"))
    w("train_init_from_beyond_model.yaml", train.format(train="cfg_types_beyond_model.cfg", more="", model="t.mtp")
      .replace("{L: 2, K: 1, R: 4, cutoff_A: 4.0, species: [Cu, Se]}", "{init_from: tiny_unnamed.mtp, species: [Cu, Se]}"))
    w("cfg_no_labels.cfg", cfg.replace(" fx fy fz", "").replace(" 0 0 0\n", "\n").replace(" Energy\n    -1.0\n", ""))
    w("train_no_labels.yaml", train.format(train="cfg_no_labels.cfg", more="", model="t.mtp"))
    w("train_all_validation.yaml", train.format(train="good.cfg", more=", validation_fraction: 0.5", model="t.mtp"))
    w("train_output_is_dir.yaml", train.format(train="good.cfg", more="", model="."))
    proto("run_cfg_structure_beyond_model.yaml", "cfg_types_beyond_model.cfg")
    proto("run_cfg_structure_no_species.yaml", "good.cfg")
    proto("run_extrapolation_beyond_model.yaml",
          extra="extrapolation: {training_data: cfg_types_beyond_model.cfg, interval_steps: 1}\n")

    # --- structures (sus2md run P.yaml) ---
    w("good.extxyz", xyz(SPECIES, FCC, CUBE))
    proto("ok.yaml")
    w("struct_unknown_element.extxyz", xyz(["Cu", "Ag", "Cu", "Se"], FCC, CUBE))
    proto("run_unknown_element.yaml", "struct_unknown_element.extxyz")
    w("struct_overlap.extxyz", xyz(SPECIES, FCC[:3] + [(0.1, 0.1, 0.0)], CUBE))
    proto("run_overlap.yaml", "struct_overlap.extxyz")
    w("struct_nan.extxyz", xyz(SPECIES, FCC[:3] + [("nan", 1.8, 0.0)], CUBE))
    proto("run_nan.yaml", "struct_nan.extxyz")
    w("struct_inf.extxyz", xyz(SPECIES, FCC[:3] + [(1.8, "inf", 0.0)], CUBE))
    proto("run_inf.yaml", "struct_inf.extxyz")
    w("struct_empty.extxyz", xyz([], [], CUBE))
    proto("run_empty.yaml", "struct_empty.extxyz")
    w("struct_cluster.extxyz", xyz(SPECIES, FCC, None, pbc="F F F"))
    proto("run_npt_nonperiodic.yaml", "struct_cluster.extxyz", stages=NPT)
    w("struct_degenerate_cell.extxyz", xyz(SPECIES, FCC, [[3.6, 0, 0], [7.2, 0, 0], [0, 0, 3.6]]))
    proto("run_degenerate_cell.yaml", "struct_degenerate_cell.extxyz")
    w("struct_garbage.extxyz", "4\nthis is not an extxyz comment line\nCu 0 0\nfoo\n")
    proto("run_garbage_structure.yaml", "struct_garbage.extxyz")
    proto("run_missing_structure.yaml", "no_such_structure.extxyz")
    proto("run_missing_model.yaml", model="no_such_model.mtp")
    proto("run_bad_model.yaml", model="mtp_truncated.mtp")

    # --- protocols ---
    proto("protocol_typo.yaml", stages="  - {type: nvt, steps: 2, temperatur_K: 300}\n")
    proto("protocol_stage_type.yaml", stages="  - {type: nvtt, steps: 2, temperature_K: 300}\n")
    proto("protocol_negative_pressure.yaml",
          stages="  - {type: npt, steps: 2, temperature_K: 300, pressure_bar: -5}\n")
    proto("protocol_timestep.yaml", stages="  - {type: nvt, steps: 2, temperature_K: 300, timestep_fs: 50}\n")
    proto("protocol_steps_and_duration.yaml",
          stages="  - {type: nvt, steps: 2, duration_ps: 1.0, temperature_K: 300}\n")
    proto("protocol_precision.yaml", extra="precision: quad\n")
    w("protocol_platform.yaml", (HERE / "ok.yaml").read_text().replace("platform: Reference", "platform: Cuda"))
    w("protocol_yaml_syntax.yaml", "structure: {path: good.extxyz\nmodel: [tiny.mtp\nstages:\n  - type: nvt\n")
    w("protocol_empty.yaml", "")
    w("protocol_not_mapping.yaml", "- just\n- a list\n")
    proto("protocol_duplicate_key.yaml", extra="seed: 1\nseed: 2\n")
    proto("protocol_string_steps.yaml", stages="  - {type: nvt, steps: ten, temperature_K: 300}\n")
    proto("protocol_no_stages.yaml", stages="  []\n")
    proto("protocol_extrapolation_missing.yaml", extra="extrapolation: {active_set: no_such_set.npz}\n")
    proto("protocol_extrapolation_thresholds.yaml",
          extra="extrapolation: {active_set: a.npz, warn_gamma: 20, break_gamma: 10}\n")

    # --- compiled models ---
    from sus2md.export import METADATA_NAME, compile_for_openmm

    compile_for_openmm(HERE / "tiny.mtp", HERE / "tiny.pt", dtype="float64")
    import torch

    extra = {METADATA_NAME: ""}
    module = torch.jit.load(str(HERE / "tiny.pt"), _extra_files=extra)
    meta = json.loads(extra[METADATA_NAME])
    meta["source_model"]["path"] = "tiny.mtp"
    meta["created"] = "2024-01-01T00:00:00+00:00"
    torch.jit.save(module, str(HERE / "tiny.pt"), _extra_files={METADATA_NAME: json.dumps(meta, indent=1)})
    old = {**meta, "format_version": 0, "sus2md_version": "0.0.1"}
    torch.jit.save(module, str(HERE / "compiled_old_version.pt"), _extra_files={METADATA_NAME: json.dumps(old)})
    torch.jit.save(module, str(HERE / "compiled_no_metadata.pt"))
    w("compiled_garbage.pt", b"PK\x03\x04 this is not a TorchScript archive" + bytes(64))
    proto("run_compiled_wrong_species.yaml", "struct_unknown_element.extxyz", model="tiny.pt")
    proto("run_compiled_old_version.yaml", model="compiled_old_version.pt")
    proto("run_compiled_no_metadata.yaml", model="compiled_no_metadata.pt")
    proto("run_compiled_garbage.yaml", model="compiled_garbage.pt")
    w("not_a_dir", "a file where the output directory should be\n")
    # runtime (exit 1): an active set from the 4 atoms of good.extxyz spans too few directions, so the
    # first graded state of a slightly different structure extrapolates far beyond break_gamma
    shifted = [(x + 0.05 * k, y, z) for k, (x, y, z) in enumerate(FCC)]
    w("struct_shifted.extxyz", xyz(SPECIES, shifted, CUBE))
    proto("run_extrapolation_break.yaml", "struct_shifted.extxyz",
          extra="extrapolation: {training_data: good.extxyz, interval_steps: 1, break_gamma: 10}\n")


if __name__ == "__main__":
    main()
