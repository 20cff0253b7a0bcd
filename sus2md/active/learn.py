"""``sus2md learn``: grow a training set from a few structures by MD exploration, extrapolation
grades and MaxVol selection, with any ASE calculator (or someone outside) as the labeller.

Iteration K (K = 0, 1, ...) in the run directory DIR:

1. **train**: fit the model to every label so far (``sus2md train`` with the config's recipe;
   K > 0 starts from iteration K-1's model) into ``iter_K/model.mtp``, copied to ``DIR/model.mtp``;
   score it on the test set when one is given.  Iteration 0 first labels the initial structures.
2. **explore**: build the active set of the model on its training data (``iter_K/active_set.npz``)
   and run the exploration MD (``sus2md run`` protocols with an ``extrapolation`` section) for
   every temperature (and pressure) x replica, in parallel processes when asked; snapshots graded
   above ``grade.select_gamma`` are dumped, a run stops above ``grade.break_gamma``.  A structure
   with vacuum (a gap wider than the cutoff along a cell axis: a slab) runs NVT even at a pressure.
3. **select**: pool the dumped snapshots and choose up to ``selected_per_iteration`` by MaxVol
   against the current active set (:func:`sus2md.active.grade.select_configurations`).  None left
   above the threshold: the round found nothing new, and the loop has **converged**.
4. **label**: label the selection; each label is its own file under ``DIR/labels/`` (written to a
   temporary name and renamed), so an interrupted or killed loop keeps every label it made and,
   on ``--resume``, labels nothing twice.  A failed label is reported in ``iter_K/failed.json``
   and skipped.  External labelling writes ``iter_K/to_label.extxyz`` (and ``.cfg``) and stops
   (exit status 3); ``--resume`` reads ``iter_K/labelled.extxyz``.  The initial structures are
   labelled the same way in ``DIR/initial/``.

``DIR/train.extxyz`` holds every label (ASE's usual fields; ``info['learn_iteration']`` is the
iteration that added it, ``info['label_id']`` its file), ``DIR/log.csv`` one row per iteration
(labels, max grade per condition, errors), ``DIR/learning.png`` a plot of them, and
``DIR/state.json`` the phase reached, which is what ``--resume`` continues from.  The loop stops
when a round converged, or at ``stopping.max_iterations`` / ``stopping.max_labels``.
"""
from __future__ import annotations

import csv
import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import yaml

from sus2md.active.config import LearnConfig
from sus2md.active.labeller import LabelFailure, make_labeller
from sus2md.errors import ConfigError, SimulationError, Sus2mdError, UsageError

__all__ = ["learn", "LearnResult", "LabellingPending"]

log = logging.getLogger(__name__)

PHASES = ("train", "explore", "select", "label")
LOG_COLUMNS = ("iteration", "labels", "new_labels", "failed_labels", "candidates", "selected", "max_gamma",
               "train_E_rmse", "train_F_rmse", "val_E_rmse", "val_F_rmse", "test_E_rmse", "test_F_rmse",
               "wall_s", "converged")


class LabellingPending(Sus2mdError):
    """External labelling: the configurations to label are written; resume when they are labelled."""

    exit_code = 3


@dataclass
class LearnResult:
    """How the loop ended: ``status`` converged, max_iterations, max_labels."""

    out_dir: Path
    status: str
    iterations: int
    labels: int
    wall_s: float


# --- small file helpers --------------------------------------------------------------------------

def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _write_frames(path: Path, frames: Sequence[Any]) -> None:
    """extxyz (or .cfg by suffix) of ``frames``, written to a temporary name and renamed."""
    import ase.io

    tmp = path.with_name(path.name + ".tmp" + path.suffix)
    if path.suffix == ".cfg":
        from sus2md.io.cfg import write_cfg

        write_cfg(tmp, list(frames))
    else:
        ase.io.write(tmp, list(frames), format="extxyz")
    os.replace(tmp, path)


