"""The training YAML schema: unknown keys and bad values name their YAML path."""
import pytest

from sus2md.errors import ConfigError, UsageError
from sus2md.train.checkpoint import load_checkpoint
from sus2md.train.config import config_from_dict, load_config

BASE = {"model": {"species": ["Cu"]}, "data": {"train": "t.extxyz"}}


def _with(section, **kw):
    d = {k: dict(v) for k, v in BASE.items()}
    d.setdefault(section, {}).update(kw)
    return d


def test_defaults():
    cfg = config_from_dict(BASE)
    assert (cfg.loss.energy_weight, cfg.loss.force_weight, cfg.loss.stress_weight) == (1.0, 0.01, 0.001)
    assert cfg.output.checkpoint.name == "trained.ckpt.pt"


@pytest.mark.parametrize("data, match", [
    (_with("optimizer", kind="sgd"), r"optimizer\.kind: Input should be 'auto', 'lbfgs' or 'adam'"),
    (_with("loss", force_weight=-1), r"loss\.force_weight: Input should be greater than or equal to 0, got -1"),
    (_with("model", colour="red"), r"model\.colour: Extra inputs are not permitted"),
    ({"model": {"L": 2}, "data": {"train": "x"}}, r"model: species: a new model needs its element symbols"),
    ({"model": {"species": ["Cu"]}}, r"data: Field required"),
    (_with("data", validation_fraction=1.5), r"data\.validation_fraction: Input should be less than 1"),
    ([1, 2], r"expected a mapping"),
    (_with("optimizer", lr_schedule="time"), r"optimizer\.lr_schedule: time needs optimizer\.max_time_min"),
    (_with("model", alpha_init_per_A=[1.5, -1.0]), r"model\.alpha_init_per_A\[1\]: Input should be greater than 0, got -1"),
    (_with("model", r0_init_A=[3.0]), r"model\.r0_init_A: give two numbers, \[first pair, last pair\], got \[3\.0\]"),
    (_with("optimizer", lr_schedule="time", max_time_min=5, lbfgs_finish_steps=10),
     r"leaves no time for optimizer\.lbfgs_finish_steps"),
])
def test_config_errors(data, match):
    with pytest.raises(ConfigError, match=match):
        config_from_dict(data)


def test_yaml_errors(tmp_path):
    with pytest.raises(ConfigError, match="training config not found"):
        load_config(tmp_path / "none.yaml")
    p = tmp_path / "bad.yaml"
    p.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p)
    p.write_text("model: {species: [Cu]}\ndata: {train: sub/t.extxyz}\n")
    assert load_config(p).data.train == tmp_path / "sub" / "t.extxyz"


def test_resume_without_checkpoint(tmp_path):
    with pytest.raises(UsageError, match="--resume: no checkpoint"):
        load_checkpoint(tmp_path / "none.pt")


def test_cli_reports_config_error(tmp_path, capsys):
    from sus2md.cli import main

    p = tmp_path / "bad.yaml"
    p.write_text("model: {species: [Cu], L: 9}\ndata: {train: t.extxyz}\n")
    with pytest.raises(SystemExit) as exc:
        main(["train", str(p)])
    assert exc.value.code == 2
    assert "model.L: Input should be less than or equal to 6, got 9" in capsys.readouterr().err
