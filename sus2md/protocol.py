"""The MD protocol schema: what ``sus2md run protocol.yaml`` reads.

A protocol names a structure, a model, the platform settings and a list of stages (minimize,
nvt, npt, nve) run one after the other on the same System.  Every field with a unit says it
(``temperature_K``, ``timestep_fs``, ``pressure_bar``).  :func:`load_protocol` returns a
*resolved* :class:`Protocol`: each stage has a name (``stage0_nvt``), ``steps`` (converted from
``duration_ps`` when that was given, rounded to the nearest whole step), and
``initial_velocities``; structure and model paths are absolute (a relative path is relative to
the protocol file's directory).  ``Protocol.resolved_dict()`` is the YAML the run directory keeps;
it validates again unchanged.  The optional ``extrapolation`` section (:class:`ExtrapolationSpec`)
turns on the extrapolation grade during dynamical stages (see ``sus2md.engine.run``); its
``active_set``/``training_data`` paths resolve like the structure's.

No torch, no openmm here: the CLI validates a protocol before any heavy import.  YAML syntax
errors and schema violations become one-line :class:`ConfigError` messages naming the file and
the YAML path (``protocol.yaml: stages[2].pressure_bar: must be >= 0, got -5``).
"""
from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError, field_validator, model_validator

from sus2md.errors import ConfigError

Int = Annotated[int, Strict()]
Float = Annotated[float, Strict()]
Bool = Annotated[bool, Strict()]
PositiveInt = Annotated[int, Strict(), Field(gt=0)]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StructureSpec(_Frozen):
    """The starting structure (``structure:``)."""

    #: structure file: extxyz, cif, POSCAR/CONTCAR, lammps-data, pdb or .cfg (relative to the
    #: protocol file's directory)
    path: str
    #: file format (extxyz, cif, vasp, lammps-data, pdb, cfg or an ASE format name); null: from the
    #: file name
    format: str | None = None
    #: repeat the structure [nx, ny, nz] times along the cell vectors (three integers > 0)
    supercell: list[PositiveInt] = [1, 1, 1]
    #: element of each LAMMPS atom type / .cfg type, in type order
    species: tuple[str, ...] | None = None

    @field_validator("supercell")
    @classmethod
    def _three(cls, v: list[int]) -> list[int]:
        if len(v) != 3:
            raise ValueError(f"must be [nx, ny, nz] (3 values), got {len(v)} values")
        return v


class ModelSpec(_Frozen):
    """The potential (``model:``)."""

    #: model file: a SUS2 .mtp, or a .pt compiled by ``sus2md compile`` (relative to the protocol
    #: file's directory)
    path: str
    #: element names of the model's species, in model order (a ``.mtp`` file carries none)
    species: tuple[str, ...] | None = None


class OutputSpec(_Frozen):
    """Files of the run directory besides thermo.csv, checkpoints and provenance (``output:``)."""

    #: format of the trajectory file (trajectory.dcd or trajectory.xtc)
    trajectory_format: Literal["dcd", "xtc"] = "dcd"
    #: a checkpoint every this many steps (``--resume`` continues from the last one)
    checkpoint_interval_steps: PositiveInt = 1000
    #: formats of the final structure written at the end of the run
    final_structure_formats: tuple[Literal["extxyz", "cif", "pdb", "vasp", "lammps-data"], ...] = (
        "extxyz",
        "cif",
    )


class ExtrapolationSpec(_Frozen):
    """Extrapolation grade during dynamical stages (:class:`sus2md.active.grade.GradeMonitor`).

    The active set comes from ``active_set`` (an ``.npz`` written by ``sus2md grade --active-set``)
    or is built at the start of the run from ``training_data`` (``.cfg``/extxyz; ``species``
    names the element of each ``.cfg`` type when the model names none).  Every
    ``interval_steps`` steps of a dynamical stage (counted from the stage start) the run grades
    the state: above ``warn_gamma`` it warns and appends the configuration to ``dump_cfg`` in the
    run directory, above ``break_gamma`` it stops with a SimulationError.
    """

    #: active set (.npz) written by ``sus2md grade --active-set``; give this or training_data
    active_set: str | None = None
    #: training set (.cfg/extxyz) to build the active set from at the start; give this or active_set
    training_data: str | None = None
    #: element of each .cfg type of training_data, in type order, when the model names none
    species: tuple[str, ...] | None = None
    #: grade the state every this many steps of a dynamical stage
    interval_steps: PositiveInt = 100
    #: above this grade: warn and append the configuration to dump_cfg (at most break_gamma)
    warn_gamma: Annotated[Float, Field(gt=0)] = 2.0
    #: above this grade: stop with an error (the last good state stays in the checkpoint)
    break_gamma: Annotated[Float, Field(gt=0)] = 10.0
    #: file name in the run directory for configurations graded above warn_gamma
    dump_cfg: str = "extrapolative.cfg"

    @field_validator("dump_cfg")
    @classmethod
    def _plain_name(cls, v: str) -> str:
        if not v or Path(v).name != v or v in (".", ".."):
            raise ValueError(f"must be a file name inside the run directory (no directories), got {v!r}")
        return v

    @model_validator(mode="after")
    def _one_source(self) -> ExtrapolationSpec:
        if (self.active_set is None) == (self.training_data is None):
            given = "both" if self.active_set is not None else "neither"
            raise ValueError(f"give exactly one of active_set or training_data ({given} given)")
        if self.species is not None and self.training_data is None:
            raise ValueError("species: only applies with training_data")
        if self.warn_gamma > self.break_gamma:
            raise ValueError(f"warn_gamma: must be <= break_gamma ({self.break_gamma:g}), got {self.warn_gamma:g}")
        return self


