"""End-to-end training on the tiny EMT set: learning, outputs, resume, determinism, fine-tuning."""
import json

import numpy as np
import pytest
import torch

from sus2md.io.data import load_frames
from sus2md.io.mtp import read_mtp, write_mtp
from sus2md.model import evaluate_frames
from sus2md.nn.potential import SUS2Potential
from sus2md.train.linear import duplicate_moments
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



def test_init_then_train_through_init_from(tmp_path, capsys):
    """The documented link (docs/training.md, README Training): `sus2md init` writes an untrained
    model with its element names; `init_from` trains it with no species or basis keys."""
    from sus2md.cli import main
    from sus2md.train.config import config_from_dict

    main(["init", "--L", "2", "--K", "1", "--species", ",".join(SPECIES), "--cutoff", "4.2",
          "--radial-basis-size", "5", "-o", str(tmp_path / "untrained.mtp")])
    assert not read_mtp(tmp_path / "untrained.mtp").is_trained
    d = {"model": {"init_from": str(tmp_path / "untrained.mtp")},
         "data": {"train": str(DATA), "batch_atoms": 48},
         "optimizer": {"max_steps": 2, "linear_solve_every": 1, "random_samples": 1, "init_subset": 4},
         "output": {"model": str(tmp_path / "m.mtp"), "progress": False}, "threads": 1}
    res = train_model(config_from_dict(d))
    out = read_mtp(tmp_path / "m.mtp")
    assert out.is_trained and out.species_names == SPECIES and (out.L, out.radial_basis_size) == (2, 5)
    assert res.metrics["train"]["all"]["E_rmse"] < 1e3
    from sus2md.errors import ConfigError

    d["model"]["K"] = 3
    with pytest.raises(ConfigError, match=r"model\.K: 3 but init_from .*untrained\.mtp has K = 1; the basis comes "
                                          r"from the file, leave K out"):
        train_model(config_from_dict(d))


ADAM = dict(optimizer__kind="adam", optimizer__lr=0.005, optimizer__batches_per_step=2, optimizer__linear_solve_every=0,
            optimizer__train_species_coeffs=True, data__batch_atoms=16, data__validation_fraction=0.0)


def test_adam_minibatch_learns(tmp_path):
    torch.set_num_threads(1)
    start = train_model(tiny_config(tmp_path / "s", **ADAM, optimizer__max_steps=0))
    res = train_model(tiny_config(tmp_path / "a", **ADAM, optimizer__max_steps=100))
    before, after = start.metrics["train"]["all"], res.metrics["train"]["all"]
    assert after["F_rmse"] < 0.9 * before["F_rmse"] and after["E_rmse"] < 0.8 * before["E_rmse"]
    s, e = start.model.to_mtp(), res.model.to_mtp()
    assert not np.array_equal(s.scal_coeffs, e.scal_coeffs)  # alpha, r0 trained
    assert not np.array_equal(s.species_coeffs, e.species_coeffs)  # train_species_coeffs
    assert s.scaling == e.scaling  # left to Rescale


def test_adam_minibatch_resume_reproduces(tmp_path, monkeypatch):
    from sus2md.train.trainer import Trainer

    torch.set_num_threads(1)
    full = train_model(tiny_config(tmp_path / "a", **ADAM, optimizer__max_steps=20))
    stop = Trainer._should_stop  # interrupt the same run (same cosine schedule) after 9 steps
    monkeypatch.setattr(Trainer, "_should_stop", lambda self, t: "interrupted" if self.state.step >= 9 else stop(self, t))
    train_model(tiny_config(tmp_path / "b", **ADAM, optimizer__max_steps=20))
    monkeypatch.setattr(Trainer, "_should_stop", stop)
    resumed = train_model(tiny_config(tmp_path / "b", **ADAM, optimizer__max_steps=20), resume=True)
    for (k, v), w in zip(_params(full.model).items(), _params(resumed.model).values()):
        assert torch.allclose(v, w, rtol=1e-9, atol=1e-12), k


