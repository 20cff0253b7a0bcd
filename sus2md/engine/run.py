"""``run_protocol``: a staged MD protocol into a run directory, with resume and blow-up detection.

The stage loop itself (events, checkpoints, blow-up and grade checks, seeds) is
:class:`sus2md.engine.stages.StageRunner`.
"""
from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from sus2md.engine.events import load_eager_model
from sus2md.engine.outputs import atomic_write, read_checkpoint
from sus2md.engine.stages import Grading, StageRunner
from sus2md.engine.state import HeatFluxFunction
from sus2md.engine.threads import apply_threads
from sus2md.errors import ConfigError, UsageError
from sus2md.protocol import NPTStage, Protocol, validate_protocol
from sus2md.signals import stop_on_signals

log = logging.getLogger(__name__)

__all__ = ["RunResult", "run_protocol", "default_run_dir", "select_replica", "effective_protocol"]


@dataclass
class RunResult:
    """What :func:`run_protocol` did: ``status`` is completed, interrupted or "nothing to do"."""

    run_dir: Path
    status: str
    global_step: int
    frames: int
    thermo_rows: int
    wall_time_s: float
    signal: int | None = None

    @property
    def exit_code(self) -> int:
        """0, or 128 + the signal number of an interrupted run (130 SIGINT, 143 SIGTERM)."""
        return 0 if self.signal is None else 128 + self.signal


def default_run_dir(protocol_path: str | Path, replica: int | None = None) -> Path:
    """``runs/<protocol stem>`` (+ ``_replica{K}``), relative to the working directory."""
    name = Path(protocol_path).stem + (f"_replica{replica}" if replica is not None else "")
    return Path("runs") / name


def select_replica(protocol: Protocol, replica: int | None) -> int | None:
    """``replica``, else ``$SLURM_ARRAY_TASK_ID`` for a protocol with a sweep, else None."""
    if replica is not None or protocol.sweep is None:
        return replica
    env = os.environ.get("SLURM_ARRAY_TASK_ID")
    if env is None or not env.strip():
        return None
    try:
        return int(env)
    except ValueError:
        raise UsageError(f"SLURM_ARRAY_TASK_ID={env!r} is not a replica number") from None


def effective_protocol(protocol: Protocol, *, replica: int | None = None, platform: str | None = None,
                       max_steps: int | None = None, threads: int | None = None) -> Protocol:
    """The protocol as run: replica values applied, platform and threads overridden, dynamical
    stages capped."""
    if protocol.sweep is not None and replica is None:
        raise UsageError(f"the protocol sweeps {protocol.sweep.parameter} over {protocol.n_replicas} values; "
                         "pick one with --replica K (or SLURM_ARRAY_TASK_ID)")
    p = protocol.for_replica(replica) if replica is not None else protocol
    data = p.resolved_dict()
    if platform is not None:
        data["platform"] = platform
    if threads is not None:
        if threads < 1:
            raise UsageError(f"--threads must be >= 1, got {threads}")
        data["threads"] = threads
    if max_steps is not None:
        if max_steps < 0:
            raise UsageError(f"--steps must be >= 0, got {max_steps}")
        for st in data["stages"]:
            if st["type"] != "minimize":
                st["steps"] = min(st["steps"], max_steps)
    return validate_protocol(data, source="protocol")


def run_protocol(protocol: Protocol, out_dir: str | Path, *, resume: bool = False, replica: int | None = None,
                 platform: str | None = None, max_steps: int | None = None, threads: int | None = None,
                 progress: bool = True, heat_flux: HeatFluxFunction | None = None,
                 command_line: list[str] | None = None) -> RunResult:
    """Run ``protocol`` into ``out_dir`` (see the run-directory contract in ``sus2md.analysis.rundir``).

    Args:
        protocol: a loaded protocol (:func:`sus2md.protocol.load_protocol`).
        out_dir: the run directory (created).
        resume: continue the run in ``out_dir`` from its last checkpoint.
        replica: run replica ``K`` of the protocol's sweep.
        platform: override the protocol's OpenMM platform.
        threads: override the protocol's ``threads`` (torch and OpenMM CPU threads); a resumed run
            may use a different count.
        max_steps: cap every dynamical stage at this many steps (smoke runs).
        progress: show a tqdm bar on stderr (only when stderr is a terminal).
        heat_flux: J(positions nm, velocities nm/ps, box nm) -> (3,) eV·Å/ps for NVE stages with
            ``heat_flux_interval_steps``; default: :func:`sus2md.engine.heatflux.heat_current_from_state`.
        command_line: recorded in provenance (default ``sys.argv``).

    Returns:
        A :class:`RunResult`; an interrupted run (SIGINT/SIGTERM) returns status ``interrupted``.

    Raises:
        ConfigError: an npt stage on a non-periodic structure, bad overrides.
        UsageError: unwritable or already used run directory, changed protocol on resume.
        SimulationError: a blow-up (the last good state is kept in ``checkpoint.chk``).
    """
    proto = effective_protocol(protocol, replica=replica, platform=platform, max_steps=max_steps, threads=threads)
    run_dir = Path(out_dir)
    # everything checkable is checked before the run directory is touched: bad input leaves no trace
    atoms = _read_structure(proto)
    threads = apply_threads(proto.threads)  # decided once: every stage runs with the same count
    module = _preflight(proto, atoms, threads)
    grading = _grading_setup(proto, atoms)
    mode, ck = _prepare_run_dir(run_dir, proto, resume)
    if mode == "done":
        book = json.loads((run_dir / "checkpoint.json").read_text())
        return RunResult(run_dir, "nothing to do", book["global_step"], book["frames"], book["thermo_rows"], 0.0)
    if mode == "fresh":
        _clear_outputs(run_dir)
        if proto.extrapolation is not None:
            (run_dir / proto.extrapolation.dump_cfg).unlink(missing_ok=True)
        atomic_write(run_dir / "protocol.yaml", yaml.safe_dump(_plain(proto.resolved_dict()), sort_keys=False).encode())
    runner = StageRunner(proto, run_dir, atoms, module=module, threads=threads, progress=progress, heat_flux=heat_flux, replica=replica,
                         max_steps=max_steps, command_line=command_line if command_line is not None else sys.argv,
                         grading=grading)
    with stop_on_signals(runner, lambda signum: log.warning("signal %d: stopping after the current report", signum)):
        status, wall = runner.run(ck)
    sig = runner.stop_signal if status == "interrupted" else None
    c = runner.counts
    return RunResult(run_dir, status, runner.global_step, c["frames"], c["thermo_rows"], wall, sig)


