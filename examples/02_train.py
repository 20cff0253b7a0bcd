"""02 -- train a SUS2 model from Python (what `sus2md train config.yaml` does).

    python examples/02_train.py            # full: examples/train_emt.yaml (the EMT 7-metal alloy
                                           # data in ../shared/data; ~15 min), model written to
                                           # runs/examples/full/emt_alloy.mtp
    python examples/02_train.py --smoke    # seconds: ~30 EMT-labelled 8-atom Cu/Ni/Au cells,
                                           # a tiny model (L=2, K=1), a dozen L-BFGS steps

A training run is a ``TrainConfig`` (the YAML schema of sus2md/train/config.py) passed to
``train_model``: seeded start, Rescale, random sampling and an exact linear solve, then L-BFGS
over all parameters with the linear solve repeated every ``linear_solve_every`` steps.  The
``.mtp`` it writes names its elements (``potential_name = MTP_l2k1[Cu,Ni,Au]``) and is read
unchanged by the authors' engines.

The helpers here (``make_emt_data``, ``model_for``) are reused by the later examples, which
train the smoke model themselves when it is missing -- so every example also runs on its own.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SMOKE_SPECIES = ["Cu", "Ni", "Au"]
FULL_MODEL = ROOT / "models" / "emt_alloy.mtp"


# --- pieces shared by all the examples -----------------------------------------------------------

def parse(description: str, argv: list[str] | None = None, extra=None) -> argparse.Namespace:
    """--smoke (or SUS2MD_SMOKE=1) and --workdir, the options every example takes."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--smoke", action="store_true", help="tiny everything, runs in seconds (also SUS2MD_SMOKE=1)")
    ap.add_argument("--workdir", type=Path, default=None,
                    help="where outputs go (default runs/examples/smoke or runs/examples/full)")
    ap.add_argument("--model", type=Path, default=None,
                    help="use this .mtp (default: models/emt_alloy.mtp; with --smoke the tiny smoke model)")
    if extra is not None:
        extra(ap)
    args = ap.parse_args(argv)
    args.smoke = args.smoke or os.environ.get("SUS2MD_SMOKE", "") not in ("", "0")
    args.workdir = (args.workdir or ROOT / "runs" / "examples" / ("smoke" if args.smoke else "full")).resolve()
    args.workdir.mkdir(parents=True, exist_ok=True)
    if args.model is not None:
        args.model = args.model.resolve()
    if args.smoke:
        import torch

        torch.set_num_threads(1)  # seconds-long jobs on a shared machine: one thread is fastest
    return args


def make_emt_data(path: Path, n: int = 40, seed: int = 0, species=SMOKE_SPECIES, repeat=(2, 1, 1)) -> Path:
    """``n`` rattled, strained fcc cells (8 atoms with the default ``repeat``) of random
    composition, labelled with ASE's EMT (energy, forces, stress), written as extxyz."""
    import ase.io
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator

    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(n):
        atoms = bulk("Cu", "fcc", a=3.4 + 0.4 * rng.random(), cubic=True).repeat(repeat)
        atoms.set_chemical_symbols(rng.choice(species, size=len(atoms)))
        atoms.set_cell(atoms.cell.array @ (np.eye(3) + 0.02 * rng.normal(size=(3, 3))), scale_atoms=True)
        atoms.positions += 0.1 * rng.normal(size=atoms.positions.shape)
        atoms.calc = EMT()
        e, f, s = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
        atoms.calc = SinglePointCalculator(atoms, energy=e, forces=f, stress=s)
        frames.append(atoms)
    path.parent.mkdir(parents=True, exist_ok=True)
    ase.io.write(path, frames, format="extxyz")
    return path


def smoke_config(workdir: Path) -> dict:
    """A tiny training run: plain data, the same keys as a YAML file."""
    data = workdir / "tiny_emt.extxyz"
    if not data.exists():
        make_emt_data(data)
    return {
        "model": {"L": 2, "K": 1, "R": 5, "cutoff_A": 4.2, "species": SMOKE_SPECIES},
        "data": {"train": str(data), "validation_fraction": 0.2, "seed": 0, "batch_atoms": 64},
        "optimizer": {"max_steps": 20, "linear_solve_every": 10, "random_samples": 1, "init_subset": 4},
        "early_stopping": {"validate_every": 5},
        "output": {"model": str(workdir / "model.mtp"), "progress": False},
        "threads": 1,
    }


def train(workdir: Path, smoke: bool, echo=print):
    """Train the example model into ``workdir``; returns the ``TrainResult``."""
    from sus2md.train.config import config_from_dict, load_config
    from sus2md.train.workflow import train_model

    if smoke:
        cfg = config_from_dict(smoke_config(workdir), source="smoke config")
    else:
        cfg = load_config(ROOT / "examples" / "train_emt.yaml")  # paths resolved against the YAML's folder
        if not Path(cfg.data.train).exists():
            raise SystemExit(f"{cfg.data.train} not found: the full example trains on the shared EMT data "
                             "(examples/train_emt.yaml points at ../shared/data); run it with --smoke")
        cfg.output.model = workdir / "emt_alloy.mtp"  # leave runs/train_emt (the shipped model's run) alone
        for key, suffix in (("checkpoint", ".ckpt.pt"), ("log_json", ".log.json"), ("log_csv", ".log.csv")):
            setattr(cfg.output, key, cfg.output.model.with_suffix(suffix))
    return train_model(cfg, echo=echo)


def model_for(workdir: Path, smoke: bool, model: Path | None = None) -> Path:
    """The model the later examples use: ``model`` if given; smoke -> ``workdir/model.mtp`` (trained
    here if missing); full -> models/emt_alloy.mtp (else ``workdir/emt_alloy.mtp`` from this script)."""
    if model is not None:
        if not model.exists():
            raise SystemExit(f"{model} not found")
        return model
    if smoke:
        path = workdir / "model.mtp"
        if not path.exists():
            print(f"[{path.name} missing: training the smoke model first]")
            train(workdir, smoke=True, echo=lambda s: None)
        return path
    for path in (FULL_MODEL, workdir / "emt_alloy.mtp"):
        if path.exists():
            return path
    raise SystemExit(f"{FULL_MODEL} not found: train it (`sus2md train examples/train_emt.yaml` and copy the "
                     "result, or `python examples/02_train.py`), or run the example with --smoke")


# --- the example ------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    args = parse(__doc__.splitlines()[0], argv)
    t0 = time.perf_counter()
    result = train(args.workdir, args.smoke)
    print(f"\ntrained {result.steps} steps ({result.stop_reason}) in {time.perf_counter() - t0:.1f} s; "
          f"{result.n_params} parameters")
    from sus2md.train.workflow import format_metrics

    print(format_metrics(result.metrics))  # per split and config_type: E meV/atom, F meV/Å, stress GPa
    print(f"model species: {result.model.species_names}")
    print(f"next: python examples/03_compile_and_openmm.py{' --smoke' if args.smoke else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