def test_adam_minibatch_schedule(tmp_path):
    from sus2md.train.dataset import load_split, make_batches
    from sus2md.train.trainer import Trainer

    cfg = tiny_config(tmp_path, **{**ADAM, "optimizer__batches_per_step": 3})
    tr, _, _ = load_split(cfg.data.train, None, None, SPECIES)
    model = train_model(tiny_config(tmp_path / "m", optimizer__max_steps=0)).model
    batches = make_batches(tr, model.cutoff, cfg.data.batch_atoms)
    t = Trainer(model, cfg, batches, [], len(tr), 0)
    nb = len(batches)
    assert nb >= 6
    epoch0 = [id(b) for s in range(nb // 3) for b in t._group(s)]
    assert len(set(epoch0)) == len(epoch0) == 3 * (nb // 3)  # no batch twice within an epoch
    assert [id(b) for b in t._group(1)] == [id(b) for b in t._group(1)]  # a function of the step
    assert t._lr(0) == pytest.approx(cfg.optimizer.lr)
    assert t._lr(cfg.optimizer.max_steps) == pytest.approx(cfg.optimizer.lr * cfg.optimizer.lr_final)
    assert t._lr(0, elapsed_s=1e9) == pytest.approx(cfg.optimizer.lr)  # the clock counts only if asked
    # lr_schedule: time anneals over whichever budget ends first
    cfg.optimizer.lr_schedule, cfg.optimizer.max_time_min = "time", 2.0
    lr, fin = cfg.optimizer.lr, cfg.optimizer.lr * cfg.optimizer.lr_final
    assert t._lr(0, elapsed_s=0.0) == pytest.approx(lr)
    assert t._lr(0, elapsed_s=60.0) == pytest.approx(0.5 * (lr + fin))  # half the clock: half-way down the cosine
    assert t._lr(0, elapsed_s=120.0) == pytest.approx(fin)
    assert t._lr(cfg.optimizer.max_steps, elapsed_s=1.0) == pytest.approx(fin)  # the steps still end it


def test_time_schedule_ends_annealed(tmp_path):
    """lr_schedule: time with a wall-clock cap far inside max_steps: the run stops on the clock with
    the learning rate at the bottom of its cosine (with lr_schedule: steps it would still be near lr)."""
    torch.set_num_threads(1)
    from sus2md.train.config import config_from_dict  # noqa: F401  (tiny_config validates)
    from sus2md.train import workflow

    seen = []
    real = workflow.Trainer.minibatch_step

    def spy(self):
        out = real(self)
        seen.append(self.opt.param_groups[0]["lr"])
        return out

    workflow.Trainer.minibatch_step = spy
    try:
        res = train_model(tiny_config(tmp_path, **ADAM, optimizer__max_steps=10 ** 7, optimizer__max_time_min=0.1,
                                      optimizer__lr_schedule="time"))
    finally:
        workflow.Trainer.minibatch_step = real
    assert res.stop_reason == "max_time_min" and len(seen) > 10
    lr = 0.005
    assert seen[0] > 0.5 * lr and seen[-1] < 0.05 * lr  # the clock includes the pre-training
    assert all(a >= b for a, b in zip(seen, seen[1:]))  # monotone down the cosine


def test_starting_point_is_a_validation_candidate(tmp_path):
    """A run whose steps only make validation worse keeps the pre-trained start."""
    torch.set_num_threads(1)
    over = dict(optimizer__kind="adam", optimizer__lr=1.0, optimizer__linear_solve_every=0,
                early_stopping__validate_every=1, data__batch_atoms=16)
    start = train_model(tiny_config(tmp_path / "s", **over, optimizer__max_steps=0))
    bad = train_model(tiny_config(tmp_path / "b", **over, optimizer__max_steps=3))
    hist = json.loads((tmp_path / "b" / "m.log.json").read_text())["history"]
    assert hist[0]["step"] == 0 and hist[0]["train_loss"] is None
    assert min(h["val_loss"] for h in hist[1:]) > hist[0]["val_loss"]
    for (k, v), w in zip(_params(start.model).items(), _params(bad.model).values()):
        assert torch.equal(v, w), k


def test_stalled_lbfgs_stops_training(tmp_path):
    """An L-BFGS that found no decrease along the gradient ends the run (reason line_search)."""
    from sus2md.train.dataset import load_split, make_batches
    from sus2md.train.trainer import Trainer

    cfg = tiny_config(tmp_path, optimizer__kind="lbfgs", optimizer__max_steps=100)
    tr, _, _ = load_split(cfg.data.train, None, None, SPECIES)
    model = train_model(tiny_config(tmp_path / "m", optimizer__max_steps=0)).model
    t = Trainer(model, cfg, make_batches(tr, model.cutoff, cfg.data.batch_atoms), [], len(tr), 0)
    said = []
    t.say = said.append
    t.state.step = 5
    assert t._should_stop(0.0) is None
    t.lbfgs.stalled = True
    assert t._should_stop(0.0) == "line_search" and "float64 can go further" in said[-1]


@pytest.mark.parametrize("kind", ["lbfgs", "adam"])
def test_equal_moments_keep_equal_coefficients(tmp_path, kind):
    """Moments that are one polynomial reached twice keep one coefficient each through the
    pre-training, every optimiser step and the validation choice (no drift along the null direction)."""
    torch.set_num_threads(1)
    over = ADAM if kind == "adam" else {"optimizer__kind": "lbfgs", "optimizer__linear_solve_every": 0}
    res = train_model(tiny_config(tmp_path, **over, optimizer__max_steps=16, early_stopping__validate_every=4))
    assert res.steps == 16
    groups = duplicate_moments(res.model)
    c = res.model.moment_coeffs.detach()
    assert groups and all(bool((c[g] == c[g[0]]).all()) for g in groups)
    assert c.abs().max() > 0


def test_scaling_start_follows_the_given_ranges(tmp_path, trained):
    """model.alpha_init_per_A / r0_init_A: a new model's (alpha, r0) start on the pair-strength line
    between the given first and last pair values, and random sampling redraws on the same line;
    with a trained init_from the keys are an error (the file's values are the start)."""
    from sus2md.errors import ConfigError
    from sus2md.train.workflow import build_mtp

    torch.set_num_threads(1)
    rng = dict(model__alpha_init_per_A=[1.5, 1.0], model__r0_init_A=[3.0, 3.8])
    mtp, _ = build_mtp(tiny_config(tmp_path, **rng))
    scal = mtp.scal_coeffs.reshape(mtp.n_blocks, 2, 3, 3)
    alpha, r0 = scal[:, 0], scal[:, 1]
    assert alpha.min() >= 1.0 and alpha.max() <= 1.5 and r0.min() >= 3.0 and r0.max() <= 3.8
    assert alpha[:, 0, 0].mean() > alpha[:, 2, 2].mean() and r0[:, 0, 0].mean() < r0[:, 2, 2].mean()
    default, _ = build_mtp(tiny_config(tmp_path))
    assert default.scal_coeffs.reshape(default.n_blocks, 2, 3, 3)[:, 1].max() <= 2.5  # the authors' 1.5 -> 2.5
    res = train_model(tiny_config(tmp_path, **rng, optimizer__max_steps=0, optimizer__random_samples=3))
    a, r = res.model.alpha.detach(), res.model.r0.detach()
    assert a.min() >= 1.0 and a.max() <= 1.5 and r.min() >= 3.0 and r.max() <= 3.8
    cfg, _ = trained
    with pytest.raises(ConfigError, match=r"model\.r0_init_A: .*m\.mtp is trained, so training starts from its "
                                          r"\(alpha, r0\); leave r0_init_A out"):
        build_mtp(tiny_config(tmp_path, model__init_from=str(cfg.output.model), model__r0_init_A=[3.0, 3.8]))


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_a_signal_stops_after_the_step_with_a_checkpoint_and_resume_finishes_the_run(tmp_path, monkeypatch, sig):
    """Ctrl-C (or a scheduler's SIGTERM) during a step: the step finishes, the checkpoint, model and
    logs of that step are written, and --resume ends where the uninterrupted run ends."""
    import os
    import signal

    from sus2md.train.checkpoint import load_checkpoint
    from sus2md.train.trainer import Trainer

    torch.set_num_threads(1)
    signum = getattr(signal, sig)
    full = train_model(tiny_config(tmp_path / "a", optimizer__max_steps=12))
    real = Trainer.lbfgs_step

    def step(self):  # the signal arrives in the middle of the 7th step
        if self.state.step == 6:
            os.kill(os.getpid(), signum)
        return real(self)

    monkeypatch.setattr(Trainer, "lbfgs_step", step)
    cfg = tiny_config(tmp_path / "b", optimizer__max_steps=12)
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}  # SIG_IGN in a nohup'd CI job
    cut = train_model(cfg)
    assert (cut.stop_reason, cut.steps, cut.stop_signal) == ("interrupted", 7, signum)
    assert load_checkpoint(cfg.output.checkpoint)["state"]["step"] == 7
    assert read_mtp(cfg.output.model).is_trained
    assert json.loads(cfg.output.log_json.read_text())["stop_reason"] == "interrupted"
    assert {s: signal.getsignal(s) for s in before} == before  # the handlers are restored
    monkeypatch.undo()
    resumed = train_model(cfg, resume=True)
    assert (resumed.stop_reason, resumed.steps) == ("max_steps", 12)
    for (k, v), w in zip(_params(full.model).items(), _params(resumed.model).values()):
        assert torch.allclose(v, w, rtol=1e-9, atol=1e-12), k


def test_cli_ctrl_c_exits_130_with_the_resume_command(tmp_path, monkeypatch, capsys):
    import os
    import signal

    import yaml

    from sus2md.cli import main
    from sus2md.train.trainer import Trainer

    torch.set_num_threads(1)
    real = Trainer.lbfgs_step

    def step(self):
        if self.state.step == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return real(self)

    monkeypatch.setattr(Trainer, "lbfgs_step", step)
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump({"model": {"L": 2, "K": 1, "R": 5, "cutoff_A": 4.2, "species": SPECIES},
                                    "data": {"train": str(DATA)}, "optimizer": {"max_steps": 8, "init_subset": 4},
                                    "output": {"model": str(tmp_path / "m.mtp"), "progress": False}, "threads": 1}))
    with pytest.raises(SystemExit) as exc:
        main(["train", str(path)])
    assert exc.value.code == 130
    err = capsys.readouterr().err
    assert f"interrupted; continue with: sus2md train {path} --resume" in err
    assert (tmp_path / "m.mtp").is_file() and (tmp_path / "m.ckpt.pt").is_file()