def _plain(data: Any) -> Any:
    """Tuples -> lists, recursively (what a YAML round trip gives)."""
    return json.loads(json.dumps(data))


def _read_structure(proto: Protocol) -> Any:
    from sus2md.io.structures import read_structure, validate_structure

    s = proto.structure
    if not Path(s.path).is_file():
        raise UsageError(f"structure.path: file not found: {s.path} (a relative path is relative to the protocol "
                         "file's directory)")
    atoms = read_structure(s.path, format=s.format, species=s.species)
    if list(s.supercell) != [1, 1, 1]:
        atoms = atoms.repeat(tuple(s.supercell))
    validate_structure(atoms, source=Path(s.path).name)
    for i, stage in enumerate(proto.stages):
        if isinstance(stage, NPTStage) and not atoms.pbc.all():
            raise ConfigError(f"stages[{i}] ({stage.name}): an npt stage needs a structure periodic in all three "
                              f"directions; {Path(s.path).name} has pbc={atoms.pbc.tolist()}")
    return atoms


def _preflight(proto: Protocol, atoms: Any, threads: int) -> Any:
    """Check the model against the structure's species and the platform (UsageError otherwise).

    Returns the scripted adapter with species bound for the torch/python backends (built once,
    shared by the stages), None for auto/compiled (their force is built from the model file).
    """
    from sus2md.engine.force import bound_adapter
    from sus2md.engine.integrators import make_platform
    from sus2md.errors import UnknownSpeciesError
    from sus2md.io.data import species_index

    m, path = proto.model, Path(proto.model.path)
    if not path.is_file():
        raise UsageError(f"model.path: model file not found: {path} (a relative path is relative to the protocol "
                         "file's directory)")
    try:
        if proto.backend in ("torch", "python"):
            model: Any = str(path)
            if path.suffix == ".pt":  # compiled: check its metadata (and that it is TorchScript at all) first
                from sus2md.export import load_compiled

                model = load_compiled(path)[0]
            module = bound_adapter(model, atoms, dtype=proto.dtype, species=m.species)
        else:
            module = None
            species_index(atoms, list(load_eager_model(proto).species_names), source="system")
            if proto.backend == "compiled" and path.suffix == ".pt":
                from sus2md.export.torchscript import eager_model_of_compiled

                eager_model_of_compiled(path)  # CompileError now for a file made before models were embedded
    except UnknownSpeciesError as exc:  # name the structure file and the model, not "system"
        what = str(exc).split(": ", 1)[-1].replace("the model's species", f"the species of {path.name}")
        raise UnknownSpeciesError(f"{Path(proto.structure.path).name}: {what}") from None
    except UsageError as exc:
        if "species" not in str(exc) or str(exc).startswith("model"):
            raise
        raise UsageError(f"model.species ({path.name}): {exc}") from None
    make_platform(proto.platform, proto.precision, threads, proto.cuda_graphs)
    _warn_below_min_dist(atoms, float(load_eager_model(proto).min_dist), Path(proto.structure.path).name, path.name)
    return module


def _warn_below_min_dist(atoms: Any, min_dist_A: float, structure: str, model: str) -> None:
    """A warning when atoms are closer than the model's ``min_dist`` (the inner edge of its radial
    basis): its energies there are an extrapolation, and minimization or MD may collapse."""
    from ase.neighborlist import neighbor_list

    if min_dist_A <= 0 or len(atoms) < 2:
        return
    i, j, d = neighbor_list("ijd", atoms, cutoff=min_dist_A)
    keep = i < j
    if not keep.any():
        return
    k = int(np.argmin(np.where(keep, d, np.inf)))
    sym = atoms.get_chemical_symbols()
    log.warning("%s: atoms %d (%s) and %d (%s) are %.3g Å apart, below %s's min_dist %.3g Å (%d pair(s) in all): "
                "the model is not trained there, so energies are an extrapolation and minimization or MD may "
                "collapse the structure; check the coordinates", structure, int(i[k]), sym[int(i[k])], int(j[k]),
                sym[int(j[k])], float(d[k]), model, min_dist_A, int(keep.sum()))


