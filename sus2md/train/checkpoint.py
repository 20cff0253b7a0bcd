"""Training checkpoints: everything needed to continue a run and reach the same model.

A checkpoint holds the model parameters, the optimiser state (L-BFGS history or Adam moments),
the step counter, the elapsed time, the best-validation parameters and the log so far.  Saved
atomically (write to ``*.tmp``, then rename) so an interrupted save never leaves a broken file.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from sus2md.errors import UsageError

__all__ = ["save_checkpoint", "load_checkpoint"]

FORMAT = "sus2md-train-checkpoint-1"


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format": FORMAT, **state}, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"--resume: no checkpoint at {path} (output.checkpoint); start without --resume")
    state = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UsageError(f"{path}: not a sus2md training checkpoint ({FORMAT})")
    return state
