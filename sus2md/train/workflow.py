"""``train_model(cfg)``: the whole of ``sus2md train`` as one library call.

Reads the data, builds or loads the model, runs the pre-training (seeded start, Rescale, random
sampling, TrainLinear) or resumes from the checkpoint, trains (:class:`~.trainer.Trainer`), and
on rank 0 writes the ``.mtp``, the checkpoint and the JSON/CSV log and computes the final
train/validation/test metrics (with a per-``config_type`` breakdown).
"""
from __future__ import annotations

import csv
import json
import logging
import time
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch

from sus2md.errors import ConfigError
from sus2md.io.data import labels
from sus2md.io.mtp import MTPFile, read_mtp, write_mtp
from sus2md.nn.potential import SUS2Potential
from sus2md.signals import stop_on_signals
from sus2md.train.config import TrainConfig
from sus2md.train.dataset import load_split, make_batches, shard
from sus2md.train.distributed import Context, setup, teardown
from sus2md.train.initialise import init_coefficients, random_sampling, rescale
from sus2md.train.loss import per_config_errors, summarize
from sus2md.train.trainer import Trainer

__all__ = ["TrainResult", "train_model", "build_mtp", "format_metrics"]

log = logging.getLogger(__name__)
DTYPES = {"float64": torch.float64, "float32": torch.float32}


@dataclass
class TrainResult:
    model: SUS2Potential
    metrics: dict  # {"train"|"validation"|"test": {"all": {...}, "<config_type>": {...}}}
    stop_reason: str
    steps: int
    wall_s: float
    n_params: int
    stop_signal: Optional[int] = None  # SIGINT / SIGTERM that stopped the run (stop_reason "interrupted")


def build_mtp(cfg: TrainConfig) -> tuple[MTPFile, list[str]]:
    """The starting model (seeded if untrained) and its element names."""
    spec = cfg.model
    if spec.init_from is not None:
        mtp = read_mtp(spec.init_from)
        _same_basis(spec, mtp)
        names = spec.species or mtp.species_names
        if not names:
            raise ConfigError(f"model.species: {spec.init_from} does not name its elements; list them in type order")
        if len(names) != mtp.species_count:
            raise ConfigError(f"model.species: {len(names)} names given but {spec.init_from} has {mtp.species_count} species")
        mtp = mtp.copy()
        mtp.species_names = list(names)
    else:
        from sus2md.train.init_model import init_mtp

        mtp = init_mtp(spec.L, spec.K, list(spec.species), spec.cutoff_A, radial_basis_size=spec.R, scaling_map=spec.scaling_map)
    if mtp.is_trained:
        for key in sorted(spec.model_fields_set & {"alpha_init_per_A", "r0_init_A"}):
            raise ConfigError(f"model.{key}: {spec.init_from} is trained, so training starts from its (alpha, r0); "
                              f"leave {key} out (it sets the start of a new model)")
    else:
        mtp = init_coefficients(mtp, cfg.optimizer.seed, cfg.model.alpha_init_per_A, cfg.model.r0_init_A)
    return mtp, list(mtp.species_names)


def _same_basis(spec, mtp: MTPFile) -> None:
    """Basis keys given next to ``init_from`` must match the file (they cannot change it)."""
    in_file = {"L": mtp.L, "K": mtp.radial_funcs_count // (mtp.L + 1), "R": mtp.radial_basis_size,
               "cutoff_A": float(mtp.max_dist), "scaling_map": mtp.scaling_map}
    for key in sorted(spec.model_fields_set & set(in_file)):
        if getattr(spec, key) != in_file[key]:
            raise ConfigError(f"model.{key}: {getattr(spec, key)} but init_from {spec.init_from} has {key} = "
                              f"{in_file[key]}; the basis comes from the file, leave {key} out")


def _check_training_set(cfg: TrainConfig, tr: list, va: list) -> None:
    """Something left to train on, with at least one label the loss weighs."""
    d, w = cfg.data, cfg.loss
    if not tr:
        split = (f" after data.validation_fraction = {d.validation_fraction:g} moved {len(va)} of them to validation"
                 if va and not d.validation else "")
        raise ConfigError(f"data.train: no training configurations left in {d.train}{split}; lower "
                          f"validation_fraction or add configurations")
    weighed = {"energy": w.energy_weight, "forces": w.force_weight, "virial_eV": w.stress_weight}
    found = {k for a in tr for k, v in labels(a).items() if v is not None and weighed[k] > 0}
    if not found:
        raise ConfigError(f"data.train: {d.train} has no energy, force or stress labels with a non-zero loss weight "
                          f"(loss.energy_weight, force_weight, stress_weight); training needs labelled data")


