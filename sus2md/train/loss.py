r"""Training loss (SPEC-sus2 8.1) and error metrics.

Per configuration c with N atoms (labels that are missing drop out through the masks)::

    L_c = w_E (E - E_ref)^2 / N  +  w_F sum_i |F_i - F_i,ref|^2  +  w_S ||W - W_ref||_F^2 / N

with the virial W in eV over all 9 components; the total is ``sum_c L_c / N_cfg``.  There is
no per-atom division of the force term (the authors' "vibrations" weighting).  With
``energy_per_atom`` the energy term is ``w_E ((E - E_ref) / N)^2`` instead (MACE's and NequIP's
per-atom energy MSE): every configuration weighs the same in it, as in the energy RMSE per atom,
where the default weighs a configuration by its atom count.

Metrics: energy RMSE/MAE in meV/atom over configurations, force RMSE/MAE in meV/Å over all
components, virial RMSE/MAE in eV and stress (-W/V) RMSE in GPa over the 6 Voigt components.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from sus2md.nn.calc import evaluate
from sus2md.nn.potential import SUS2Potential
from sus2md.train import fastpath
from sus2md.train.dataset import Batch
from sus2md.units import EV_PER_A3_TO_GPA

__all__ = ["LossWeights", "batch_loss", "energy_norm", "per_config_errors", "summarize"]


@dataclass(frozen=True)
class LossWeights:
    energy: float = 1.0
    force: float = 0.01
    stress: float = 0.001
    energy_per_atom: bool = False  # energy term ((E - E_ref) / N)^2 instead of (E - E_ref)^2 / N

    @classmethod
    def from_spec(cls, spec) -> "LossWeights":
        """From the ``loss:`` section of a training configuration (:class:`sus2md.train.config.LossSpec`)."""
        return cls(spec.energy_weight, spec.force_weight, spec.stress_weight, spec.energy_norm == "per_atom")


def batch_loss(model: SUS2Potential, batch: Batch, w: LossWeights, create_graph: bool = True) -> Tensor:
    """Sum of L_c over the configurations of ``batch`` (a scalar, differentiable in the
    parameters when ``create_graph``).

    With ``create_graph`` the forces come from :mod:`sus2md.train.fastpath` (edge geometry cached
    on the batch, first-order in the edges); otherwise from :func:`sus2md.nn.calc.evaluate`."""
    need_f = w.force > 0 and bool(batch.force_mask.any())
    need_w = w.stress > 0 and bool(batch.virial_mask.any())
    if create_graph and (need_f or need_w):
        ec = batch.edge_cache
        if not fastpath.matches(ec, model):
            ec = batch.edge_cache = fastpath.edge_cache(model, batch.graph)
        energy, forces, virial = fastpath.energy_forces_virial(model, ec, batch.graph.species)
    else:
        res = evaluate(model, batch.graph, forces=need_f, virial=need_w, create_graph=create_graph)
        energy, forces, virial = res.energy, res.forces, res.virial
    n = batch.n_atoms
    loss = w.energy * (batch.energy_mask * (energy - batch.energy) ** 2 / energy_norm(n, w)).sum()
    if need_f:
        df = (forces - batch.forces) ** 2
        loss = loss + w.force * (batch.force_mask * df.sum(dim=1)).sum()
    if need_w:
        dw = ((virial - batch.virial) ** 2).sum(dim=(1, 2))
        loss = loss + w.stress * (batch.virial_mask * dw / n).sum()
    return loss


def energy_norm(n_atoms: Tensor, w: LossWeights) -> Tensor:
    """The divisor of the squared energy error of each configuration: N, or N² with
    ``energy_per_atom``."""
    return n_atoms * n_atoms if w.energy_per_atom else n_atoms


_VOIGT = ([0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1])


def per_config_errors(model: SUS2Potential, batches: Sequence[Batch]) -> dict[str, np.ndarray]:
    """Per configuration (in batch order): ``index``, ``de`` (eV/atom, NaN if unlabelled),
    ``f_sq`` / ``f_abs`` (sums over force components, eV/Å), ``n_f`` (labelled components),
    ``w_err`` ((6,) virial errors, eV, NaN if unlabelled), ``s_err`` ((6,) stress errors, GPa)."""
    out: dict[str, list] = {k: [] for k in ("index", "de", "f_sq", "f_abs", "n_f", "w_err", "s_err")}
    for b in batches:
        res = evaluate(model, b.graph, forces=True, virial=True, create_graph=False)
        e = res.energy.detach().double()
        f = res.forces.detach().double()
        vir = res.virial.detach().double()
        n = b.n_atoms.double()
        de = torch.where(b.energy_mask > 0, (e - b.energy.double()) / n, torch.full_like(e, float("nan")))
        df = (f - b.forces.double()) * b.force_mask.double().unsqueeze(1)
        cfg = b.graph.batch
        f_sq = torch.zeros_like(e).index_add(0, cfg, (df**2).sum(1))
        f_abs = torch.zeros_like(e).index_add(0, cfg, df.abs().sum(1))
        n_f = torch.zeros_like(e).index_add(0, cfg, 3 * b.force_mask.double())
        dw = (vir - b.virial.double())[:, _VOIGT[0], _VOIGT[1]]
        dw = torch.where(b.virial_mask.double().unsqueeze(1) > 0, dw, torch.full_like(dw, float("nan")))
        vol = torch.abs(torch.linalg.det(b.graph.cells.double())).unsqueeze(1)
        ds = torch.where(vol > 1e-9, -dw / vol * EV_PER_A3_TO_GPA, torch.full_like(dw, float("nan")))
        for k, v in (("de", de), ("f_sq", f_sq), ("f_abs", f_abs), ("n_f", n_f), ("w_err", dw), ("s_err", ds)):
            out[k].append(v.numpy())
        out["index"].append(np.asarray(b.index))
    return {k: np.concatenate(v) if v else np.zeros(0) for k, v in out.items()}


def summarize(err: dict[str, np.ndarray], select: np.ndarray | None = None) -> dict[str, float]:
    """RMSE/MAE over the selected configurations: ``E_rmse`` (meV/atom), ``F_rmse`` (meV/Å),
    ``S_rmse`` (GPa), ``W_rmse`` (eV), their MAEs and ``n_configs``."""
    sel = np.ones(len(err["de"]), dtype=bool) if select is None else select
    m: dict[str, float] = {"n_configs": int(sel.sum())}
    de = err["de"][sel]
    de = de[np.isfinite(de)]
    if de.size:
        m["E_rmse"] = 1e3 * float(np.sqrt(np.mean(de**2)))
        m["E_mae"] = 1e3 * float(np.mean(np.abs(de)))
    nf = err["n_f"][sel].sum()
    if nf > 0:
        m["F_rmse"] = 1e3 * float(np.sqrt(err["f_sq"][sel].sum() / nf))
        m["F_mae"] = 1e3 * float(err["f_abs"][sel].sum() / nf)
    for key, name in (("w_err", "W"), ("s_err", "S")):
        v = err[key][sel].ravel()
        v = v[np.isfinite(v)]
        if v.size:
            m[f"{name}_rmse"] = float(np.sqrt(np.mean(v**2)))
            m[f"{name}_mae"] = float(np.mean(np.abs(v)))
    return m
