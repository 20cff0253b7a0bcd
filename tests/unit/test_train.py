"""End-to-end training on the tiny EMT set: learning, outputs, resume, determinism, fine-tuning."""
import json

import numpy as np
import pytest
import torch

from sus2md.io.data import load_frames
from sus2md.io.mtp import read_mtp, write_mtp
from sus2md.model import evaluate_frames
from sus2md.nn.potential import SUS2Potential
from sus2md.train.workflow import train_model
from tests.unit.train_helpers import DATA, SPECIES, tiny_config


def _params(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("train")
    cfg = tiny_config(tmp, optimizer__max_steps=24, optimizer__linear_solve_every=8, data__validation_fraction=0.0)
    return cfg, train_model(cfg)


def test_training_learns(trained, tmp_path):
    cfg, res = trained
    start = train_model(tiny_config(tmp_path, optimizer__max_steps=0))  # pre-training only
    hist = json.loads(cfg.output.log_json.read_text())["history"]
    assert hist[-1]["train_loss"] < 0.6 * hist[0]["train_loss"]
    assert res.metrics["train"]["all"]["F_rmse"] < 0.85 * start.metrics["train"]["all"]["F_rmse"]
    assert res.metrics["train"]["all"]["E_rmse"] < 40.0  # meV/atom on a 3-element toy set
    assert set(start.metrics) == {"train", "validation"}
    assert {"all", "bulk", "bulk_b"} <= set(res.metrics["train"])  # per config_type


def test_outputs_and_reload(trained):
    cfg, res = trained
    log = json.loads(cfg.output.log_json.read_text())
    assert log["steps"] == 24 and log["history"][-1]["step"] == 24
    assert cfg.output.log_csv.read_text().startswith("step,")
    assert cfg.output.checkpoint.is_file()
    mtp = read_mtp(cfg.output.model)
    assert mtp.species_names == SPECIES
    frames = load_frames(DATA, species=SPECIES)[:5]
    a = evaluate_frames(SUS2Potential(mtp), frames)
    b = evaluate_frames(res.model, frames)
    for p, q in zip(a, b):
        assert p.energy == pytest.approx(q.energy, abs=1e-10)
        assert np.allclose(p.forces, q.forces, atol=1e-10)


def test_resume_reproduces(tmp_path):
    torch.set_num_threads(1)
    full = train_model(tiny_config(tmp_path / "a", optimizer__max_steps=12))
    train_model(tiny_config(tmp_path / "b", optimizer__max_steps=6))
    resumed = train_model(tiny_config(tmp_path / "b", optimizer__max_steps=12), resume=True)
    for (k, v), w in zip(_params(full.model).items(), _params(resumed.model).values()):
        assert torch.allclose(v, w, rtol=1e-9, atol=1e-12), k


def test_deterministic(tmp_path):
    torch.set_num_threads(1)
    a = train_model(tiny_config(tmp_path / "a", optimizer__max_steps=4))
    b = train_model(tiny_config(tmp_path / "b", optimizer__max_steps=4))
    for (k, v), w in zip(_params(a.model).items(), _params(b.model).values()):
        assert torch.equal(v, w), k


def test_finetune_frozen_scaling(trained, tmp_path):
    cfg, res = trained
    start = read_mtp(cfg.output.model)
    ft = train_model(tiny_config(tmp_path, model__init_from=str(cfg.output.model), model__freeze_scaling=True,
                                 optimizer__max_steps=4))
    end = ft.model.to_mtp()
    assert np.array_equal(end.scal_coeffs, start.scal_coeffs)
    assert not np.array_equal(end.moment_coeffs, start.moment_coeffs)


def test_finetune_needs_species_names(tmp_path, trained):
    from sus2md.errors import ConfigError

    cfg, _ = trained
    m = read_mtp(cfg.output.model)
    m.species_names = None
    write_mtp(m, tmp_path / "anon.mtp")
    with pytest.raises(ConfigError, match="model.species: .* does not name its elements"):
        train_model(tiny_config(tmp_path, model__init_from=str(tmp_path / "anon.mtp"), model__species=None))