def _pretrain(model: SUS2Potential, cfg: TrainConfig, fresh: bool, train_frames, trainer: Trainer,
              say: Callable[[str], None]) -> None:
    """Rescale, random sampling (new models) and the linear solve, each announced with its time."""
    o, w = cfg.optimizer, _weights(cfg)
    rng = np.random.default_rng(o.seed)
    pick = sorted(rng.permutation(len(train_frames))[: o.init_subset])
    subset = make_batches([train_frames[k] for k in pick], model.cutoff, cfg.data.batch_atoms, DTYPES[cfg.model.dtype])
    if o.rescale:
        t = time.perf_counter()
        say(f"pre-training: Rescale of the radial scaling on {len(pick)} configurations ...")
        s = rescale(model, subset, w)
        say(f"pre-training: scaling = {s:.4g} ({time.perf_counter() - t:.1f} s)")
    if fresh and o.random_samples:
        t = time.perf_counter()
        say(f"pre-training: random sampling, {o.random_samples} draw(s) of the radial block on {len(pick)} "
            f"configurations ...")
        best = random_sampling(model, subset, w, o.random_samples, o.seed, cfg.model.freeze_scaling,
                               cfg.model.alpha_init_per_A, cfg.model.r0_init_A)
        say(f"pre-training: best subset loss {best / max(1, len(pick)):.4g} per configuration "
            f"({time.perf_counter() - t:.1f} s)")
    t = time.perf_counter()
    n_lin = sum(b.n_configs for b in trainer.linear_batches(all_ranks=True))
    say(f"pre-training: linear solve of the moment coefficients on {n_lin} training configurations ...")
    trainer.linear_solve()
    say(f"pre-training: done ({time.perf_counter() - t:.1f} s)")


def _weights(cfg: TrainConfig):
    from sus2md.train.loss import LossWeights

    return LossWeights.from_spec(cfg.loss)


def _metrics(model: SUS2Potential, frames, batches) -> dict:
    if not frames:
        return {}
    err = per_config_errors(model, batches)
    out = {"all": summarize(err)}
    types = np.array([str(frames[k].info.get("config_type", "")) for k in err["index"]])
    if len(set(types)) > 1 or types[0]:
        for t in sorted(set(types)):
            out[t or "(none)"] = summarize(err, types == t)
    return out


def format_metrics(metrics: dict) -> str:
    """A plain-text table: set, config_type, configs, E (meV/atom), F (meV/Å), stress (GPa)."""
    f = lambda d, k: f"{d[k]:>11.3f}" if k in d else f"{'-':>11}"
    lines = [f"{'set':<11}{'config_type':<22}{'configs':>8}{'E meV/atom':>11}{'F meV/Å':>11}{'S GPa':>11}{'W eV':>11}"]
    for name, groups in metrics.items():
        for t, d in groups.items():
            lines.append(f"{name:<11}{t:<22}{d['n_configs']:>8}{f(d, 'E_rmse')}{f(d, 'F_rmse')}{f(d, 'S_rmse')}{f(d, 'W_rmse')}")
    return "\n".join(lines) + "\n(RMSE; energies per atom)"


def _write_logs(cfg: TrainConfig, result: dict, history: list) -> None:
    out = cfg.output
    out.log_json.parent.mkdir(parents=True, exist_ok=True)
    out.log_json.write_text(json.dumps({"config": cfg.model_dump(mode="json"), **result, "history": history}, indent=1))
    keys = list(dict.fromkeys(k for r in history for k in r))
    with open(out.log_csv, "w", newline="") as fh:
        wr = csv.DictWriter(fh, fieldnames=keys or ["step"])
        wr.writeheader()
        wr.writerows(history)


def _progress_bar(cfg: TrainConfig, ctx: Context, start: int, total: int):
    if not (cfg.output.progress and ctx.is_main):
        return None, None
    from tqdm import tqdm

    bar = tqdm(total=total, initial=start, desc="train", dynamic_ncols=True)
    last = {}

    def update(rec: dict) -> None:
        last.update({k: v for k, v in rec.items() if k in ("train_loss", "val_loss")})
        bar.set_postfix({k: f"{v:.4g}" for k, v in last.items()}, refresh=False)
        bar.update(1)

    return bar, update