class Sweep(_Frozen):
    """Replica ``k`` of the run gets ``values[k]`` for ``parameter``."""

    #: the protocol value the replicas differ in (in every stage that sets it)
    parameter: Literal["temperature_K", "pressure_bar", "seed"]
    #: one value per replica (temperature_K > 0, pressure_bar >= 0, seed a whole number >= 0)
    values: Annotated[list[Float], Field(min_length=1)]

    @model_validator(mode="after")
    def _values_fit_parameter(self) -> Sweep:
        for k, v in enumerate(self.values):
            if self.parameter == "seed" and (v != int(v) or v < 0):
                raise ValueError(f"values[{k}]: a seed must be a whole number >= 0, got {v}")
            if self.parameter == "temperature_K" and v <= 0:
                raise ValueError(f"values[{k}]: temperature_K must be > 0, got {v}")
            if self.parameter == "pressure_bar" and v < 0:
                raise ValueError(f"values[{k}]: pressure_bar must be >= 0, got {v}")
        return self


class MinimizeStage(_Frozen):
    """Energy minimization (OpenMM's L-BFGS ``minimizeEnergy``) of the current state."""

    #: stage type
    type: Literal["minimize"]
    #: stage name in logs and files; default ``stage<i>_<type>`` (i = position in stages)
    name: str | None = None
    #: converged when the root-mean-square force component is below this (OpenMM's tolerance)
    tolerance_kJ_mol_nm: Annotated[Float, Field(gt=0)] = 10.0
    #: L-BFGS iterations at most (0: no cap, until converged); an unconverged end is reported
    max_iterations: Annotated[Int, Field(ge=0)] = 1000
    #: a log line (energy, max force) every this many iterations
    log_interval_iterations: PositiveInt = 100


class _Dynamics(_Frozen):
    #: stage name in logs and files; default ``stage<i>_<type>`` (i = position in stages)
    name: str | None = None
    #: number of MD steps; give steps or duration_ps
    steps: Annotated[Int, Field(ge=0)] | None = None
    #: stage length, rounded to whole steps of timestep_fs; give steps or duration_ps
    duration_ps: Annotated[Float, Field(ge=0)] | None = None
    #: integration time step, in (0, 10] fs
    timestep_fs: Float = 1.0
    #: a thermo.csv row every this many steps
    report_interval_steps: PositiveInt = 100
    #: a trajectory frame every this many steps
    trajectory_interval_steps: PositiveInt = 100

    @field_validator("timestep_fs")
    @classmethod
    def _sane_timestep(cls, v: float) -> float:
        if not 0 < v <= 10:
            raise ValueError(f"must be in (0, 10] fs, got {v:g}")
        return v

    @model_validator(mode="after")
    def _exactly_one_length(self) -> _Dynamics:
        if (self.steps is None) == (self.duration_ps is None):
            given = "both" if self.steps is not None else "neither"
            raise ValueError(f"give exactly one of steps or duration_ps ({given} given)")
        return self

    @property
    def total_time_ps(self) -> float:
        return (self.steps or 0) * self.timestep_fs / 1000.0


