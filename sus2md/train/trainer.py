"""The training loop of ``sus2md train``: alternate exact least squares for the linear block
(:mod:`sus2md.train.linear`) with L-BFGS (strong-Wolfe line search) or Adam over the parameters.

Schedule (SPEC-sus2 8.3, simplified): seeded start, Rescale, random sampling and TrainLinear;
then ``max_steps`` optimiser steps over all parameters except the species coefficients ``c``
(frozen at 1, as with the authors' ``--do-lin``, unless ``train_species_coeffs``; alpha and r0
too with ``freeze_scaling``), with TrainLinear every ``linear_solve_every`` steps (the optimiser
state restarts after each).

* ``lbfgs``: full batch.  Every step sees the whole training set, summed over the cached batches
  (batch ``k`` on rank ``k % world``).
* ``adam``: mini-batch.  A step takes the next ``batches_per_step`` cached batches of a seeded
  permutation (a new one every epoch, a function of the step number alone, so ``--resume``
  continues the same sequence); rank ``r`` computes every ``world``-th of them and the gradients
  are summed.  The global ``scaling`` is left to Rescale (it is redundant with the species
  weights); the learning rate follows a cosine from ``lr`` to ``lr * lr_final`` over
  ``max_steps``.

Either way a run is deterministic for a seed and independent of the rank count up to round-off.
Validation loss drives early stopping and the model kept at the end.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch

from sus2md.nn.potential import SUS2Potential
from sus2md.train.checkpoint import load_checkpoint, save_checkpoint
from sus2md.train.config import TrainConfig
from sus2md.train.dataset import Batch
from sus2md.train.distributed import Context
from sus2md.train.linear import train_linear
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


class Trainer:
    """Owns the model, this rank's batches and the optimiser; ``run`` trains to the end."""

    def __init__(self, model: SUS2Potential, cfg: TrainConfig, train: list[Batch], val: list[Batch],
                 n_train: int, n_val: int, ctx: Context = Context()):
        """``train`` holds every training batch (on every rank); ``val`` this rank's share."""
        self.model, self.cfg, self.all_train, self.val, self.ctx = model, cfg, train, val, ctx
        self.train = train[ctx.rank::ctx.world]
        self.n_train, self.n_val = n_train, n_val
        lw = cfg.loss
        self.w = LossWeights(lw.energy_weight, lw.force_weight, lw.stress_weight)
        o = cfg.optimizer
        frozen = set() if o.train_species_coeffs else {"species_coeffs"}
        frozen |= {"alpha", "r0"} if cfg.model.freeze_scaling else set()
        frozen |= {"scaling"} if o.kind == "adam" else set()
        for name, p in model.named_parameters():
            p.requires_grad_(name not in frozen)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.state = TrainState()
        self.reset_optimizer()
        self._cache: Optional[tuple] = None

    # ------------------------------------------------------------------ pieces
    def reset_optimizer(self) -> None:
        """A fresh optimiser (after the parameters jumped, e.g. after a linear solve)."""
        o = self.cfg.optimizer
        if o.kind == "lbfgs":
            self.opt = torch.optim.LBFGS(self.params, lr=o.lr, max_iter=1, history_size=o.history_size,
                                         line_search_fn="strong_wolfe", tolerance_grad=1e-12, tolerance_change=1e-14)
        else:
            self.opt = torch.optim.Adam(self.params, lr=o.lr)
        self._cache = None

    def _flat(self) -> torch.Tensor:
        return torch.cat([p.detach().reshape(-1) for p in self.params])

    def _loss_and_grad(self, batches: list[Batch], n_cfg: int) -> torch.Tensor:
        """Sum over ``batches`` (and ranks) of the loss / ``n_cfg``, float64, with the summed
        gradients left in ``p.grad``."""
        self.opt.zero_grad(set_to_none=False)
        for p in self.params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        total = torch.zeros((), dtype=torch.float64)
        for b in batches:
            loss = batch_loss(self.model, b, self.w, create_graph=True) / n_cfg
            loss.backward()
            total += loss.detach().double()
        if self.ctx.world > 1:
            flat = self.ctx.all_reduce(torch.cat([total.reshape(1)] + [p.grad.double().reshape(-1) for p in self.params]))
            total = flat[0]
            off = 1
            for p in self.params:
                p.grad.copy_(flat[off:off + p.numel()].reshape(p.shape))
                off += p.numel()
        return total

    def closure(self) -> torch.Tensor:
        """Full training loss (sum over ranks, / N_cfg) with gradients in ``p.grad``.

        L-BFGS re-evaluates the point where its last line search ended at the start of every
        ``step``; that value is returned from a cache."""
        x = self._flat()
        if self._cache is not None and torch.equal(self._cache[0], x):
            for p, g in zip(self.params, self._cache[2]):
                p.grad = g.clone()
            return self._cache[1].clone()
        loss_t = self._loss_and_grad(self.train, self.n_train).to(self.params[0].dtype)
        self._cache = (x, loss_t.clone(), [p.grad.detach().clone() for p in self.params])
        return loss_t

    def linear_batches(self) -> list[Batch]:
        """This rank's share of the batches used by TrainLinear: all of them, or a seeded random
        selection holding at least ``optimizer.linear_subset`` configurations."""
        o, batches = self.cfg.optimizer, self.all_train
        if o.linear_subset is not None and o.linear_subset < self.n_train:
            pick, n = [], 0
            for k in np.random.default_rng(o.seed + 7).permutation(len(batches)):
                if n >= o.linear_subset:
                    break
                pick.append(int(k))
                n += batches[k].n_configs
            batches = [batches[k] for k in sorted(pick)]
        return batches[self.ctx.rank::self.ctx.world]

    def linear_solve(self) -> None:
        train_linear(self.model, self.linear_batches(), self.w, reduce=self.ctx.all_reduce if self.ctx.world > 1 else None)
        self.reset_optimizer()

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

    def _lr(self, step: int) -> float:
        o = self.cfg.optimizer
        frac = min(1.0, step / max(1, o.max_steps))
        return o.lr * (o.lr_final + (1.0 - o.lr_final) * 0.5 * (1.0 + math.cos(math.pi * frac)))

    def minibatch_step(self) -> float:
        """One Adam step on the next group of batches; returns its mean loss per configuration."""
        group = self._group(self.state.step)
        n_cfg = sum(b.n_configs for b in group)
        total = self._loss_and_grad(group[self.ctx.rank::self.ctx.world], n_cfg)
        for grp in self.opt.param_groups:
            grp["lr"] = self._lr(self.state.step)
        self.opt.step()
        return float(total)

    def validation_loss(self) -> float:
        if self.n_val == 0:
            return float("nan")
        total = torch.zeros((), dtype=torch.float64)
        for b in self.val:
            total += batch_loss(self.model, b, self.w, create_graph=False).detach().double()
        return float(self.ctx.all_reduce(total)) / self.n_val

    # ------------------------------------------------------------------ checkpoints
    def save(self, path) -> None:
        st = self.state
        save_checkpoint(path, {
            "model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
            "optimizer": self.opt.state_dict(), "state": st.__dict__,
        })

    def load(self, path) -> None:
        ck = load_checkpoint(path)
        self.model.load_state_dict(ck["model"])
        self.reset_optimizer()
        self.opt.load_state_dict(ck["optimizer"])
        self.state = TrainState(**ck["state"])

    # ------------------------------------------------------------------ loop
    def _should_stop(self, elapsed_s: float) -> Optional[str]:
        o, st = self.cfg.optimizer, self.state
        if st.step >= o.max_steps:
            return "max_steps"
        if o.max_time_min is not None and elapsed_s >= 60 * o.max_time_min:
            return "max_time_min"
        p = self.cfg.early_stopping.patience
        if p is not None and st.bad_checks >= p:
            return "early_stopping"
        return None

    def _check_validation(self, train_loss: float | None) -> dict:
        st = self.state
        val = self.validation_loss()
        rec = {"step": st.step, "train_loss": train_loss, "val_loss": val}
        score = val if self.n_val else train_loss
        if score < st.best_val:
            st.best_val, st.best_step, st.bad_checks = score, st.step, 0
            st.best_params = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        else:
            st.bad_checks += 1
        return rec

    def run(self, progress=None, on_checkpoint=None) -> str:
        """Train until a stop criterion (the model holds the last step's parameters)."""
        o, es, st = self.cfg.optimizer, self.cfg.early_stopping, self.state
        t_start = time.perf_counter()
        elapsed0 = st.elapsed_s
        reason = None
        if st.step == 0 and self.n_val and not st.history:  # the starting point is a candidate too
            st.history.append(self._check_validation(None))
        while (reason := self._should_stop(elapsed0 + time.perf_counter() - t_start)) is None:
            if o.linear_solve_every and st.step > 0 and st.step % o.linear_solve_every == 0:
                self.linear_solve()
            if o.kind == "lbfgs":
                loss = float(self.opt.step(self.closure))
            else:
                loss = self.minibatch_step()
            st.step += 1
            st.elapsed_s = elapsed0 + time.perf_counter() - t_start
            rec = {"step": st.step, "time_s": round(st.elapsed_s, 3), "train_loss": loss}
            if st.step % es.validate_every == 0 or st.step == o.max_steps:
                rec.update(self._check_validation(loss))
            st.history.append(rec)
            if progress is not None:
                progress(rec)
            if on_checkpoint is not None and st.step % self.cfg.output.checkpoint_every == 0:
                on_checkpoint(self)
        st.done = True
        return reason

    def use_best(self) -> None:
        """Load the parameters of the best validation check (after the final checkpoint is saved,
        so that ``--resume`` continues from the last step, not from the best one)."""
        if self.state.best_params is not None and self.n_val:
            self.model.load_state_dict(self.state.best_params)
