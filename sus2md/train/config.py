"""The ``sus2md train`` configuration: a pydantic schema of the YAML file.

Unknown keys are errors, and every error names its YAML path (``loss.force_weight: ...``) and
is raised as :class:`~sus2md.errors.ConfigError`.  Relative paths in the file are resolved
against the directory of the YAML file.  Example: ``examples/train_emt.yaml``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sus2md.errors import ConfigError

__all__ = ["TrainConfig", "load_config", "config_from_dict"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


class ModelSpec(_Strict):
    """A new model (L, K, ...) or ``init_from`` an existing ``.mtp`` (fine-tuning)."""

    L: int = Field(2, ge=0, le=6)
    K: int = Field(3, ge=1, le=8)
    R: int = Field(8, ge=2, le=30, description="Chebyshev terms per radial function")
    cutoff_A: float = Field(5.0, gt=0)
    species: Optional[list[str]] = Field(None, description="element symbols in type order")
    scaling_map: Literal["K", "L", "LK"] = "K"
    init_from: Optional[Path] = Field(None, description="existing .mtp to fine-tune")
    freeze_scaling: bool = Field(False, description="keep alpha, r0 fixed (the authors' --fine-tune)")
    dtype: Literal["float64", "float32"] = "float64"

    @model_validator(mode="after")
    def _need_species(self) -> "ModelSpec":
        if self.init_from is None and not self.species:
            raise ValueError("species: a new model needs its element symbols (or give init_from)")
        return self


class DataSpec(_Strict):
    train: Path
    validation: Optional[Path] = None
    test: Optional[Path] = None
    validation_fraction: float = Field(0.0, ge=0.0, lt=1.0, description="split from train when no validation file")
    seed: int = 0
    max_train: Optional[int] = Field(None, ge=1, description="use only the first N training configs (after shuffling)")
    batch_atoms: int = Field(4000, ge=1, description="atoms per cached mini-batch graph")


class LossSpec(_Strict):
    energy_weight: float = Field(1.0, ge=0)
    force_weight: float = Field(0.01, ge=0)
    stress_weight: float = Field(0.001, ge=0)


class OptimizerSpec(_Strict):
    kind: Literal["lbfgs", "adam"] = Field("lbfgs", description="lbfgs: full batch; adam: mini-batch steps")
    max_steps: int = Field(200, ge=0)
    max_time_min: Optional[float] = Field(None, gt=0)
    lr: float = Field(1.0, gt=0, description="L-BFGS step scale or Adam learning rate")
    lr_final: float = Field(0.01, ge=0, le=1, description="Adam: final learning rate as a fraction of lr (cosine)")
    batches_per_step: int = Field(1, ge=1, description="Adam: cached batches (data.batch_atoms each) per step")
    history_size: int = Field(50, ge=1)
    linear_solve_every: int = Field(25, ge=0, description="0 = only before the first step")
    linear_subset: Optional[int] = Field(None, ge=1, description="configs (seeded random batches) used by TrainLinear; default all")
    train_species_coeffs: bool = Field(False, description="optimise the species coefficients c_t too (TrainLinear keeps them)")
    rescale: bool = Field(True, description="Rescale the global scaling before training (SPEC 8.3)")
    random_samples: int = Field(4, ge=0, description="random redraws of the nonlinear block at the start")
    init_subset: int = Field(40, ge=1, description="configs used by Rescale / random sampling")
    seed: int = 0


class EarlyStoppingSpec(_Strict):
    patience: Optional[int] = Field(None, ge=1, description="validation checks without improvement")
    validate_every: int = Field(10, ge=1)


class OutputSpec(_Strict):
    model: Path = Path("trained.mtp")
    checkpoint: Optional[Path] = None
    log_json: Optional[Path] = None
    log_csv: Optional[Path] = None
    checkpoint_every: int = Field(20, ge=1)
    progress: bool = True

    @field_validator("model")
    @classmethod
    def _file_name(cls, v: Path) -> Path:
        if not v.name or v.name in (".", ".."):
            raise ValueError("must be a file name such as trained.mtp")
        return v


class TrainConfig(_Strict):
    model: ModelSpec
    data: DataSpec
    loss: LossSpec = LossSpec()
    optimizer: OptimizerSpec = OptimizerSpec()
    early_stopping: EarlyStoppingSpec = EarlyStoppingSpec()
    output: OutputSpec = OutputSpec()
    threads: Optional[int] = Field(None, ge=1)

    @model_validator(mode="after")
    def _defaults(self) -> "TrainConfig":
        out = self.output
        if out.checkpoint is None:
            out.checkpoint = out.model.with_suffix(".ckpt.pt")
        if out.log_json is None:
            out.log_json = out.model.with_suffix(".log.json")
        if out.log_csv is None:
            out.log_csv = out.model.with_suffix(".log.csv")
        return self

    def resolve(self, base: Path) -> "TrainConfig":
        """Make relative paths relative to ``base`` (the YAML file's directory)."""
        r = lambda p: p if p is None or p.is_absolute() else base / p
        self.model.init_from = r(self.model.init_from)
        for k in ("train", "validation", "test"):
            setattr(self.data, k, r(getattr(self.data, k)))
        for k in ("model", "checkpoint", "log_json", "log_csv"):
            setattr(self.output, k, r(getattr(self.output, k)))
        return self


def _yaml_path(loc: tuple) -> str:
    s = ""
    for part in loc:
        s += f"[{part}]" if isinstance(part, int) else (f".{part}" if s else str(part))
    return s or "(top level)"


def config_from_dict(data: dict, base: Path | None = None, source: str = "config") -> TrainConfig:
    """Validate a dict; raise :class:`ConfigError` naming the YAML path of the first problems."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        cfg = TrainConfig.model_validate(data)
    except ValidationError as e:
        msgs = []
        for err in e.errors():
            msg = err["msg"].removeprefix("Value error, ")
            got = f", got {err['input']!r}" if err["type"] != "missing" and not isinstance(err["input"], dict) else ""
            msgs.append(f"{_yaml_path(err['loc'])}: {msg}{got}")
        raise ConfigError(f"{source}: " + "; ".join(msgs)) from None
    return cfg.resolve(base) if base is not None else cfg


def load_config(path: str | Path) -> TrainConfig:
    """Read and validate a training YAML file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"training config not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from None
    return config_from_dict(data, base=path.parent, source=str(path))
