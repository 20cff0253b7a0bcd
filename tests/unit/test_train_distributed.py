"""Data-parallel training (2 gloo processes) gives the single-process model to round-off."""
import os
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from sus2md.io.data import load_frames
from sus2md.io.mtp import read_mtp
from sus2md.model import evaluate_frames
from sus2md.nn.potential import SUS2Potential
from sus2md.train.workflow import train_model
from tests.unit.train_helpers import DATA, SPECIES, tiny_config


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PENALTIES = dict(loss__pair_l2=0.01, loss__scaling_l2=0.01, loss__species_l2=0.01)  # added once, on rank 0
ADAM = dict(optimizer__kind="adam", optimizer__lr=0.005, optimizer__batches_per_step=4, optimizer__max_steps=6,
            optimizer__linear_solve_every=3, optimizer__train_species_coeffs=True, data__batch_atoms=16,
            optimizer__lbfgs_finish_steps=2, optimizer__ema_decay=0.8, **PENALTIES)


def _worker(rank: int, world: int, port: int, out: str, over: dict) -> None:
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        from pathlib import Path

        train_model(tiny_config(Path(out), **over))
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not available")
@pytest.mark.parametrize("over", [dict(optimizer__kind="lbfgs", optimizer__max_steps=4, optimizer__linear_solve_every=2,
                                       **PENALTIES), ADAM],
                         ids=["lbfgs-full-batch", "adam-minibatch-then-lbfgs"])
def test_two_ranks_match_one(tmp_path, over):
    torch.set_num_threads(1)
    single = train_model(tiny_config(tmp_path / "one", **over))
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path / "two"), over), nprocs=2, join=True)
    two = SUS2Potential(read_mtp(tmp_path / "two" / "m.mtp"))
    frames = load_frames(DATA, species=SPECIES)
    a, b = evaluate_frames(single.model, frames), evaluate_frames(two, frames)
    e = np.array([p.energy for p in a]) / 8
    assert np.allclose(e, np.array([p.energy for p in b]) / 8, atol=1e-6)  # eV/atom
    f = np.concatenate([p.forces for p in a])
    assert np.abs(f - np.concatenate([p.forces for p in b])).max() < 1e-4 * np.abs(f).max()