def _read_frames(path: Path) -> list[Any]:
    import ase.io

    return list(ase.io.read(path, ":")) if path.is_file() and path.stat().st_size else []


class _State:
    """``DIR/state.json``: the iteration and phase reached, and the log rows so far."""

    def __init__(self, path: Path):
        self.path = path
        self.data = json.loads(path.read_text()) if path.exists() else {"iteration": 0, "phase": "label_initial",
                                                                         "rows": [], "wall_s": 0.0}

    def set(self, **kw: Any) -> None:
        self.data.update(kw)
        _atomic_text(self.path, json.dumps(self.data, indent=1, default=float) + "\n")


# --- the loop ------------------------------------------------------------------------------------

def learn(cfg: LearnConfig, out_dir: str | Path, *, resume: bool = False,
          echo: Callable[[str], None] | None = None) -> LearnResult:
    """Run the active-learning loop of ``cfg`` into ``out_dir`` (module docstring).

    Raises:
        UsageError: ``out_dir`` holds a run and ``resume`` is False, or a resume with another config.
        LabellingPending: external labelling is due (exit status 3).
        ConfigError: an unusable labeller, structure or model.
    """
    say = echo or (lambda s: log.info(s))
    out = Path(out_dir).resolve()
    resolved = yaml.safe_dump(json.loads(cfg.model_dump_json()), sort_keys=False)
    _prepare(out, resolved, resume)
    state = _State(out / "state.json")
    if state.data["phase"] == "done":
        say(f"{out}: the learning run is already done ({state.data.get('status')})")
        return LearnResult(out, state.data.get("status", "done"), state.data["iteration"] + 1,
                           len(_label_files(out)), 0.0)
    labeller = make_labeller(cfg.labeller)
    species = _species(cfg)
    t0, before = time.perf_counter(), float(state.data["wall_s"])
    wall = lambda: round(before + time.perf_counter() - t0, 1)
    if state.data["phase"] == "label_initial":
        initial = _initial_structures(cfg, species)
        _label(out, out / "initial", initial, labeller, iteration=0, species=species, say=say)
        state.set(phase="train", wall_s=wall())
    while True:
        k = state.data["iteration"]
        it = out / f"iter_{k:03d}"
        it.mkdir(exist_ok=True)
        if state.data["phase"] == "train":
            row = _train(cfg, out, it, k, species, say)
            state.set(phase="explore", row=row, wall_s=wall())
            if row["labels"] >= cfg.stopping.max_labels:
                return _finish(out, state, row, "max_labels", wall(), say)
            if k + 1 >= cfg.stopping.max_iterations:
                return _finish(out, state, row, "max_iterations", wall(), say)
        if state.data["phase"] == "explore":
            gammas = _explore(cfg, out, it, k, species, say)
            state.set(phase="select", row={**state.data["row"], "max_gamma": gammas}, wall_s=wall())
        if state.data["phase"] == "select":
            n_cand, selected = _select(cfg, out, it, species, say)
            row = {**state.data["row"], "candidates": n_cand, "selected": len(selected)}
            if not selected:
                return _finish(out, state, {**row, "converged": True}, "converged", wall(), say)
            state.set(phase="label", row=row, wall_s=wall())
        if state.data["phase"] == "label":
            row = state.data["row"]
            room = max(cfg.stopping.max_labels - row["labels"], 0)
            failed = _label(out, it, _read_frames(it / "selected.extxyz")[:room], labeller, iteration=k + 1,
                            species=species, say=say)
            row = {**row, "failed_labels": failed, "new_labels": len(_label_files(out)) - row["labels"],
                   "converged": False}
            _log_row(out, state, row, wall())
            state.set(iteration=k + 1, phase="train", row=None, wall_s=wall())


