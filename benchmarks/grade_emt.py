"""Extrapolation grades on the EMT alloy data: in-domain stays low, out-of-domain goes high.

Builds per-species MaxVol active sets from a random subset of ``emt_alloy_train.extxyz`` (no
``extreme`` configurations and no configuration holding both elements of ``--pair``), then
prints median / max of the per-configuration max gamma and the fraction above ``--threshold``
for: every test ``config_type`` (in domain), the test ``extreme`` configurations, fcc test
cells compressed to 0.80-0.85 of their lattice constant, and random fcc alloys of the held-out
pair (never seen together in training).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/grade_emt.py [--model models/emt_alloy.mtp]

Without ``models/emt_alloy.mtp`` it uses the published ``../shared/reference/alloy.mtp``.
"""
from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from ase.build import bulk

from sus2md.active.grade import ActiveSet, basis_vectors
from sus2md.io.data import load_frames, species_index
from sus2md.model import load_model

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
ALLOY_SPECIES = ("Li,Be,Na,Mg,Al,Si,K,Ca,Sc,Ti,V,Cr,Mn,Fe,Co,Ni,Cu,Zn,Ga,Ge,Sr,Y,Zr,Nb,Mo,Ru,Rh,Pd,Ag,Cd,In,Sn,"
                 "La,Ce,Pr,Nd,Sm,Gd,Tb,Dy,Ho,Er,Tm,Lu,Hf,Ta,W,Re,Os,Ir,Pt,Au,Pb").split(",")


def pick_model(arg: str | None):
    path = Path(arg) if arg else ROOT / "models" / "emt_alloy.mtp"
    if path.is_file():
        return path, load_model(path)
    ref = ROOT.parent / "shared" / "reference" / "alloy.mtp"
    return ref, load_model(ref, species=ALLOY_SPECIES)


def training_subset(frames, n: int, pair: tuple[str, str], seed: int):
    ok = [k for k, a in enumerate(frames) if a.info.get("config_type") != "extreme"
          and not set(pair) <= set(a.get_chemical_symbols())]
    rng = np.random.default_rng(seed)
    return [frames[k] for k in sorted(rng.choice(ok, size=min(n, len(ok)), replace=False))]


def compressed(frames, factors=(0.80, 0.85)):
    fcc = [a for a in frames if a.info["config_type"] in ("bulk_fcc_small", "bulk_fcc_large")][:20]
    out = []
    for f in factors:
        for a in fcc:
            b = a.copy()
            b.set_cell(a.cell * f, scale_atoms=True)
            out.append(b)
    return out


def pair_alloys(pair, species, a0: dict, n: int = 20, seed: int = 1):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        x = rng.uniform(0.3, 0.7)
        a = bulk("Cu", "fcc", a=1.0, cubic=True).repeat((2, 2, 2))
        sym = np.where(rng.random(len(a)) < x, pair[0], pair[1])
        a.set_chemical_symbols(sym)
        lat = x * a0[pair[0]] + (1 - x) * a0[pair[1]]  # Vegard, as the data set
        a.set_cell(a.cell * lat, scale_atoms=True)
        a.positions += rng.normal(scale=0.05, size=a.positions.shape)
        a.arrays["mtp_type"] = species_index(a, species)
        out.append(a)
    return out


def row(name, g, ga, thr):
    return (f"{name:<34}{len(g):>6}{np.median(g):>10.3g}{np.max(g):>10.3g}"
            f"{np.mean(g <= 1.0 + 1e-3):>8.2f}{np.mean(g > thr):>8.2f}{np.median(ga):>10.3g}{np.mean(ga > thr):>10.3f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model")
    p.add_argument("--n-train", type=int, default=300)
    p.add_argument("--pair", default="Al,Au")
    p.add_argument("--threshold", type=float, default=2.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--test-per-type", type=int, default=40)
    args = p.parse_args()
    pair = tuple(args.pair.split(","))
    path, model = pick_model(args.model)
    species = model.species_names
    t0 = time.perf_counter()
    train = training_subset(load_frames(DATA / "emt_alloy_train.extxyz", species=species), args.n_train, pair, args.seed)
    aset = ActiveSet.from_frames(model, train)
    t1 = time.perf_counter()
    sizes = {species[t]: n for t, n in aset.size().items()}
    print(f"model {path.name} (n_scal {model.moment_coeffs.shape[0]}); active set from {len(train)} configs "
          f"({sum(len(a) for a in train)} atoms) in {t1 - t0:.1f} s; rows per species {sizes}")
    test = load_frames(DATA / "emt_alloy_test.extxyz", species=species)
    by_type = defaultdict(list)
    for a in test:
        by_type[a.info["config_type"]].append(a)
    groups = {f"(a) test {ct}": fr[: args.test_per_type] for ct, fr in sorted(by_type.items()) if ct != "extreme"}
    groups["(b) fcc test cells x0.80/x0.85"] = compressed(test)
    a0 = json.loads((DATA / "emt_alloy_stats.json").read_text())["a0_emt"]
    groups[f"(c) unseen pair {pair[0]}-{pair[1]} fcc"] = pair_alloys(pair, species, a0)
    groups["(d) test extreme"] = by_type["extreme"]
    thr = args.threshold
    gt = format(thr, "g")
    print(f"{'':<40}{'max gamma per configuration':^36}{'per atom':^20}")
    print(f"{'group':<34}{'n':>6}{'median':>10}{'max':>10}{'<=1':>8}{'>' + gt:>8}{'median':>10}{'>' + gt:>10}")
    results = {}
    for name, frames in groups.items():
        b, types, frame = basis_vectors(model, frames)
        ga = aset.gamma(b, types)
        g = np.zeros(len(frames))
        np.maximum.at(g, frame, ga)
        results[name] = (g, ga)
        print(row(name, g, ga, thr))
    in_dom = [v for k, v in results.items() if k.startswith("(a)")]
    print(row("(a) all in-domain test", np.concatenate([v[0] for v in in_dom]), np.concatenate([v[1] for v in in_dom]), thr))
    print(f"total {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