def _beside(bar, say: Callable[[str], None]) -> Callable[[str], None]:
    """``say`` that keeps a progress bar intact."""
    if bar is None:
        return say

    def line(msg: str) -> None:
        with bar.external_write_mode():
            say(msg)

    return line


def train_model(cfg: TrainConfig, resume: bool = False, echo: Optional[Callable[[str], None]] = None) -> TrainResult:
    """Train as configured; see the module docstring.  ``echo`` receives status lines (rank 0)."""
    t0 = time.perf_counter()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    ctx = setup()
    say = echo if (echo is not None and ctx.is_main) else (lambda s: None)
    try:
        torch.manual_seed(cfg.optimizer.seed)
        mtp, species = build_mtp(cfg)
        fresh = cfg.model.init_from is None or not read_mtp(cfg.model.init_from).is_trained
        d = cfg.data
        tr, va, te = load_split(d.train, d.validation, d.test, species, d.validation_fraction, d.seed, d.max_train)
        _check_training_set(cfg, tr, va)
        dt = DTYPES[cfg.model.dtype]
        model = SUS2Potential(mtp, dtype=dt)
        mk = lambda fr: make_batches(fr, model.cutoff, d.batch_atoms, dt)
        b_tr, b_va = mk(tr), mk(va)
        say(f"data: {len(tr)} train, {len(va)} validation, {len(te)} test configurations; {ctx.world} rank(s)")
        trainer = Trainer(model, cfg, b_tr, shard(b_va, ctx.rank, ctx.world), len(tr), len(va), ctx)
        if resume:
            trainer.load(cfg.output.checkpoint)
            say(f"resumed from {cfg.output.checkpoint} at step {trainer.state.step}")
        else:
            _pretrain(model, cfg, fresh, tr, trainer, say)
            trainer.reset_optimizer()
            trainer.state.elapsed_s = time.perf_counter() - t0  # max_time_min counts the pre-training
        def save(tr_: Trainer) -> None:  # checkpoint and the log so far
            tr_.save(cfg.output.checkpoint)
            _write_logs(cfg, {"steps": tr_.state.step}, tr_.state.history)

        bar, update = _progress_bar(cfg, ctx, trainer.state.step, trainer.total_steps)
        trainer.say = _beside(bar, say)
        def announce(signum: int) -> None:
            trainer.say(f"signal {signum}: stopping after step {trainer.state.step + 1} with a checkpoint "
                        f"(Ctrl-C again stops at once, and --resume then starts from the last checkpoint)")

        try:
            with stop_on_signals(trainer, announce):
                reason = trainer.run(progress=update, on_checkpoint=save if ctx.is_main else None)
        finally:
            if bar is not None:
                bar.close()
        n_params = int(model.to_mtp().parameter_counts()["total"])
        metrics: dict = {}
        if ctx.is_main:
            trainer.save(cfg.output.checkpoint)
        trainer.use_best()
        if ctx.is_main:
            cfg.output.model.parent.mkdir(parents=True, exist_ok=True)
            write_mtp(model.to_mtp(), cfg.output.model)
            metrics = {"train": _metrics(model, tr, b_tr), "validation": _metrics(model, va, b_va),
                       "test": _metrics(model, te, mk(te)) if te else {}}
            metrics = {k: v for k, v in metrics.items() if v}
            wall = time.perf_counter() - t0
            _write_logs(cfg, {"stop_reason": reason, "steps": trainer.state.step, "wall_s": wall, "n_params": n_params,
                              "best_step": trainer.state.best_step, "metrics": metrics}, trainer.state.history)
            say(f"stopped after {trainer.state.step} steps ({reason}); model written to {cfg.output.model}")
            if reason == "interrupted":
                say(f"checkpoint of step {trainer.state.step}: {cfg.output.checkpoint}; continue with --resume")
        ctx.barrier()
        return TrainResult(model, metrics, reason, trainer.state.step, time.perf_counter() - t0, n_params,
                           trainer.stop_signal if reason == "interrupted" else None)
    finally:
        teardown(ctx)
