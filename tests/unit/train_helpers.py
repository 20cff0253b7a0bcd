"""Shared pieces of the training tests: the tiny EMT set and a tiny config."""
from __future__ import annotations

from pathlib import Path

from sus2md.train.config import config_from_dict

DATA = Path(__file__).resolve().parents[1] / "data" / "tiny_emt.extxyz"  # tests/data/make_tiny_emt.py
SPECIES = ["Cu", "Ni", "Au"]


def tiny_config(tmp_path: Path, **over) -> "object":
    d = {
        "model": {"L": 2, "K": 1, "R": 5, "cutoff_A": 4.2, "species": SPECIES},
        "data": {"train": str(DATA), "validation_fraction": 0.25, "seed": 0, "batch_atoms": 48},
        "optimizer": {"max_steps": 12, "linear_solve_every": 6, "random_samples": 1, "init_subset": 4},
        "early_stopping": {"validate_every": 4},
        "output": {"model": str(tmp_path / "m.mtp"), "checkpoint_every": 6, "progress": False},
        "threads": 1,
    }
    for key, val in over.items():
        sect, _, field = key.partition("__")
        d.setdefault(sect, {})[field] = val
    return config_from_dict(d)
