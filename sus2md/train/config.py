"""The ``sus2md train`` configuration: a pydantic schema of the YAML file.

Unknown keys are errors, and every error names its YAML path (``loss.force_weight: ...``) and
is raised as :class:`~sus2md.errors.ConfigError`.  Relative paths in the file are resolved
against the directory of the YAML file.  Example: ``examples/train_emt.yaml``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, ValidationError, field_validator, model_validator

from sus2md.errors import ConfigError
from sus2md.train.initialise import ALPHA_INIT, R0_INIT_A

__all__ = ["TrainConfig", "load_config", "config_from_dict", "read_yaml", "yaml_path"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


class ModelSpec(_Strict):
    """The model to train (``model:``): a new one (``L``, ``K``, ``R``, ``cutoff_A``, ``species``,
    ``scaling_map``), or ``init_from`` an existing ``.mtp``.

    ``init_from`` links ``sus2md init`` to ``sus2md train``: ``sus2md init --L 2 --K 3 --species
    Al,Ni,Cu --cutoff 5.0 -o untrained.mtp`` writes an untrained model with the published basis
    and its element names, and ``model: {init_from: untrained.mtp}`` trains it like a new model
    (coefficients seeded from ``optimizer.seed``, then Rescale, random sampling and the linear
    solve).  A trained ``.mtp`` as ``init_from`` is fine-tuned: its coefficients are the start
    (no random sampling; Rescale if ``optimizer.rescale``, then the linear solve), and with
    validation data the best validation check is kept, the start included.  With ``init_from``
    the basis (``L``, ``K``, ``R``, ``cutoff_A``, ``scaling_map``) comes from the file: leave
    those keys out (a value that disagrees with the file is an error); ``species`` is needed only
    when the file names no elements (the authors' files).
    """

    L: int = Field(2, ge=0, le=6, description="maximal tensor rank of the moments (the published bases: 2 or 3)")
    K: int = Field(3, ge=1, le=8, description="number of radial channels")
    R: int = Field(8, ge=2, le=30, description="Chebyshev terms per radial function")
    cutoff_A: float = Field(5.0, gt=0, description="cutoff radius")
    species: Optional[list[str]] = Field(None, description="element symbols in type order (type k = species[k]); "
                                                           "required for a new model")
    scaling_map: Literal["K", "L", "LK"] = Field("K", description="how the radial scaling parameters (alpha, r0) "
                                                                 "are shared: per radial channel K, per rank L, or both")
    init_from: Optional[Path] = Field(None, description="existing .mtp to start from: untrained (from `sus2md init`) "
                                                        "or trained (fine-tuning); see above")
    freeze_scaling: bool = Field(False, description="keep alpha, r0 fixed (the authors' --fine-tune)")
    dtype: Literal["float64", "float32"] = Field("float64", description="precision of training (float32 is about "
                                                                        "2x faster for Adam)")
    alpha_init_per_A: tuple[PositiveFloat, PositiveFloat] = Field(
        ALPHA_INIT, description="starting alpha of a new model's first and last species pair (the pairs in "
        "between by the pair strength sqrt(t_i+1) + sqrt(t_j+1); random sampling draws around the same line): the "
        "authors' --scal-range. The tanh map saturates about 2/alpha beyond r0, so with a cutoff above 5 Å a smaller "
        "alpha and a larger r0_init_A let the radial functions resolve the outer shells (the DFT recipe: [1.5, 1.0] "
        "and [3.0, 3.8] at 6 Å)")
    r0_init_A: tuple[float, float] = Field(
        R0_INIT_A, description="starting r0 of a new model's first and last species pair, as alpha_init_per_A: the "
        "authors' --s-range")

    @field_validator("alpha_init_per_A", "r0_init_A", mode="before")
    @classmethod
    def _two_values(cls, v: Any) -> Any:
        if not isinstance(v, (list, tuple)) or len(v) != 2:
            raise ValueError("give two numbers, [first pair, last pair]")
        return v

    @model_validator(mode="after")
    def _need_species(self) -> "ModelSpec":
        if self.init_from is None and not self.species:
            raise ValueError("species: a new model needs its element symbols (or give init_from)")
        return self


class DataSpec(_Strict):
    """Labelled configurations (``data:``): ``.cfg`` files or anything ASE reads (extxyz, ...);
    elements map to types through ``model.species``."""

    train: Path = Field(description="training set")
    validation: Optional[Path] = Field(None, description="validation set (early stopping, the best model is kept)")
    test: Optional[Path] = Field(None, description="test set (final metrics only)")
    validation_fraction: float = Field(0.0, ge=0.0, lt=1.0, description="split from train when no validation file")
    seed: int = Field(0, description="seed of the validation split and of max_train")
    max_train: Optional[int] = Field(None, ge=1, description="use only the first N training configs (after shuffling)")
    batch_atoms: int = Field(4000, ge=1, description="atoms per cached mini-batch graph")


class LossSpec(_Strict):
    """Weights of the loss (``loss:``).  Per configuration of N atoms,
    ``L_c = w_E (E - E_ref)² / N + w_F Σ_i |F_i - F_i,ref|² + w_S ||W - W_ref||² / N`` (eV, eV/Å,
    virial W in eV over its 9 components), averaged over configurations; a missing label drops
    its term (SPEC-sus2 8.1)."""

    energy_weight: float = Field(1.0, ge=0, description="w_E, the weight of the energy term")
    force_weight: float = Field(0.01, ge=0, description="w_F, the weight of the force term")
    stress_weight: float = Field(0.001, ge=0, description="w_S, the weight of the virial (stress) term")
    energy_norm: Literal["total", "per_atom"] = Field(
        "total", description="total: the energy term is w_E (E - E_ref)² / N, so a configuration weighs as its atom "
                             "count (the authors' trainer); per_atom: w_E ((E - E_ref) / N)², every configuration "
                             "alike, as in the per-atom energy RMSE (MACE, NequIP); raise energy_weight by about "
                             "the mean atom count to keep the balance with forces")
    scaling_l2: float = Field(0.0, ge=0, description="weight of the L2 penalty on the change of every alpha and r0 "
                                                     "from its value at the first step (eV²-like units of the loss)")
    pair_l2: float = Field(0.0, ge=0, description="weight of the L2 penalty on the non-additive part of every alpha and r0 "
                                                  "matrix (x_ij - mean_j - mean_i + mean): species pairs with few data "
                                                  "follow what the data say about each species")
    species_l2: float = Field(0.0, ge=0, description="weight of the L2 penalty on the per-species part of every alpha and "
                                                     "r0 matrix (row and column means less the mean, summed over the "
                                                     "matrix): species with few data follow the average species")


class OptimizerSpec(_Strict):
    """The optimizer (``optimizer:``): L-BFGS full-batch steps or Adam mini-batch steps,
    alternating with the exact linear solve of the moment coefficients."""

    kind: Literal["auto", "lbfgs", "adam"] = Field("auto", description="lbfgs: full-batch steps; adam: mini-batch "
                                                                        "steps; auto: lbfgs up to full_batch_atoms "
                                                                        "training atoms, adam above")
    full_batch_atoms: int = Field(50000, ge=0, description="auto: the largest training set (atoms) trained by "
                                                           "full-batch L-BFGS")
    max_steps: int = Field(200, ge=0, description="optimizer steps at most")
    max_time_min: Optional[float] = Field(None, gt=0, description="wall-clock limit, pre-training included; "
                                                                  "null: none")
    lr: float = Field(1.0, gt=0, description="L-BFGS step scale or Adam learning rate")
    lr_final: float = Field(0.01, ge=0, le=1, description="Adam: final learning rate as a fraction of lr (cosine)")
    lr_schedule: Literal["steps", "time"] = Field("steps", description="Adam: what the cosine runs over.  steps: "
                                                                        "max_steps (deterministic for a seed); time: "
                                                                        "whichever of max_steps and max_time_min ends "
                                                                        "first, so a wall-clock budget still ends "
                                                                        "annealed (the steps then depend on the "
                                                                        "machine)")
    batches_per_step: int = Field(1, ge=1, description="Adam: cached batches (data.batch_atoms each) per step")
    lbfgs_finish_steps: int = Field(0, ge=0, description="adam: full-batch L-BFGS steps after the max_steps Adam "
                                                         "steps (the learning rate schedule ends at max_steps)")
    history_size: int = Field(50, ge=1, description="L-BFGS: number of stored curvature pairs")
    precondition: bool = Field(True, description="L-BFGS: diagonal metric from the squared per-batch gradients "
                                                 "(false: the identity)")
    linear_solve_every: int = Field(25, ge=0, description="steps between linear solves; 0 = only before the first step")
    linear_subset: Optional[int] = Field(None, ge=1, description="configs (seeded random batches) used by TrainLinear; default all")
    train_species_coeffs: bool = Field(False, description="optimise the species coefficients c_t too (TrainLinear keeps them)")
    rescale: bool = Field(True, description="Rescale the global scaling before training (SPEC 8.3)")
    random_samples: int = Field(4, ge=0, description="random redraws of the nonlinear block at the start")
    init_subset: int = Field(40, ge=1, description="configs used by Rescale / random sampling")
    seed: int = Field(0, description="seed of the starting coefficients, random sampling and mini-batch order")
    ema_decay: Optional[float] = Field(None, gt=0, lt=1, description="keep an exponential moving average of the "
                                                                     "parameters with this decay per step (as MACE's "
                                                                     "ema_decay, e.g. 0.99; restarted by each linear "
                                                                     "solve): validation checks and the model written "
                                                                     "use the average; null: off")


class EarlyStoppingSpec(_Strict):
    """Validation checks (``early_stopping:``); they need validation data."""

    patience: Optional[int] = Field(20, ge=1, description="stop after this many validation checks without "
                                                          "improvement (the model of the best check is kept either "
                                                          "way); null: never")
    validate_every: int = Field(10, ge=1, description="a validation check every this many steps")


class OutputSpec(_Strict):
    """Files written (``output:``); relative paths are relative to the config file's directory."""

    model: Path = Field(Path("trained.mtp"), description="the trained model (.mtp)")
    checkpoint: Optional[Path] = Field(None, description="checkpoint for --resume; default: model with .ckpt.pt")
    log_json: Optional[Path] = Field(None, description="config, metrics and history; default: model with .log.json")
    log_csv: Optional[Path] = Field(None, description="history table; default: model with .log.csv")
    checkpoint_every: int = Field(20, ge=1, description="a checkpoint every this many steps")
    progress: bool = Field(True, description="progress bar on stderr")

    @field_validator("model")
    @classmethod
    def _file_name(cls, v: Path) -> Path:
        if not v.name or v.name in (".", ".."):
            raise ValueError("must be a file name such as trained.mtp")
        return v


class TrainConfig(_Strict):
    """A ``sus2md train`` config file."""

    model: ModelSpec = Field(description="the model to train")
    data: DataSpec = Field(description="labelled data")
    loss: LossSpec = Field(LossSpec(), description="loss weights")
    optimizer: OptimizerSpec = Field(OptimizerSpec(), description="optimizer and pre-training")
    early_stopping: EarlyStoppingSpec = Field(EarlyStoppingSpec(), description="validation checks")
    output: OutputSpec = Field(OutputSpec(), description="output files")
    threads: Optional[int] = Field(None, ge=1, description="torch threads; null: torch's default")

    @model_validator(mode="after")
    def _defaults(self) -> "TrainConfig":
        o = self.optimizer
        if o.lr_schedule == "time" and o.max_time_min is None:
            raise ValueError("optimizer.lr_schedule: time needs optimizer.max_time_min (the wall clock it anneals "
                             "over); set it, or use lr_schedule: steps")
        if o.lr_schedule == "time" and o.lbfgs_finish_steps:
            raise ValueError("optimizer.lr_schedule: time anneals Adam to the end of max_time_min, which leaves no "
                             "time for optimizer.lbfgs_finish_steps; use lr_schedule: steps with a finish, or drop it")
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


def yaml_path(loc: tuple) -> str:
    """A pydantic error location as the YAML path a user reads (``optimizer.kind``, ``a[0].b``)."""
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
            msgs.append(f"{yaml_path(err['loc'])}: {msg}{got}")
        raise ConfigError(f"{source}: " + "; ".join(msgs)) from None
    return cfg.resolve(base) if base is not None else cfg


def read_yaml(path: str | Path, what: str) -> Any:
    """The data of the YAML file ``path``; ConfigError if it is missing (``what`` names the kind
    of file) or not valid YAML."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} not found: {path}")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from None


def load_config(path: str | Path) -> TrainConfig:
    """Read and validate a training YAML file."""
    path = Path(path)
    return config_from_dict(read_yaml(path, "training config"), base=path.parent, source=str(path))