def _grading_setup(proto: Protocol, atoms: Any) -> Grading | None:
    """Load (or build) the active set of ``proto.extrapolation``; None when grading is off."""
    ex = proto.extrapolation
    if ex is None:
        return None
    from sus2md.active.grade import ActiveSet
    from sus2md.io.data import load_frames, species_index

    if Path(proto.model.path).suffix == ".pt":
        raise ConfigError(f"extrapolation: needs the model as an .mtp file (a compiled .pt has no grade basis); "
                          f"set model.path to the .mtp that {Path(proto.model.path).name} was compiled from")
    model = load_eager_model(proto)
    names = list(model.species_names)
    index = species_index(atoms, names, source=Path(proto.structure.path).name)
    source = ex.active_set if ex.active_set is not None else ex.training_data
    if not Path(source).is_file():
        key = "active_set" if ex.active_set is not None else "training_data"
        raise UsageError(f"extrapolation.{key}: file not found: {source}; build an active set with `sus2md grade "
                         "MODEL TRAIN DATA --active-set FILE.npz` or give the training data as extrapolation.training_data")
    if ex.active_set is not None:
        return Grading(model, index, ActiveSet.load(ex.active_set, model), None)
    frames = load_frames(ex.training_data, species=ex.species or names or None)
    if not frames:
        raise UsageError(f"extrapolation.training_data: {ex.training_data} holds no configurations")
    n_types = int(model.n_species)
    for k, a in enumerate(frames):
        bad = sorted({int(t) for t in a.arrays["mtp_type"] if not 0 <= int(t) < n_types})
        if bad:
            raise UsageError(f"extrapolation.training_data: {ex.training_data} configuration {k} has type(s) "
                             f"{bad}, the model has {n_types} species; give extrapolation.species in model order")
    return Grading(model, index, ActiveSet.from_frames(model, frames), ex.training_data)


def _prepare_run_dir(run_dir: Path, proto: Protocol, resume: bool) -> tuple[str, Any]:
    """("fresh" | "resume" | "done", checkpoint or None); refuses to overwrite a run."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".sus2md-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"cannot write to the output directory {run_dir}: {exc.strerror or exc}") from None
    if not (run_dir / "protocol.yaml").exists():
        return "fresh", None
    book_path = run_dir / "checkpoint.json"
    book = json.loads(book_path.read_text()) if book_path.exists() else {}
    if not resume:
        what = "a completed run" if book.get("completed") else "an unfinished run"
        hint = "--resume (nothing to do)" if book.get("completed") else "--resume to continue it"
        raise UsageError(f"{run_dir} already holds {what}; pass {hint} or choose another --out")
    _check_same_protocol(run_dir / "protocol.yaml", proto)
    if book.get("completed"):
        return "done", None
    ck = read_checkpoint(run_dir)
    if ck is None:
        log.warning("%s has no checkpoint yet: starting the run from the beginning", run_dir)
        return "fresh", None
    return "resume", ck


#: protocol keys that change speed, not results: a run may resume with other values
_RESUME_FREE_KEYS = ("threads",)


def _check_same_protocol(stored_path: Path, proto: Protocol) -> None:
    stored = yaml.safe_load(stored_path.read_text())
    now = _plain(proto.resolved_dict())
    for key in _RESUME_FREE_KEYS:
        stored.pop(key, None)
        now.pop(key, None)
    where = _first_difference(stored, now, "")
    if where is not None:
        raise UsageError(f"cannot resume: the protocol differs from {stored_path} at {where[0]} "
                         f"({where[1]!r} there, {where[2]!r} now); resume with the same protocol and "
                         "--platform/--steps/--replica, or start a new run with --out")


def _first_difference(a: Any, b: Any, path: str) -> tuple[str, Any, Any] | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in list(a) + [k for k in b if k not in a]:
            d = _first_difference(a.get(k), b.get(k), f"{path}.{k}" if path else str(k))
            if d:
                return d
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            d = _first_difference(x, y, f"{path}[{i}]")
            if d:
                return d
        return None
    return None if a == b else (path or "<root>", a, b)


_OUTPUTS = ("trajectory.dcd", "trajectory.xtc", "frames.csv", "thermo.csv", "heat_flux.csv", "checkpoint.chk",
            "checkpoint.json", "checkpoint.chk.tmp", "provenance.json", "final_state.xml", "topology.pdb",
            "active_set.npz")


def _clear_outputs(run_dir: Path) -> None:
    """Remove what an earlier, never-checkpointed attempt left (final.* included)."""
    for name in _OUTPUTS:
        (run_dir / name).unlink(missing_ok=True)
    for p in run_dir.glob("final.*"):
        p.unlink()