class NVTStage(_Dynamics):
    """Constant volume and temperature: Langevin (LangevinMiddleIntegrator) or Nose-Hoover thermostat."""

    #: stage type
    type: Literal["nvt"]
    #: thermostat temperature; give temperature_K or temperature_ramp_K
    temperature_K: Annotated[Float, Field(gt=0)] | None = None
    #: linear ramp [start, end] over the stage instead of a fixed temperature_K
    temperature_ramp_K: list[Float] | None = None
    #: langevin (LangevinMiddleIntegrator) or nose-hoover (NoseHooverIntegrator)
    thermostat: Literal["langevin", "nose-hoover"] = "langevin"
    #: langevin only (default 1.0)
    friction_per_ps: Annotated[Float, Field(gt=0)] | None = None
    #: nose-hoover only (default 1.0)
    collision_frequency_per_ps: Annotated[Float, Field(gt=0)] | None = None
    #: default: "maxwell" for the first dynamical stage, "keep" after
    initial_velocities: Literal["maxwell", "keep"] | None = None

    @field_validator("temperature_ramp_K")
    @classmethod
    def _two_positive(cls, v: list[float] | None) -> list[float] | None:
        if v is not None:
            if len(v) != 2:
                raise ValueError(f"must be [start, end] (2 values), got {len(v)} values")
            if min(v) <= 0:
                raise ValueError(f"temperatures must be > 0, got {v}")
        return v

    @model_validator(mode="after")
    def _one_temperature(self) -> NVTStage:
        if (self.temperature_K is None) == (self.temperature_ramp_K is None):
            raise ValueError("give exactly one of temperature_K or temperature_ramp_K")
        wrong = {"langevin": "collision_frequency_per_ps", "nose-hoover": "friction_per_ps"}
        if getattr(self, wrong[self.thermostat]) is not None:
            raise ValueError(f"{wrong[self.thermostat]} does not apply to the {self.thermostat} thermostat")
        return self

    def temperature_at(self, fraction: float) -> float:
        """Target temperature (K) at ``fraction`` in [0, 1] of the stage (clipped)."""
        if self.temperature_ramp_K is None:
            return float(self.temperature_K)  # type: ignore[arg-type]
        start, end = self.temperature_ramp_K
        return start + (end - start) * min(max(fraction, 0.0), 1.0)


class NPTStage(NVTStage):
    """Constant pressure and temperature: the nvt thermostat plus sus2md's Monte Carlo barostat
    (sus2md.engine.barostat: atoms carried affinely, acceptance per move kind in thermo.csv)."""

    #: stage type
    type: Literal["npt"]  # type: ignore[assignment]
    #: barostat pressure
    pressure_bar: Annotated[Float, Field(ge=0)]
    #: isotropic (volume moves), anisotropic (each box length on its own: axis moves) or flexible
    #: (the full cell, for solids: axis and shear moves)
    barostat: Literal["isotropic", "anisotropic", "flexible"] = "isotropic"
    #: a barostat move (one Monte Carlo trial) every this many steps
    barostat_interval_steps: PositiveInt = 25


class NVEStage(_Dynamics):
    """Constant energy (velocity Verlet, OpenMM VerletIntegrator)."""

    #: stage type
    type: Literal["nve"]
    #: only for drawing Maxwell velocities when NVE is the first dynamical stage
    temperature_K: Annotated[Float, Field(gt=0)] | None = None
    #: maxwell: draw at temperature_K; keep: from the previous stage; default maxwell for the first
    #: dynamical stage when temperature_K is given, else keep
    initial_velocities: Literal["maxwell", "keep"] | None = None
    #: write the heat current J to heat_flux.csv every this many steps (Green-Kubo); null: off
    heat_flux_interval_steps: PositiveInt | None = None

    @model_validator(mode="after")
    def _maxwell_needs_temperature(self) -> NVEStage:
        if self.initial_velocities == "maxwell" and self.temperature_K is None:
            raise ValueError("initial_velocities: maxwell needs temperature_K")
        return self


Stage = Annotated[Union[MinimizeStage, NVTStage, NPTStage, NVEStage], Field(discriminator="type")]
STAGE_TYPES: dict[str, type[_Frozen]] = {
    "minimize": MinimizeStage, "nvt": NVTStage, "npt": NPTStage, "nve": NVEStage,
}


