"""The ``sus2md learn`` configuration: a pydantic schema of the YAML file (example:
``examples/learn_emt.yaml``).

Unknown keys are errors naming their YAML path, raised as :class:`~sus2md.errors.ConfigError`;
relative paths are relative to the YAML file's directory.  The model (``model:``) and the
training recipe (``training:``: loss, optimizer, early stopping) reuse the ``sus2md train``
schema (:mod:`sus2md.train.config`); the loop sets the data and output files itself.
"""
from __future__ import annotations

import glob
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sus2md.errors import ConfigError
from sus2md.train.config import EarlyStoppingSpec, LossSpec, ModelSpec, OptimizerSpec, read_yaml, yaml_path

__all__ = ["LearnConfig", "load_learn_config", "learn_config_from_dict"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LabellerSpec(_Strict):
    """Who labels the selected configurations (``labeller:``): an ASE calculator in this process,
    or someone else (``external: true``: the loop writes what to label and stops)."""

    calculator: Optional[str] = Field(None, description="an ASE calculator class by import path, "
                                                        "'module:Class', e.g. 'ase.calculators.emt:EMT'")
    kwargs: dict[str, Any] = Field({}, description="keyword arguments of the calculator's constructor")
    external: bool = Field(False, description="label outside: the loop writes DIR/iter_K/to_label.extxyz (and "
                                              ".cfg), stops with exit status 3, and --resume reads "
                                              "DIR/iter_K/labelled.extxyz")

    @model_validator(mode="after")
    def _one_kind(self) -> "LabellerSpec":
        if (self.calculator is None) == (not self.external):
            raise ValueError("give exactly one of calculator (an ASE calculator, 'module:Class') or external: true")
        if self.calculator is not None and ":" not in self.calculator:
            raise ValueError(f"calculator: expected 'module:Class' (e.g. 'ase.calculators.emt:EMT'), "
                             f"got {self.calculator!r}")
        return self


class ExploreSpec(_Strict):
    """Exploration MD of every iteration (``exploration:``): for each temperature (and pressure),
    ``replicas`` runs, each started from a structure of the labelled set (round-robin over the
    initial structures, re-decorated with a random composition if ``random_composition``), graded
    every ``grade_interval_steps``."""

    temperatures_K: list[float] = Field(description="temperatures of the exploration runs", min_length=1)
    pressures_bar: Optional[list[float]] = Field(None, description="NPT at each of these pressures (null: NVT)")
    barostat: Literal["isotropic", "anisotropic", "flexible"] = Field("flexible", description="NPT barostat")
    steps: int = Field(2000, ge=1, description="MD steps of each exploration run")
    timestep_fs: float = Field(2.0, gt=0, le=10, description="MD time step")
    replicas: int = Field(2, ge=1, description="runs per condition and iteration")
    grade_interval_steps: int = Field(20, ge=1, description="a grade check every this many steps")
    supercell_min_atoms: int = Field(0, ge=0, description="repeat a starting structure until it has at least "
                                                          "this many atoms (periodic directions only)")
    processes: int = Field(1, ge=1, description="exploration runs in parallel (separate processes)")
    random_composition: bool = Field(False, description="each run re-decorates its starting structure: a random "
                                                        "subset of the model's species (seeded), every atom's species "
                                                        "drawn from it, the cell scaled by Vegard's law from ASE's "
                                                        "reference atomic volumes; explores compositions the "
                                                        "starting structures lack (MD alone never changes them)")
    dtype: Literal["float32", "float64"] = Field("float64", description="precision of the exploration MD")


class GradeSpec(_Strict):
    """Extrapolation-grade thresholds (``grade:``), as in a protocol's ``extrapolation`` section."""

    select_gamma: float = Field(2.0, gt=0, description="snapshots graded above this are candidates")
    break_gamma: float = Field(10.0, gt=0, description="an exploration run stops above this")

    @model_validator(mode="after")
    def _ordered(self) -> "GradeSpec":
        if self.select_gamma > self.break_gamma:
            raise ValueError(f"select_gamma: must be <= break_gamma ({self.break_gamma:g}), got {self.select_gamma:g}")
        return self


class TrainingSpec(_Strict):
    """The recipe of every (re)training (``training:``); iteration K starts from iteration K-1's
    model.  ``loss``, ``optimizer`` and ``early_stopping`` are those of ``sus2md train``."""

    loss: LossSpec = Field(LossSpec(), description="loss weights (sus2md train)")
    optimizer: OptimizerSpec = Field(OptimizerSpec(), description="optimizer and pre-training (sus2md train)")
    early_stopping: EarlyStoppingSpec = Field(EarlyStoppingSpec(), description="validation checks (sus2md train)")
    validation_fraction: float = Field(0.1, ge=0.0, lt=1.0, description="labelled configurations held out for "
                                                                        "validation")
    batch_atoms: int = Field(4000, ge=1, description="atoms per cached mini-batch graph")


class StopSpec(_Strict):
    """When the loop ends (``stopping:``): an exploration round in which no run exceeds
    ``grade.select_gamma`` (converged), or one of these caps."""

    max_iterations: int = Field(10, ge=1, description="learning iterations at most")
    max_labels: int = Field(1000, ge=1, description="labelled configurations at most (initial ones included)")


class LearnConfig(_Strict):
    """The loop: the initial structures, the model, the labeller, the exploration MD, the grade
    thresholds, the selection size, the training recipe, an optional test set and when to stop."""

    structures: list[str] = Field(description="initial structures: files or glob patterns of any ASE-readable "
                                              "format (every frame of each file)", min_length=1)
    model: ModelSpec = Field(description="the model to learn (sus2md train's model section: a new model's "
                                         "basis and species, or init_from)")
    labeller: LabellerSpec = Field(description="who labels")
    exploration: ExploreSpec = Field(description="exploration MD")
    grade: GradeSpec = Field(GradeSpec(), description="grade thresholds")
    selected_per_iteration: int = Field(50, ge=1, description="configurations selected (MaxVol) per iteration "
                                                              "at most")
    training: TrainingSpec = Field(TrainingSpec(), description="training recipe")
    test: Optional[str] = Field(None, description="labelled test set (.cfg/extxyz) scored after every training, "
                                                  "per config_type")
    stopping: StopSpec = Field(StopSpec(), description="when to stop")
    seed: int = Field(0, ge=0, description="seed of exploration velocities, thermostats and starting structures")
    threads: Optional[int] = Field(None, ge=1, description="torch threads (null: the usable idle cores)")

    def resolve(self, base: Path) -> "LearnConfig":
        """Relative paths relative to ``base``; globs expanded (an unmatched pattern is an error)."""
        files: list[str] = []
        for k, pattern in enumerate(self.structures):
            p = Path(pattern).expanduser()
            p = p if p.is_absolute() else base / p
            found = sorted(glob.glob(str(p))) if glob.has_magic(str(p)) else ([str(p)] if p.exists() else [])
            if not found:
                raise ConfigError(f"structures[{k}]: no file matches {pattern} (relative to {base})")
            files += found
        self.structures = files
        if self.model.init_from is not None and not self.model.init_from.is_absolute():
            self.model.init_from = base / self.model.init_from
        if self.test is not None and not Path(self.test).is_absolute():
            self.test = str(base / self.test)
        return self


def learn_config_from_dict(data: Any, base: Path | None = None, source: str = "config") -> LearnConfig:
    """Validate plain data; ConfigError naming the YAML path of the first problems."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        cfg = LearnConfig.model_validate(data)
    except ValidationError as e:
        msgs = []
        for err in e.errors()[:3]:
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key"
            msgs.append(f"{yaml_path(err['loc'])}: {msg}")
        raise ConfigError(f"{source}: " + "; ".join(msgs)) from None
    return cfg.resolve(base if base is not None else Path.cwd())


def load_learn_config(path: str | Path) -> LearnConfig:
    """Read and validate a ``sus2md learn`` YAML file."""
    path = Path(path)
    return learn_config_from_dict(read_yaml(path, "learning config"), base=path.parent, source=str(path))
