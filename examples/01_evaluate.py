"""01 -- evaluate a SUS2 model: error metrics against labelled data, and the ASE calculator.

    python examples/01_evaluate.py             # models/emt_alloy.mtp on rattled copies of
                                               # examples/data/*.extxyz labelled with ASE's EMT
    python examples/01_evaluate.py --data ../shared/data/emt_alloy_test.extxyz   # any labelled file
    python examples/01_evaluate.py --smoke     # seconds: tiny model (trained by 02 if missing)

``load_model`` reads an ``.mtp`` into a ``SUS2Potential`` (a torch.nn.Module, eV and Å);
``load_frames`` reads labelled extxyz/.cfg data and assigns model types from the element names;
``evaluate_frames`` batches many cells per call; ``error_metrics`` gives energy (per atom), force
and virial RMSE/MAE.  ``SUS2Calculator`` plugs the same model into ASE (energy, forces, stress).
EMT is the exact reference here: the EMT-alloy model was fitted to it.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from _common import sibling  # examples/ is on sys.path when an example runs as a script

HERE = Path(__file__).resolve().parent

train_ex = sibling("02_train")


def labelled_examples(workdir: Path, smoke: bool) -> Path:
    """EMT-labelled test data: smoke -> 6 new 8-atom cells; full -> each examples/data structure
    rattled 4 times (0.03-0.12 Å per component), like MD snapshots at ~100-1500 K."""
    import ase.io
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator

    if smoke:
        return train_ex.make_emt_data(workdir / "eval_emt.extxyz", n=6, seed=123)
    rng = np.random.default_rng(1)
    frames = []
    for path in sorted((HERE / "data").glob("*.extxyz")):
        base = ase.io.read(path)
        for amp in (0.03, 0.06, 0.09, 0.12):
            atoms = base.copy()
            atoms.positions += amp * rng.normal(size=atoms.positions.shape)
            atoms.calc = EMT()
            e, f, s = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
            atoms.calc = SinglePointCalculator(atoms, energy=e, forces=f, stress=s)
            atoms.info["config_type"] = f"{path.stem}_rattle{amp:g}"
            frames.append(atoms)
    out = workdir / "eval_emt.extxyz"
    ase.io.write(out, frames, format="extxyz")
    return out


def main(argv: list[str] | None = None) -> int:
    args = train_ex.parse(__doc__.splitlines()[0], argv,
                          extra=lambda ap: ap.add_argument("--data", type=Path, help="labelled extxyz or .cfg file"))
    from ase.calculators.emt import EMT

    from sus2md.interop.ase import SUS2Calculator
    from sus2md.io.data import load_frames
    from sus2md.model import error_metrics, evaluate_frames, load_model
    from sus2md.units import EV_PER_A3_TO_GPA

    model_path = train_ex.model_for(args.workdir, args.smoke, args.model)
    model = load_model(model_path)
    print(f"model {model_path}: species {model.species_names}, cutoff {model.cutoff:.2f} Å")

    # 1. error metrics against labelled data
    data = args.data or labelled_examples(args.workdir, args.smoke)
    frames = load_frames(data, species=model.species_names)  # types from element names, model order
    t0 = time.perf_counter()
    preds = evaluate_frames(model, frames)
    wall = time.perf_counter() - t0
    m = error_metrics(frames, preds)
    print(f"\n{m['n_configs']} configurations, {m['n_atoms']} atoms from {data} ({wall:.2f} s)")
    for key, unit in (("energy_rmse_meV_atom", "meV/atom"), ("energy_mae_meV_atom", "meV/atom"),
                      ("force_rmse_eV_A", "eV/Å"), ("force_mae_eV_A", "eV/Å"), ("virial_rmse_eV", "eV")):
        if key in m:
            print(f"  {key:<22} {m[key]:10.4f} {unit}")

    # 2. the same model as an ASE calculator, next to EMT on one structure
    atoms = frames[-1].copy()
    atoms.calc = SUS2Calculator(model)  # or SUS2Calculator("model.mtp", species=[...])
    e_sus2, f_sus2, s_sus2 = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
    atoms.calc = EMT()
    e_emt, f_emt, s_emt = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
    n = len(atoms)
    print(f"\nASE calculator on {atoms.get_chemical_formula()} ({n} atoms):")
    print(f"  E/N     SUS2 {e_sus2 / n:9.4f}  EMT {e_emt / n:9.4f} eV/atom")
    print(f"  |F|max  SUS2 {np.abs(f_sus2).max():9.4f}  EMT {np.abs(f_emt).max():9.4f} eV/Å"
          f"   (RMS difference {np.sqrt(np.mean((f_sus2 - f_emt) ** 2)):.4f} eV/Å)")
    gpa = EV_PER_A3_TO_GPA  # ASE stress is in eV/Å^3
    print(f"  P       SUS2 {-s_sus2[:3].mean() * gpa:9.3f}  EMT {-s_emt[:3].mean() * gpa:9.3f} GPa")
    print(f"next: python examples/02_train.py{' --smoke' if args.smoke else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