class Protocol(_Frozen):
    """A protocol file: what to simulate (structure, model), how (platform settings) and the stages, run in order."""

    #: the starting structure
    structure: StructureSpec
    #: the potential
    model: ModelSpec
    #: OpenMM platform
    platform: Literal["Reference", "CPU", "CUDA", "OpenCL"] = "CPU"
    #: OpenMM precision on platforms that have one (CUDA, OpenCL); ignored on Reference and CPU
    precision: Literal["single", "mixed", "double"] = "double"
    #: precision the model evaluates in
    dtype: Literal["float32", "float64"] = "float64"
    #: auto: the fastest backend that works for the model and platform (see sus2md.engine.force)
    backend: Literal["auto", "torch", "python", "compiled"] = "auto"
    #: threads for torch and OpenMM's CPU platform; null: the cores this process may use
    threads: PositiveInt | None = None
    #: capture the model in a CUDA graph (backend torch on the CUDA platform only)
    cuda_graphs: Bool = False
    #: random seed of initial velocities, thermostat noise and barostat moves
    seed: Annotated[Int, Field(ge=0)] = 0
    #: remove the centre-of-mass motion every step (OpenMM CMMotionRemover)
    remove_com_motion: Bool = True
    #: output files
    output: OutputSpec = OutputSpec()
    #: replicas that differ in one value (``--replica K``); null: one run
    sweep: Sweep | None = None
    #: extrapolation grade during dynamics; null: off
    extrapolation: ExtrapolationSpec | None = None
    #: the stages, run in order on the same system (at least one)
    stages: Annotated[list[Stage], Field(min_length=1)]

    @model_validator(mode="after")
    def _stages_consistent(self) -> Protocol:
        names = [s.name for s in self.stages if s.name is not None]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"stages: stage names must be unique, {dupes[0]!r} repeats")
        if self.sweep is not None and self.sweep.parameter != "seed":
            p = self.sweep.parameter
            if not any(getattr(s, p, None) is not None for s in self.stages):
                raise ValueError(f"sweep.parameter: no stage sets {p}, so the sweep would change nothing")
        return self

    @property
    def n_replicas(self) -> int:
        return 1 if self.sweep is None else len(self.sweep.values)

    @property
    def dynamical_stages(self) -> list[NVTStage | NPTStage | NVEStage]:
        return [s for s in self.stages if not isinstance(s, MinimizeStage)]

    def resolved_dict(self) -> dict[str, Any]:
        """Plain-data form with every default filled; ``validate_protocol`` accepts it unchanged."""
        data = self.model_dump(mode="json")
        data["stages"] = [{"type": s.pop("type"), **s} for s in data["stages"]]
        return data

    def for_replica(self, k: int) -> Protocol:
        """The protocol of replica ``k``: the sweep value applied, no sweep left."""
        if not 0 <= k < self.n_replicas:
            raise ConfigError(f"replica {k} out of range: the sweep has {self.n_replicas} value(s)")
        data = self.resolved_dict()
        data["sweep"] = None
        if self.sweep is not None:
            p, v = self.sweep.parameter, self.sweep.values[k]
            if p == "seed":
                data["seed"] = int(v)
            for stage in data["stages"]:
                if stage.get(p) is not None:
                    stage[p] = v
        return validate_protocol(data, source=f"replica {k}")


def _resolve(p: Protocol, base_dir: Path | None) -> Protocol:
    stages = []
    first_dynamical = True
    for i, s in enumerate(p.stages):
        update: dict[str, Any] = {"name": s.name or f"stage{i}_{s.type}"}
        if isinstance(s, _Dynamics):
            if s.duration_ps is not None:
                update["steps"] = int(round(s.duration_ps * 1000.0 / s.timestep_fs))
                update["duration_ps"] = None
            if isinstance(s, NVTStage):
                key = "friction_per_ps" if s.thermostat == "langevin" else "collision_frequency_per_ps"
                update[key] = getattr(s, key) or 1.0
            if s.initial_velocities is None:  # type: ignore[union-attr]
                can_draw = getattr(s, "temperature_K", None) is not None or isinstance(s, NVTStage)
                update["initial_velocities"] = "maxwell" if first_dynamical and can_draw else "keep"
            first_dynamical = False
        stages.append(s.model_copy(update=update))
    update = {"stages": stages}
    if base_dir is not None:
        update["structure"] = p.structure.model_copy(update={"path": _absolute(p.structure.path, base_dir)})
        update["model"] = p.model.model_copy(update={"path": _absolute(p.model.path, base_dir)})
        ex = p.extrapolation
        if ex is not None:
            key = "active_set" if ex.active_set is not None else "training_data"
            update["extrapolation"] = ex.model_copy(update={key: _absolute(getattr(ex, key), base_dir)})
    return p.model_copy(update=update)


def _absolute(path: str, base_dir: Path) -> str:
    return str((base_dir / Path(path).expanduser()).resolve())