def _prepare(out: Path, resolved: str, resume: bool) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "labels").mkdir(exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot write to the output directory {out}: {exc.strerror or exc}") from None
    stored = out / "config.yaml"
    if stored.exists():
        if not resume:
            done = json.loads((out / "state.json").read_text()).get("phase") == "done" if (out / "state.json").exists() else False
            what = "a finished learning run" if done else "an unfinished learning run"
            raise UsageError(f"{out} already holds {what}; pass --resume to continue it or choose another --out")
        if yaml.safe_load(stored.read_text()) != yaml.safe_load(resolved):
            raise UsageError(f"cannot resume: the config differs from {stored}; resume with the same config or "
                             "start a new run with --out")
    else:
        _atomic_text(stored, resolved)


def _species(cfg: LearnConfig) -> list[str]:
    if cfg.model.species:
        return list(cfg.model.species)
    from sus2md.io.mtp import read_mtp

    names = read_mtp(cfg.model.init_from).species_names
    if not names:
        raise ConfigError(f"model.species: {cfg.model.init_from} names no elements; list them in type order")
    return list(names)


def _initial_structures(cfg: LearnConfig, species: list[str]) -> list[Any]:
    """Every frame of the initial structure files, checked against the model's species."""
    import ase.io

    from sus2md.io.data import species_index
    from sus2md.io.structures import validate_structure

    frames = []
    for path in cfg.structures:
        try:
            found = list(ase.io.read(path, ":"))
        except Exception as exc:  # noqa: BLE001 - ASE raises many types for unreadable files
            raise ConfigError(f"structures: cannot read {path}: {type(exc).__name__}: {exc}") from None
        for k, a in enumerate(found):
            name = f"{Path(path).name} frame {k}"
            validate_structure(a, source=name)
            species_index(a, species, source=name)
            a.calc = None
            a.info = {key: v for key, v in a.info.items() if isinstance(v, (str, int, float, bool))}
            a.info.setdefault("config_type", Path(path).stem)
            a.info["source"] = name
            frames.append(a)
    if not frames:
        raise ConfigError("structures: the files hold no configurations")
    return frames


def _label_files(out: Path) -> list[Path]:
    return sorted((out / "labels").glob("L*.extxyz"))


def _label(out: Path, it: Path, frames: Sequence[Any], labeller: Any, *, iteration: int, species: list[str],
           say: Callable[[str], None]) -> int:
    """Label ``frames`` into ``DIR/labels`` (skipping those labelled or failed before); returns
    the number of failures.  External labelling: write the request, read the answer on resume."""
    it.mkdir(parents=True, exist_ok=True)
    ids = [f"L{iteration:03d}_{j:04d}" for j in range(len(frames))]
    failed_path = it / "failed.json"
    failed = json.loads(failed_path.read_text()) if failed_path.exists() else {}
    todo = [(i, a) for i, a in zip(ids, frames) if not (out / "labels" / f"{i}.extxyz").exists() and i not in failed]
    if labeller is None and todo:
        todo = _external_labels(it, todo, species)
    for n, (label_id, atoms) in enumerate(todo):
        result = labeller.label(atoms) if labeller is not None else atoms
        if isinstance(result, LabelFailure):
            failed[label_id] = result.reason
            _atomic_text(failed_path, json.dumps(failed, indent=1) + "\n")
            log.warning("label %s (%s) failed and is skipped: %s", label_id, atoms.info.get("source", ""), result.reason)
            continue
        result.info.update({"learn_iteration": iteration, "label_id": label_id})
        for key in ("max_gamma", "step"):
            result.info.pop(key, None)
        _write_frames(out / "labels" / f"{label_id}.extxyz", [result])
        if (n + 1) % 25 == 0:
            say(f"labelled {n + 1} / {len(todo)}")
    _rebuild_training_set(out)
    say(f"iteration {iteration}: {len(todo) - len([i for i, _ in todo if i in failed])} labelled, "
        f"{len(failed)} failed; {len(_label_files(out))} labels in all")
    return len(failed)


def _external_labels(it: Path, todo: list[tuple[str, Any]], species: list[str]) -> list[tuple[str, Any]]:
    """External labelling: the answer file, or a request and :class:`LabellingPending`."""
    answer = it / "labelled.extxyz"
    if answer.is_file():
        labelled = {a.info.get("label_id"): a for a in _read_frames(answer)}
        missing = [i for i, _ in todo if i not in labelled]
        if missing:
            raise UsageError(f"{answer}: no labelled configuration with label_id {missing[0]} ({len(missing)} "
                             f"missing); label every configuration of {it / 'to_label.extxyz'} and keep its label_id")
        out = []
        for i, _ in todo:
            a = labelled[i]
            if a.calc is None or "energy" not in a.calc.results or "forces" not in a.calc.results:
                raise UsageError(f"{answer}: label_id {i} has no energy and forces; store them as ASE results")
            out.append((i, a))
        return out
    from sus2md.io.data import species_index

    request = []
    for i, a in todo:
        b = a.copy()
        b.info["label_id"] = i
        b.arrays.pop("mtp_type", None)
        request.append(b)
    _write_frames(it / "to_label.extxyz", request)
    typed = []
    for b in request:  # the .cfg names types, not elements: the model's type order
        c = b.copy()
        c.arrays["mtp_type"] = species_index(c, species)
        typed.append(c)
    _write_frames(it / "to_label.cfg", typed)
    raise LabellingPending(f"{len(request)} configurations to label in {it / 'to_label.extxyz'} (also .cfg); "
                           f"write them with energy, forces and stress as {answer}, keeping info label_id, then run "
                           "sus2md learn again with --resume")


def _rebuild_training_set(out: Path) -> None:
    frames = [a for p in _label_files(out) for a in _read_frames(p)]
    _write_frames(out / "train.extxyz", frames)


def _train(cfg: LearnConfig, out: Path, it: Path, k: int, species: list[str], say: Callable[[str], None]) -> dict:
    """Fit the model to every label (iteration K > 0 starts from iteration K-1's model)."""
    from sus2md.train.config import config_from_dict
    from sus2md.train.workflow import train_model

    model = json.loads(cfg.model.model_dump_json(exclude_none=True))
    if k > 0:
        model = {"init_from": str(out / f"iter_{k - 1:03d}" / "model.mtp"), "species": species,
                 "dtype": cfg.model.dtype, "freeze_scaling": cfg.model.freeze_scaling}
    t = cfg.training
    data = {"train": str(out / "train.extxyz"), "validation_fraction": t.validation_fraction,
            "batch_atoms": t.batch_atoms, "seed": cfg.seed}
    if cfg.test:
        data["test"] = cfg.test
    tc = config_from_dict({"model": model, "data": data, "loss": t.loss.model_dump(), "optimizer": t.optimizer.model_dump(),
                           "early_stopping": t.early_stopping.model_dump(),
                           "output": {"model": str(it / "model.mtp"), "progress": False}, "threads": cfg.threads},
                          source="training")
    n = len(_label_files(out))
    say(f"iteration {k}: training on {n} labels" + (f" from iteration {k - 1}'s model" if k else ""))
    t0 = time.perf_counter()
    result = train_model(tc, echo=say)
    shutil.copyfile(it / "model.mtp", out / "model.mtp.tmp")
    os.replace(out / "model.mtp.tmp", out / "model.mtp")
    m = result.metrics
    pick = lambda split, key: m.get(split, {}).get("all", {}).get(key)
    row = {"iteration": k, "labels": n, "train_E_rmse": pick("train", "E_rmse"), "train_F_rmse": pick("train", "F_rmse"),
           "val_E_rmse": pick("validation", "E_rmse"), "val_F_rmse": pick("validation", "F_rmse"),
           "test_E_rmse": pick("test", "E_rmse"), "test_F_rmse": pick("test", "F_rmse"),
           "train_s": round(time.perf_counter() - t0, 1)}
    if "test" in m:
        _atomic_text(it / "test_metrics.json", json.dumps(m["test"], indent=1, default=float) + "\n")
    say(f"iteration {k}: trained in {row['train_s']} s; " + ", ".join(
        f"{s} {row[f'{s}_E_rmse']:.3g} meV/atom {row[f'{s}_F_rmse']:.3g} meV/Å"
        for s in ("train", "val", "test") if row.get(f"{s}_E_rmse") is not None and row.get(f"{s}_F_rmse") is not None))
    return row


# --- exploration and selection -------------------------------------------------------------------

def _has_vacuum(atoms: Any, cutoff: float) -> bool:
    """A gap wider than ``cutoff`` along some cell axis (a slab or a cluster in a box)."""
    if len(atoms) == 0:
        return False
    frac = atoms.get_scaled_positions(wrap=True)
    lengths = atoms.cell.lengths()
    for ax in range(3):
        s = np.sort(frac[:, ax])
        gaps = np.diff(np.concatenate([s, [s[0] + 1.0]]))
        if gaps.max() * lengths[ax] > cutoff:
            return True
    return False


def _conditions(cfg: LearnConfig) -> list[tuple[float, float | None]]:
    ex = cfg.exploration
    return [(t, p) for t in ex.temperatures_K for p in (ex.pressures_bar or [None])]


def _explore(cfg: LearnConfig, out: Path, it: Path, k: int, species: list[str], say: Callable[[str], None]) -> dict:
    """Run the exploration MD of iteration ``k``; returns the max grade per condition."""
    from sus2md.active.grade import ActiveSet
    from sus2md.io.data import load_frames
    from sus2md.model import load_model

    model = load_model(it / "model.mtp", species=species)
    aset_path = it / "active_set.npz"
    if not aset_path.exists():
        ActiveSet.from_frames(model, load_frames(out / "train.extxyz", species=species)).save(aset_path)
    starts = _initial_structures(cfg, species)
    ex = cfg.exploration
    jobs = []
    for c, (temp, pres) in enumerate(_conditions(cfg)):
        for r in range(ex.replicas):
            n = (k * ex.replicas + r + c) % len(starts)
            name = f"T{temp:g}" + ("" if pres is None else f"_P{pres:g}") + f"_r{r}"
            jobs.append((name, _explore_protocol(cfg, it, name, starts[n], temp, pres, model.cutoff, species,
                                                 seed=cfg.seed * 1000 + k * 100 + len(jobs))))
    say(f"iteration {k}: exploring {len(jobs)} runs ({len(_conditions(cfg))} conditions x {ex.replicas} replicas)")
    if ex.processes > 1:
        from concurrent.futures import ProcessPoolExecutor
        from multiprocessing import get_context

        with ProcessPoolExecutor(max_workers=ex.processes, mp_context=get_context("spawn")) as pool:
            results = list(pool.map(_explore_one, [p for _, p in jobs], [it / "explore" / n for n, _ in jobs]))
    else:
        results = [_explore_one(p, it / "explore" / n) for n, p in jobs]
    gammas: dict[str, float] = {}
    for (name, _), res in zip(jobs, results):
        cond = name.rsplit("_r", 1)[0]
        gammas[cond] = max(gammas.get(cond, 0.0), res["max_gamma"] or 0.0)
        if res["status"] not in ("completed", "nothing to do"):
            say(f"  {name}: {res['status']}")
    return gammas


def _atomic_volume(symbol: str) -> float:
    """Volume per atom (Å^3) of an element's reference crystal (ASE ``reference_states``); a
    sphere of its covalent radius times the fcc packing where ASE has no lattice for it."""
    from ase.data import atomic_numbers, covalent_radii, reference_states

    z = atomic_numbers[symbol]
    ref = reference_states[z] or {}
    a = ref.get("a")
    per_cell = {"fcc": 4, "bcc": 2, "sc": 1, "diamond": 8}
    if a and ref.get("symmetry") in per_cell:
        return a ** 3 / per_cell[ref["symmetry"]]
    if a and ref.get("symmetry") == "hcp":
        return a * a * a * ref.get("c/a", 1.633) * math.sqrt(3) / 4
    return 4 / 3 * math.pi * (1.1 * covalent_radii[z]) ** 3 / 0.74


def random_composition(atoms: Any, species: Sequence[str], rng: np.random.Generator) -> Any:
    """``atoms`` re-decorated: k of ``species`` (k uniform in 1..len(species)), every atom's species
    drawn uniformly from them, and the cell (atoms with it) scaled so that the volume per atom
    changes as the mean reference atomic volume does (Vegard's law)."""
    a = atoms.copy()
    old = float(np.mean([_atomic_volume(s) for s in a.get_chemical_symbols()]))
    chosen = rng.choice(list(species), int(rng.integers(1, len(species) + 1)), replace=False)
    a.set_chemical_symbols(list(rng.choice(chosen, len(a))))
    new = float(np.mean([_atomic_volume(s) for s in a.get_chemical_symbols()]))
    a.set_cell(a.cell * (new / old) ** (1 / 3), scale_atoms=True)
    return a


def _explore_protocol(cfg: LearnConfig, it: Path, name: str, atoms: Any, temp: float, pres: float | None,
                      cutoff: float, species: list[str], seed: int) -> Path:
    ex, g = cfg.exploration, cfg.grade
    a = random_composition(atoms, species, np.random.default_rng(seed)) if ex.random_composition else atoms.copy()
    if ex.supercell_min_atoms and a.pbc.all():
        while len(a) < ex.supercell_min_atoms:
            lengths = a.cell.lengths()
            rep = [1, 1, 1]
            rep[int(np.argmin(lengths))] = 2
            a = a.repeat(rep)
    d = it / "explore"
    d.mkdir(parents=True, exist_ok=True)
    structure = d / f"{name}.extxyz"
    if not structure.exists():
        _write_frames(structure, [a])
    stage: dict[str, Any] = {"type": "nvt", "name": "explore", "steps": ex.steps, "timestep_fs": ex.timestep_fs,
                             "temperature_K": temp, "report_interval_steps": ex.grade_interval_steps,
                             "trajectory_interval_steps": ex.steps}
    if pres is not None and a.pbc.all() and not _has_vacuum(a, cutoff):
        stage.update(type="npt", pressure_bar=pres, barostat=ex.barostat)
    proto = {"structure": {"path": str(structure)}, "model": {"path": str(it / "model.mtp"), "species": species},
             "dtype": ex.dtype, "seed": seed, "threads": 1 if ex.processes > 1 else cfg.threads,
             "extrapolation": {"active_set": str(it / "active_set.npz"), "interval_steps": ex.grade_interval_steps,
                               "warn_gamma": g.select_gamma, "break_gamma": g.break_gamma},
             "stages": [stage]}
    if not a.pbc.any():
        proto["remove_com_motion"] = True
    path = d / f"{name}.yaml"
    if not path.exists():
        _atomic_text(path, yaml.safe_dump(proto, sort_keys=False))
    return path


def _explore_one(protocol_path: Path, run_dir: Path) -> dict:
    """One exploration run (resumed where an earlier attempt stopped); its max grade and status."""
    from sus2md.engine.run import run_protocol
    from sus2md.protocol import load_protocol

    logging.getLogger("sus2md.active.grade").setLevel(logging.ERROR)  # dumps are counted, not logged one by one
    proto = load_protocol(protocol_path)
    resume = (run_dir / "protocol.yaml").exists()
    try:
        res = run_protocol(proto, run_dir, resume=resume, progress=False)
        status = res.status
    except SimulationError as exc:
        status = f"stopped: {exc}"
    prov_path = run_dir / "provenance.json"
    prov = json.loads(prov_path.read_text()) if prov_path.exists() else {}
    return {"status": status, "max_gamma": (prov.get("extrapolation") or {}).get("max_gamma")}


def _select(cfg: LearnConfig, out: Path, it: Path, species: list[str], say: Callable[[str], None]) -> tuple[int, list]:
    """Pool the dumped snapshots and select by MaxVol; writes ``iter_K/selected.extxyz``."""
    from sus2md.active.grade import ActiveSet, select_configurations
    from sus2md.io.data import load_frames
    from sus2md.model import load_model

    sel_path = it / "selected.extxyz"
    cands = []
    for dump in sorted((it / "explore").glob("*/extrapolative.cfg")):
        for a in load_frames(dump, species=species):
            a.info["source"] = f"{dump.parent.name} step {a.info.get('step')}"
            a.info.setdefault("config_type", "learned")
            cands.append(a)
    if sel_path.exists():
        return len(cands), _read_frames(sel_path)
    chosen: list[int] = []
    if cands:
        model = load_model(it / "model.mtp", species=species)
        aset = ActiveSet.load(it / "active_set.npz", model)
        chosen = select_configurations(model, [], cands, threshold=cfg.grade.select_gamma,
                                       max_new=cfg.selected_per_iteration, active_set=aset)
    selected = []
    for j in chosen:
        a = cands[j]
        del a.arrays["mtp_type"]
        selected.append(a)
    _write_frames(sel_path, selected)
    say(f"  {len(cands)} candidate snapshots, {len(selected)} selected")
    return len(cands), selected


# --- log and end ---------------------------------------------------------------------------------

def _log_row(out: Path, state: _State, row: dict, wall_s: float) -> None:
    rows = [r for r in state.data["rows"] if r["iteration"] != row["iteration"]] + [{**row, "wall_s": wall_s}]
    state.set(rows=rows)
    with open(out / "log.csv.tmp", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(LOG_COLUMNS)
        for r in rows:
            w.writerow(["" if r.get(c) is None else (json.dumps(r[c]) if isinstance(r.get(c), dict) else r[c])
                        for c in LOG_COLUMNS])
    os.replace(out / "log.csv.tmp", out / "log.csv")
    _plot(out, rows)


def _plot(out: Path, rows: list[dict]) -> None:
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.5))
    its = [r["iteration"] for r in rows]
    a1.plot(its, [r["labels"] for r in rows], "o-", label="labels")
    a1.set_xlabel("iteration")
    a1.set_ylabel("labelled configurations")
    g = [max((r.get("max_gamma") or {}).values(), default=np.nan) for r in rows]
    a1b = a1.twinx()
    a1b.semilogy(its, g, "s--", color="C3", label="max grade")
    a1b.set_ylabel("max extrapolation grade")
    for split, style in (("train", "o-"), ("val", "s--"), ("test", "^:")):
        e = [r.get(f"{split}_F_rmse") for r in rows]
        if any(x is not None for x in e):
            a2.plot(its, [np.nan if x is None else x for x in e], style, label=f"{split} F RMSE")
    a2.set_xlabel("iteration")
    a2.set_ylabel("force RMSE (meV/Å)")
    a2.legend()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tight_layout's warnings about twin axes
        fig.tight_layout()
        fig.savefig(out / "learning.png", dpi=110)
    plt.close(fig)


def _finish(out: Path, state: _State, row: dict, status: str, wall_s: float, say: Callable[[str], None]) -> LearnResult:
    _log_row(out, state, {**row, "converged": row.get("converged", False)}, wall_s)
    state.set(phase="done", status=status, wall_s=wall_s)
    n = len(_label_files(out))
    say(f"done ({status}) after iteration {row['iteration']}: {n} labels, {wall_s:.0f} s; model in {out / 'model.mtp'}")
    return LearnResult(out, status, int(row["iteration"]) + 1, n, wall_s)
