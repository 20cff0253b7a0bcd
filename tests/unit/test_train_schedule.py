"""The training schedule: optimizer.kind auto, the regularisation terms, phase messages, no-validation runs."""
import json

import pytest
import torch

from sus2md.train.workflow import train_model
from tests.unit.train_helpers import tiny_config


def _params(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _non_additive(p: torch.Tensor) -> float:
    p = p.detach()
    inter = p - p.mean(2, keepdim=True) - p.mean(1, keepdim=True) + p.mean((1, 2), keepdim=True)
    return float((inter ** 2).sum())


def test_auto_picks_lbfgs_for_small_data_and_adam_above(tmp_path):
    torch.set_num_threads(1)
    lines = []
    train_model(tiny_config(tmp_path / "a", optimizer__max_steps=2), echo=lines.append)
    assert any(s.startswith("training: full-batch L-BFGS") and "<= full_batch_atoms = 50000" in s for s in lines)
    lines.clear()
    res = train_model(tiny_config(tmp_path / "b", optimizer__max_steps=2, optimizer__full_batch_atoms=10,
                                  data__batch_atoms=16), echo=lines.append)
    assert any(s.startswith("training: Adam mini-batches") and "> full_batch_atoms = 10" in s for s in lines)
    hist = json.loads((tmp_path / "b" / "m.log.json").read_text())["history"]
    assert "evaluations" not in hist[-1] and res.steps == 2


def test_phases_are_announced(tmp_path):
    torch.set_num_threads(1)
    lines = []
    train_model(tiny_config(tmp_path, optimizer__max_steps=4, optimizer__linear_solve_every=2), echo=lines.append)
    order = ["pre-training: Rescale", "pre-training: scaling =", "pre-training: random sampling",
             "pre-training: linear solve", "pre-training: done", "training: full-batch L-BFGS",
             "step 2: linear solve", "stopped after 4 steps"]
    at = [next(i for i, s in enumerate(lines) if s.startswith(p)) for p in order]
    assert at == sorted(at), lines


def test_no_validation_no_nan(tmp_path, capsys):
    torch.set_num_threads(1)
    cfg = tiny_config(tmp_path, optimizer__max_steps=3, data__validation_fraction=0.0, early_stopping__validate_every=1,
                      early_stopping__patience=1)
    cfg.output.progress = True
    res = train_model(cfg)
    err = capsys.readouterr().err
    assert "train_loss=" in err and "nan" not in err.lower() and "val_loss" not in err
    assert res.steps == 3 and res.stop_reason == "max_steps"  # patience needs validation data
    hist = json.loads(cfg.output.log_json.read_text())["history"]
    assert all("val_loss" not in h for h in hist)


def test_pair_penalty_makes_pairs_additive(tmp_path):
    torch.set_num_threads(1)
    base = dict(optimizer__max_steps=20, optimizer__linear_solve_every=0, optimizer__random_samples=0)
    free = train_model(tiny_config(tmp_path / "f", **base)).model
    tied = train_model(tiny_config(tmp_path / "t", **base, loss__pair_l2=10.0)).model
    assert _non_additive(tied.alpha) < 0.1 * _non_additive(free.alpha)
    assert _non_additive(tied.r0) < 0.1 * _non_additive(free.r0)


def _species_part(p: torch.Tensor) -> float:
    p = p.detach()
    mean = p.mean((1, 2), keepdim=True)
    return float((((p.mean(2, keepdim=True) - mean) + (p.mean(1, keepdim=True) - mean)) ** 2).sum())


def test_species_penalty_pulls_species_to_the_average_and_leaves_pairs_alone(tmp_path):
    torch.set_num_threads(1)
    # no validation data: the model kept is the last step's (the penalty raises the data loss)
    base = dict(optimizer__max_steps=20, optimizer__linear_solve_every=0, optimizer__random_samples=0,
                data__validation_fraction=0.0)
    start = train_model(tiny_config(tmp_path / "s", **base | {"optimizer__max_steps": 0})).model
    free = train_model(tiny_config(tmp_path / "f", **base)).model
    tied = train_model(tiny_config(tmp_path / "t", **base, loss__species_l2=10.0)).model
    for name in ("alpha", "r0"):
        assert _species_part(getattr(tied, name)) < 0.25 * min(_species_part(getattr(free, name)),
                                                               _species_part(getattr(start, name)))
        # the non-additive part is not what this penalty acts on
        assert _non_additive(getattr(tied, name)) > 0.1 * _non_additive(getattr(free, name))


@pytest.mark.parametrize("kind", ["lbfgs", "adam"])
def test_ema_is_the_moving_average_of_the_steps(tmp_path, monkeypatch, kind):
    """optimizer.ema_decay: without validation data the model written is the moving average of the
    parameters after each step, decay min(d, (1 + n) / (10 + n)), restarted by each linear solve."""
    from sus2md.train.trainer import Trainer

    torch.set_num_threads(1)
    seen, update = [], Trainer._ema_update

    def record(self):
        seen.append((self.state.step, {k: p.detach().double().clone() for k, p in self.model.named_parameters()
                                        if p.requires_grad}))
        update(self)

    monkeypatch.setattr(Trainer, "_ema_update", record)
    over = dict(optimizer__kind=kind, optimizer__max_steps=9, optimizer__linear_solve_every=5, optimizer__lr=0.005,
                optimizer__random_samples=0, optimizer__ema_decay=0.7, data__validation_fraction=0.0)
    res = train_model(tiny_config(tmp_path, **over))
    assert [s for s, _ in seen] == list(range(9))
    avg, n = None, 0
    for step, params in seen:
        if step == 5:  # a linear solve ran before step 5
            avg, n = None, 0
        if avg is None:
            avg = {k: v.clone() for k, v in params.items()}
        n += 1
        d = min(0.7, (1 + n) / (10 + n))
        avg = {k: d * avg[k] + (1 - d) * params[k] for k in avg}
    last = seen[-1][1]
    got = dict(res.model.named_parameters())
    assert any(not torch.allclose(avg[k], last[k]) for k in avg)  # the average is not the last step
    for k in avg:
        assert torch.allclose(got[k].detach().double(), avg[k], rtol=1e-12, atol=1e-12), k


def test_scaling_penalty_keeps_alpha_r0_near_the_start(tmp_path):
    torch.set_num_threads(1)
    base = dict(optimizer__max_steps=6, optimizer__linear_solve_every=0, optimizer__random_samples=0)
    start = train_model(tiny_config(tmp_path / "s", **base | {"optimizer__max_steps": 0})).model
    free = train_model(tiny_config(tmp_path / "f", **base)).model
    held = train_model(tiny_config(tmp_path / "h", **base, loss__scaling_l2=100.0)).model
    moved = lambda m: float(((m.alpha - start.alpha).abs().max() + (m.r0 - start.r0).abs().max()).detach())
    assert moved(free) > 0 and moved(held) < 0.1 * moved(free)


@pytest.mark.parametrize("kind, finish, stop_at", [("lbfgs", 0, 5), ("adam", 0, 5), ("adam", 4, 8)],
                         ids=["lbfgs", "adam", "adam-then-lbfgs"])
def test_resume_with_penalties_reproduces(tmp_path, monkeypatch, kind, finish, stop_at):
    """The anchor of scaling_l2 and the L-BFGS history/metric travel in the checkpoint."""
    from sus2md.train.trainer import Trainer

    torch.set_num_threads(1)
    over = dict(optimizer__kind=kind, optimizer__max_steps=10 - finish, optimizer__lbfgs_finish_steps=finish,
                optimizer__ema_decay=0.8,
                optimizer__linear_solve_every=4, loss__pair_l2=0.01, loss__scaling_l2=0.01, loss__species_l2=0.01,
                output__checkpoint_every=3,
                data__batch_atoms=16, optimizer__lr=0.005)
    full = train_model(tiny_config(tmp_path / "a", **over))
    hist = json.loads((tmp_path / "a" / "m.log.json").read_text())["history"]
    assert [("evaluations" in h) for h in hist if "time_s" in h] == [kind == "lbfgs" or k >= 10 - finish for k in range(10)]
    stop = Trainer._should_stop
    monkeypatch.setattr(Trainer, "_should_stop", lambda self, t: "interrupted" if self.state.step >= stop_at else stop(self, t))
    train_model(tiny_config(tmp_path / "b", **over))
    monkeypatch.setattr(Trainer, "_should_stop", stop)
    resumed = train_model(tiny_config(tmp_path / "b", **over), resume=True)
    for (k, v), w in zip(_params(full.model).items(), _params(resumed.model).values()):
        assert torch.allclose(v, w, rtol=1e-9, atol=1e-12), k