def validate_protocol(data: Any, source: str = "<protocol>", base_dir: str | Path | None = None) -> Protocol:
    """Validate plain data (e.g. parsed YAML) into a resolved :class:`Protocol`.

    ``source`` prefixes error messages; ``base_dir``, when given, anchors relative paths.
    Raises :class:`ConfigError` with one line naming the YAML path of the first problem.
    """
    if not isinstance(data, dict):
        got = "an empty document" if data is None else type(data).__name__
        raise ConfigError(f"{source}: expected a mapping with structure, model and stages, got {got}")
    try:
        protocol = Protocol.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
        raise ConfigError(f"{source}: {_error_line(errors[0])}{more}") from None
    return _resolve(protocol, Path(base_dir) if base_dir is not None else None)


def load_protocol(path: str | Path) -> Protocol:
    """Read, validate and resolve a protocol YAML file (relative paths anchored at its directory)."""
    path = Path(path)
    return validate_protocol(_read_yaml(path), source=str(path), base_dir=path.parent)


# --- YAML reading and error messages ------------------------------------------------------------

class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects repeated keys (PyYAML silently keeps the last one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key) if isinstance(key, str) else None
        return super().construct_mapping(node, deep)


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: protocol file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the protocol file ({exc.strerror})") from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        raise ConfigError(f"{where}: YAML syntax error: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: YAML syntax error: {exc}") from None


_SECTIONS: dict[str, type[BaseModel]] = {
    "structure": StructureSpec, "model": ModelSpec, "output": OutputSpec, "sweep": Sweep,
    "extrapolation": ExtrapolationSpec,
}
_KINDS = {"int_type": "an integer", "float_type": "a number", "bool_type": "true or false",
          "string_type": "a string", "list_type": "a list", "tuple_type": "a list",
          "model_type": "a mapping", "model_attributes_type": "a mapping", "dict_type": "a mapping"}


def _yaml_path(loc: tuple) -> str:
    """('stages', 2, 'npt', 'pressure_bar') -> 'stages[2].pressure_bar' (drops the union tag)."""
    out = ""
    for i, item in enumerate(loc):
        if isinstance(item, int):
            out += f"[{item}]"
        elif not (i == 2 and loc[0] == "stages" and item in STAGE_TYPES):
            out += f".{item}" if out else str(item)
    return out


def _fields_at(loc: tuple) -> list[str]:
    """Field names of the schema model that owns the last key of ``loc``."""
    if len(loc) == 1:
        return list(Protocol.model_fields)
    if loc[0] == "stages" and len(loc) == 4 and loc[2] in STAGE_TYPES:
        return list(STAGE_TYPES[loc[2]].model_fields)
    cls = _SECTIONS.get(str(loc[0]))
    return list(cls.model_fields) if cls is not None and len(loc) == 2 else []


def _did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def _error_line(err: dict) -> str:
    loc, kind, ctx, got = tuple(err["loc"]), err["type"], err.get("ctx", {}), err.get("input")
    path = _yaml_path(loc)
    if kind == "extra_forbidden":
        msg = "unknown key" + _did_you_mean(str(loc[-1]), _fields_at(loc))
    elif kind in ("union_tag_invalid", "union_tag_not_found"):
        tags, path = list(STAGE_TYPES), f"{path}.type"
        if kind == "union_tag_invalid":
            msg = f"unknown stage type {_show(ctx.get('tag'))}{_did_you_mean(str(ctx.get('tag')), tags)}; "
        else:
            msg = "missing; "
        msg += f"expected one of {', '.join(tags)}"
    elif kind == "literal_error":
        options = re.findall(r"'([^']*)'", ctx.get("expected", ""))
        msg = f"must be one of {', '.join(options)}; got {_show(got)}"
        msg += _did_you_mean(str(got), options)
    elif kind == "missing":
        msg = "required key is missing"
    elif kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        op = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}
        msg = f"must be {op[kind]} {next(iter(ctx.values())):g}, got {_show(got)}"
    elif kind in ("too_short", "too_long"):
        word = "at least" if kind == "too_short" else "at most"
        n = ctx.get("min_length", ctx.get("max_length"))
        msg = f"must have {word} {n} item(s), got {ctx.get('actual_length')}"
    elif kind in _KINDS:
        msg = f"must be {_KINDS[kind]}, got {_show(got)}"
    else:
        msg = str(err["msg"]).removeprefix("Value error, ")
        head = re.match(r"^([\w.\[\]]+): ", msg)
        if head:  # a model validator naming a field below its own location
            sub = head.group(1)
            path = f"{path}{sub}" if sub.startswith("[") else (f"{path}.{sub}" if path else sub)
            msg = msg[head.end():]
    return f"{path}: {msg}" if path else msg
