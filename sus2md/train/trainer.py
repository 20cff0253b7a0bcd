"""The training loop of ``sus2md train``: full-batch L-BFGS or Adam mini-batches (optionally
finished by L-BFGS), with the exact least squares of the linear block
(:mod:`sus2md.train.linear`) before the first step and every ``linear_solve_every`` steps.

Schedule (SPEC-sus2 8.3, simplified): seeded start, Rescale, random sampling and TrainLinear;
then optimiser steps over all parameters except the global ``scaling`` (redundant with the species
weights, left to Rescale), the species coefficients ``c`` unless ``train_species_coeffs``, and
alpha, r0 with ``freeze_scaling``.  ``optimizer.kind``:

* ``lbfgs``: full batch (:mod:`sus2md.train.lbfgs`: strong-Wolfe line search, diagonal metric
  from the per-batch gradients).  Every step sees the whole training set, summed over the cached
  batches (batch ``k`` on rank ``k % world``).  Suits small data: a few hundred steps fit hard.
* ``adam``: mini-batch.  A step takes the next ``batches_per_step`` cached batches of a seeded
  permutation (a new one every epoch, a function of the step number alone, so ``--resume``
  continues the same sequence); rank ``r`` computes every ``world``-th of them and the gradients
  are summed.  The learning rate follows a cosine from ``lr`` to ``lr * lr_final`` over
  ``max_steps``; ``lbfgs_finish_steps`` full-batch L-BFGS steps may follow.  Suits large data,
  where one full-batch step costs many mini-batch steps.
* ``auto`` (default): ``lbfgs`` up to ``full_batch_atoms`` training atoms, ``adam`` above.

The loss may carry three penalties on the per-pair scaling (alpha, r0), all added once (rank 0):
``loss.scaling_l2`` (distance from the values at the first step), ``loss.pair_l2`` (the
non-additive part of each (S, S) matrix, ``x_ij - mean_j x_ij - mean_i x_ij + mean x``, so that a
species pair with few configurations follows what the data say about each of its species) and
``loss.species_l2`` (the additive part less the mean, ``mean_j x_ij + mean_i x_ij - 2 mean x``,
summed over the matrix, so that a species with few configurations follows the average species).

Either way a run is deterministic for a seed and independent of the rank count up to round-off.
Validation loss drives early stopping and the model kept at the end.  With ``optimizer.ema_decay``
an exponential moving average of the trained parameters (decay ``min(d, (1 + n) / (10 + n))``
after n updates, as torch-ema and MACE) is what validation checks and the final model see.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import torch

from sus2md.nn.potential import SUS2Potential
from sus2md.train.checkpoint import load_checkpoint, save_checkpoint
from sus2md.train.config import TrainConfig
from sus2md.train.dataset import Batch
from sus2md.train.distributed import Context
from sus2md.train.lbfgs import LBFGS
from sus2md.train.linear import duplicate_moments, tie_duplicates, train_linear
from sus2md.train.loss import LossWeights, batch_loss

__all__ = ["Trainer", "TrainState"]

log = logging.getLogger(__name__)


@dataclass
class TrainState:
    step: int = 0
    elapsed_s: float = 0.0
    best_val: float = float("inf")
    best_step: int = 0
    best_params: Optional[dict] = None
    bad_checks: int = 0
    history: list = field(default_factory=list)
    done: bool = False
    anchor: Optional[dict] = None  # alpha, r0 at the first step (the centre of loss.scaling_l2)
    ema: Optional[torch.Tensor] = None  # moving average of the flat trained parameters (optimizer.ema_decay), float64
    ema_updates: int = 0


class Trainer:
    """Owns the model, this rank's batches and the optimiser; ``run`` trains to the end."""

    def __init__(self, model: SUS2Potential, cfg: TrainConfig, train: list[Batch], val: list[Batch],
                 n_train: int, n_val: int, ctx: Context = Context()):
        """``train`` holds every training batch (on every rank); ``val`` this rank's share."""
        self.model, self.cfg, self.all_train, self.val, self.ctx = model, cfg, train, val, ctx
        self.train = train[ctx.rank::ctx.world]
        self.n_train, self.n_val = n_train, n_val
        self.n_atoms = int(sum(int(b.graph.species.shape[0]) for b in train))
        o = cfg.optimizer
        self.kind = o.kind if o.kind != "auto" else ("lbfgs" if self.n_atoms <= o.full_batch_atoms else "adam")
        self.finish = o.lbfgs_finish_steps if self.kind == "adam" else 0
        self.total_steps = o.max_steps + self.finish
        self.w = LossWeights.from_spec(cfg.loss)
        frozen = set() if o.train_species_coeffs else {"species_coeffs"}
        frozen |= {"alpha", "r0"} if cfg.model.freeze_scaling else set()
        frozen |= {"scaling"}  # redundant with the species weights; left to Rescale
        for name, p in model.named_parameters():
            p.requires_grad_(name not in frozen)
        self.params = [p for p in model.parameters() if p.requires_grad]
        # equal columns of the basis: their coefficients move together (sus2md.train.linear)
        self.duplicates = duplicate_moments(model)
        tie_duplicates(model.moment_coeffs, self.duplicates)
        self.state = TrainState()
        self.say: Callable[[str], None] = lambda msg: None  # status lines (phases, linear solves)
        self.stop_signal: Optional[int] = None  # set by SIGINT / SIGTERM (sus2md.signals): stop after this step
        self._elapsed = 0.0  # wall seconds at the start of the current step (lr_schedule: time)
        self.reset_optimizer()

    # ------------------------------------------------------------------ pieces
    def reset_optimizer(self) -> None:
        """A fresh optimiser (after the parameters jumped, e.g. after a linear solve)."""
        o = self.cfg.optimizer
        self.opt = torch.optim.Adam(self.params, lr=o.lr)
        self.lbfgs = LBFGS(o.history_size, o.precondition)

    def _flat(self) -> torch.Tensor:
        return torch.cat([p.detach().reshape(-1) for p in self.params])

    def _flat_grad(self) -> torch.Tensor:
        return torch.cat([p.grad.double().reshape(-1) for p in self.params])

    @staticmethod
    def _unflatten_into(flat: torch.Tensor, tensors: list[torch.Tensor]) -> None:
        """Copy consecutive slices of ``flat`` into ``tensors`` (in their shapes and dtypes)."""
        off = 0
        with torch.no_grad():
            for t in tensors:
                t.copy_(flat[off:off + t.numel()].reshape(t.shape))
                off += t.numel()

    def _set_flat(self, x: torch.Tensor) -> None:
        self._unflatten_into(x, self.params)

    def _loss_and_grad(self, batches: list[Batch], n_cfg: int, batch_sq: bool = False) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Sum over ``batches`` (and ranks) of the loss / ``n_cfg``, float64, with the summed
        gradients left in ``p.grad``; with ``batch_sq`` also the mean over all batches of the
        squared per-batch gradients (flat, float64)."""
        for p in self.params:
            p.grad = torch.zeros_like(p)
        total = self._penalty() if self.ctx.rank == 0 else torch.zeros((), dtype=torch.float64)
        sq = torch.zeros(sum(p.numel() for p in self.params), dtype=torch.float64) if batch_sq else None
        prev = torch.zeros_like(sq) if batch_sq else None
        for b in batches:
            loss = batch_loss(self.model, b, self.w, create_graph=True) / n_cfg
            loss.backward()
            tie_duplicates(self.model.moment_coeffs.grad, self.duplicates)
            total += loss.detach().double()
            if batch_sq:
                now = self._flat_grad()
                sq += (now - prev) ** 2
                prev = now
        if self.ctx.world > 1:
            flat = self.ctx.all_reduce(torch.cat([total.reshape(1), self._flat_grad()]))
            total = flat[0]
            self._unflatten_into(flat[1:], [p.grad for p in self.params])
            if batch_sq:
                sq = self.ctx.all_reduce(sq)
        if batch_sq:
            sq /= max(1, len(self.all_train))
        return total, sq

    def _penalty(self) -> torch.Tensor:
        """Regularisation terms of the loss (float64); their gradients are added to ``p.grad``."""
        lw = self.cfg.loss
        total = torch.zeros((), dtype=torch.float64)
        if not self.model.alpha.requires_grad or not (lw.scaling_l2 > 0 or lw.pair_l2 > 0 or lw.species_l2 > 0):
            return total
        pen = torch.zeros((), dtype=self.model.alpha.dtype)
        for name in ("alpha", "r0"):
            p = getattr(self.model, name)  # (blocks, S, S)
            if lw.scaling_l2 > 0:
                pen = pen + lw.scaling_l2 * ((p - self.state.anchor[name]) ** 2).sum()
            mean = p.mean((1, 2), keepdim=True)
            if lw.pair_l2 > 0:
                inter = p - p.mean(2, keepdim=True) - p.mean(1, keepdim=True) + mean
                pen = pen + lw.pair_l2 * (inter ** 2).sum()
            if lw.species_l2 > 0:
                additive = (p.mean(2, keepdim=True) - mean) + (p.mean(1, keepdim=True) - mean)  # (blocks, S, S)
                pen = pen + lw.species_l2 * (additive ** 2).sum()
        pen.backward()
        return total + pen.detach().double()

    def full_loss(self, x: Optional[torch.Tensor] = None, batch_sq: bool = False):
        """Full training loss (sum over ranks, / N_cfg) and its flat float64 gradient at ``x``
        (default: the current parameters), and the batch-gradient squares if asked."""
        if x is not None:
            self._set_flat(x)
        total, sq = self._loss_and_grad(self.train, self.n_train, batch_sq)
        return float(total), self._flat_grad(), sq

    def lbfgs_step(self) -> float:
        """One full-batch L-BFGS iteration (line search included); returns the new loss."""
        lb = self.lbfgs
        if lb.x is None:
            f, g, sq = self.full_loss(batch_sq=True)
            lb.start(self._flat().double(), f, g, sq)
        f, self.last_evals = lb.step(lambda x: self.full_loss(x)[:2])
        self._set_flat(lb.x)
        return f

    def linear_batches(self, all_ranks: bool = False) -> list[Batch]:
        """This rank's share (or, with ``all_ranks``, all) of the batches used by TrainLinear: all
        of them, or a seeded random selection holding at least ``optimizer.linear_subset``
        configurations."""
        o, batches = self.cfg.optimizer, self.all_train
        if o.linear_subset is not None and o.linear_subset < self.n_train:
            pick, n = [], 0
            for k in np.random.default_rng(o.seed + 7).permutation(len(batches)):
                if n >= o.linear_subset:
                    break
                pick.append(int(k))
                n += batches[k].n_configs
            batches = [batches[k] for k in sorted(pick)]
        return batches if all_ranks else batches[self.ctx.rank::self.ctx.world]

    def linear_solve(self) -> None:
        train_linear(self.model, self.linear_batches(), self.w, reduce=self.ctx.all_reduce if self.ctx.world > 1 else None)
        self.reset_optimizer()
        self.state.ema, self.state.ema_updates = None, 0  # the parameters jumped: the average restarts

    # ------------------------------------------------------------------ moving average
    def _ema_update(self) -> None:
        st, decay = self.state, self.cfg.optimizer.ema_decay
        if decay is None:
            return
        now = self._flat().double()
        if st.ema is None:
            st.ema, st.ema_updates = now.clone(), 0
        st.ema_updates += 1
        d = min(decay, (1.0 + st.ema_updates) / (10.0 + st.ema_updates))
        st.ema.mul_(d).add_(now, alpha=1.0 - d)

    def _swap_ema(self) -> Optional[torch.Tensor]:
        """Load the moving average into the model; returns the flat parameters it replaced (or None)."""
        if self.state.ema is None:
            return None
        held = self._flat()  # a new tensor (torch.cat)
        self._set_flat(self.state.ema)
        return held

    def _group(self, step: int) -> list[Batch]:
        """The batches of mini-batch step ``step`` (all ranks), from per-epoch permutations."""
        nb, g = len(self.all_train), min(self.cfg.optimizer.batches_per_step, len(self.all_train))
        out, perms = [], {}
        for pos in range(step * g, (step + 1) * g):
            epoch = pos // nb
            if epoch not in perms:
                perms[epoch] = np.random.default_rng([self.cfg.optimizer.seed, epoch]).permutation(nb)
            out.append(self.all_train[int(perms[epoch][pos % nb])])
        return out

    def _lr(self, step: int, elapsed_s: float = 0.0) -> float:
        o = self.cfg.optimizer
        frac = min(1.0, step / max(1, o.max_steps))
        if o.lr_schedule == "time" and o.max_time_min:
            frac = max(frac, min(1.0, elapsed_s / (60.0 * o.max_time_min)))
        return o.lr * (o.lr_final + (1.0 - o.lr_final) * 0.5 * (1.0 + math.cos(math.pi * frac)))

    def minibatch_step(self) -> float:
        """One Adam step on the next group of batches; returns its mean loss per configuration."""
        group = self._group(self.state.step)
        n_cfg = sum(b.n_configs for b in group)
        total, _ = self._loss_and_grad(group[self.ctx.rank::self.ctx.world], n_cfg)
        for grp in self.opt.param_groups:
            grp["lr"] = self._lr(self.state.step, self._elapsed)
        self.opt.step()
        return float(total)

    def validation_loss(self) -> float:
        total = torch.zeros((), dtype=torch.float64)
        for b in self.val:
            total += batch_loss(self.model, b, self.w, create_graph=False).detach().double()
        return float(self.ctx.all_reduce(total)) / self.n_val

    # ------------------------------------------------------------------ checkpoints
    def save(self, path) -> None:
        st = self.state
        save_checkpoint(path, {
            "model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
            "optimizer": self.opt.state_dict(), "lbfgs": self.lbfgs.state_dict(), "state": st.__dict__,
        })

    def load(self, path) -> None:
        ck = load_checkpoint(path)
        self.model.load_state_dict(ck["model"])
        self.reset_optimizer()
        self.opt.load_state_dict(ck["optimizer"])
        self.lbfgs.load_state_dict(ck["lbfgs"])
        self.state = TrainState(**ck["state"])

    # ------------------------------------------------------------------ loop
    def _should_stop(self, elapsed_s: float) -> Optional[str]:
        o, st = self.cfg.optimizer, self.state
        asked = float(self.stop_signal is not None)
        if self.ctx.world > 1:  # a signal reaches the ranks at different steps: all stop at the first
            asked = float(self.ctx.all_reduce(torch.tensor([asked], dtype=torch.float64))[0])
        if asked > 0:
            return "interrupted"
        if st.step >= self.total_steps:
            return "max_steps"
        if o.max_time_min is not None and elapsed_s >= 60 * o.max_time_min:
            return "max_time_min"
        if self.lbfgs.stalled:  # only L-BFGS steps set it
            self.say(f"step {st.step}: L-BFGS found no decrease even along the gradient: the loss is flat to its "
                     f"round-off ({self.cfg.model.dtype}); stopping (model.dtype: float64 can go further)")
            return "line_search"
        p = self.cfg.early_stopping.patience
        if p is not None and st.bad_checks >= p:
            return "early_stopping"
        return None

    def _check_validation(self, train_loss: float | None) -> dict:
        """A validation check: the loss on the validation set, the best model so far and the
        patience count (nothing without validation data)."""
        st = self.state
        if not self.n_val:
            return {}
        held = self._swap_ema()
        score = self.validation_loss()
        rec = {"step": st.step, "train_loss": train_loss, "val_loss": score}
        if score < st.best_val:
            st.best_val, st.best_step, st.bad_checks = score, st.step, 0
            st.best_params = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        else:
            st.bad_checks += 1
        if held is not None:
            self._set_flat(held)
        return rec

    def run(self, progress=None, on_checkpoint=None) -> str:
        """Train until a stop criterion (the model holds the last step's parameters)."""
        o, es, st = self.cfg.optimizer, self.cfg.early_stopping, self.state
        t_start = time.perf_counter()
        elapsed0 = st.elapsed_s
        reason = None
        if st.anchor is None:
            st.anchor = {k: getattr(self.model, k).detach().clone() for k in ("alpha", "r0")}
        if st.step == 0 and self.n_val and not st.history:  # the starting point is a candidate too
            st.history.append(self._check_validation(None))
        self.say(self._describe())
        while (reason := self._should_stop(elapsed0 + time.perf_counter() - t_start)) is None:
            if o.linear_solve_every and st.step > 0 and st.step % o.linear_solve_every == 0:
                t = time.perf_counter()
                self.linear_solve()
                self.say(f"step {st.step}: linear solve of the moment coefficients ({time.perf_counter() - t:.1f} s)")
            self._elapsed = elapsed0 + time.perf_counter() - t_start
            full = self.phase(st.step) == "lbfgs"
            if full and st.step == o.max_steps and self.finish:
                self.say(f"step {st.step}: Adam done; {self.finish} full-batch L-BFGS steps "
                         f"({self.n_train} configurations per step) follow")
            loss = self.lbfgs_step() if full else self.minibatch_step()
            self._ema_update()
            st.step += 1
            st.elapsed_s = elapsed0 + time.perf_counter() - t_start
            rec = {"step": st.step, "time_s": round(st.elapsed_s, 3), "train_loss": loss}
            if full:
                rec["evaluations"] = self.last_evals
            if st.step % es.validate_every == 0 or st.step == self.total_steps:
                rec.update(self._check_validation(loss))
            st.history.append(rec)
            if progress is not None:
                progress(rec)
            if on_checkpoint is not None and st.step % self.cfg.output.checkpoint_every == 0:
                on_checkpoint(self)
        st.done = True
        return reason

    def phase(self, step: int) -> str:
        """The optimiser of step ``step`` (0-based): ``adam`` or ``lbfgs``."""
        return "lbfgs" if self.kind == "lbfgs" or step >= self.cfg.optimizer.max_steps else "adam"

    def _describe(self) -> str:
        o, n_par = self.cfg.optimizer, sum(p.numel() for p in self.params)
        limit = f"{self.total_steps} steps" + (f" or {o.max_time_min:g} min" if o.max_time_min else "")
        if self.kind == "lbfgs":
            how = f"full-batch L-BFGS ({self.n_train} configurations per step)"
        else:
            how = f"Adam mini-batches ({o.batches_per_step} x ~{self.cfg.data.batch_atoms} atoms per step)"
            how += f", then {self.finish} full-batch L-BFGS steps" if self.finish else ""
        why = (f" (optimizer.kind auto: {self.n_atoms} training atoms "
               f"{'<=' if self.kind == 'lbfgs' else '>'} full_batch_atoms = {o.full_batch_atoms})" if o.kind == "auto" else "")
        val = (f"validation every {self.cfg.early_stopping.validate_every} steps" if self.n_val else "no validation data")
        return f"training: {how}{why}, {n_par} parameters, up to {limit}; {val}; from step {self.state.step}"

    def use_best(self) -> None:
        """Load the parameters of the best validation check, or without validation data the moving
        average if there is one (after the final checkpoint is saved, so that ``--resume``
        continues from the last step, not from the best one)."""
        if self.state.best_params is not None and self.n_val:
            self.model.load_state_dict(self.state.best_params)
        elif self.state.ema is not None:
            self._swap_ema()
