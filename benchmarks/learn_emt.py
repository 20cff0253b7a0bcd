"""Active learning on the EMT 7-metal alloy, measured (issue 14): ``sus2md learn
examples/learn_emt.yaml`` from 17 starting structures with EMT as the labeller, against

* the shipped ``models/emt_alloy.mtp`` (trained on all 2150 configurations of
  ``../shared/data/emt_alloy_train.extxyz``), and
* a random-selection baseline: the same model shape and training recipe on as many
  configurations drawn at random (seed 0) from that training set as the loop labelled.

Every model is scored on ``../shared/data/emt_alloy_test.extxyz`` per ``config_type``.  Prints a
Markdown report (labels, wall time and test errors after every iteration; the final comparison)
and writes ``benchmarks/results/learn_emt.{md,json}``.

Usage::

    python benchmarks/learn_emt.py [--out runs/learn_emt] [--resume]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SUS2MD_SHARED", ROOT.parent / "shared")) / "data"
EXAMPLE = ROOT / "examples" / "learn_emt.yaml"
SPECIES = ["Al", "Ni", "Cu", "Pd", "Ag", "Pt", "Au"]
TYPES = ("md", "bulk_fcc_large", "bulk_fcc_small", "vacancy", "surface_fcc100", "surface_fcc111", "bcc", "hcp",
         "eos_unary", "extreme")


def per_type(model_path: Path) -> dict:
    """Test RMSE (E meV/atom, F meV/Å) of a model, overall and per config_type."""
    from sus2md.io.data import load_frames
    from sus2md.model import load_model
    from sus2md.train.dataset import make_batches
    from sus2md.train.workflow import _metrics

    model = load_model(model_path, species=SPECIES)
    frames = load_frames(SHARED / "emt_alloy_test.extxyz", species=SPECIES)
    m = _metrics(model, frames, make_batches(frames, model.cutoff, 4000))
    return {k: {"E": round(v.get("E_rmse", float("nan")), 2), "F": round(v.get("F_rmse", float("nan")), 1),
                "n": v.get("n_configs")} for k, v in m.items()}


def random_baseline(n_labels: int, out: Path, training: dict, model_spec: dict, threads: int | None) -> Path:
    """The same shape and recipe on ``n_labels`` random configurations of the training set."""
    import ase.io
    import numpy as np

    from sus2md.train.config import config_from_dict
    from sus2md.train.workflow import train_model

    frames = ase.io.read(SHARED / "emt_alloy_train.extxyz", ":")
    pick = sorted(np.random.default_rng(0).permutation(len(frames))[:n_labels])
    out.mkdir(parents=True, exist_ok=True)
    ase.io.write(out / "random_train.extxyz", [frames[k] for k in pick])
    cfg = config_from_dict({"model": model_spec, "data": {"train": str(out / "random_train.extxyz"),
                                                          "validation_fraction": training.get("validation_fraction", 0.1),
                                                          "batch_atoms": training.get("batch_atoms", 4000)},
                            **{k: training[k] for k in ("loss", "optimizer", "early_stopping") if k in training},
                            "output": {"model": str(out / "random.mtp"), "progress": False}, "threads": threads},
                           source="baseline")
    train_model(cfg)
    return out / "random.mtp"


def table(rows: list[tuple[str, dict]]) -> list[str]:
    head = "| model | " + " | ".join(["all", *[t for t in TYPES]]) + " |"
    lines = [head, "|---|" + "---|" * (len(TYPES) + 1)]
    for name, m in rows:
        cells = []
        for t in ("all", *TYPES):
            v = m.get(t)
            cells.append("" if v is None else f"{v['E']} / {v['F']}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "learn_emt")
    ap.add_argument("--resume", action="store_true")
    args = ap.parse_args()
    if not (SHARED / "emt_alloy_test.extxyz").is_file():
        sys.exit(f"{SHARED} not found: this benchmark needs ../shared/data")
    load0 = [round(x, 2) for x in os.getloadavg()]
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "sus2md", "learn", str(EXAMPLE), "--out", str(args.out)]
    if args.resume:
        cmd.append("--resume")
    subprocess.run(cmd, check=True)
    learn_wall = time.perf_counter() - t0
    state = json.loads((args.out / "state.json").read_text())
    cfg = yaml.safe_load((args.out / "config.yaml").read_text())
    iterations = []
    for row in state["rows"]:
        k = int(row["iteration"])
        metrics = json.loads((args.out / f"iter_{k:03d}" / "test_metrics.json").read_text())
        iterations.append({"iteration": k, "labels": row["labels"], "wall_s": row.get("wall_s"),
                           "max_gamma": row.get("max_gamma"),
                           "test": {t: {"E": round(v.get("E_rmse", float("nan")), 2),
                                        "F": round(v.get("F_rmse", float("nan")), 1)} for t, v in metrics.items()}})
    n_labels = iterations[-1]["labels"]
    spec = {k: v for k, v in cfg["model"].items() if v is not None and k != "init_from"}
    t1 = time.perf_counter()
    base = random_baseline(n_labels, args.out / "baseline", cfg["training"], spec, cfg.get("threads"))
    base_wall = time.perf_counter() - t1
    final = {"active learning": per_type(args.out / "model.mtp"), f"random {n_labels}": per_type(base),
             "shipped (2150 configs)": per_type(ROOT / "models" / "emt_alloy.mtp")}
    rep = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "loadavg_start": load0,
           "loadavg_end": [round(x, 2) for x in os.getloadavg()], "status": state.get("status"),
           "labels": n_labels, "learn_wall_s": round(state.get("wall_s", learn_wall), 1),
           "baseline_train_s": round(base_wall, 1), "iterations": iterations, "final": final}
    lines = [f"# Active learning on the EMT alloy — {rep['date']}", "",
             f"`sus2md learn examples/learn_emt.yaml`: {rep['status']} after {len(iterations)} iterations, "
             f"{n_labels} labels, {rep['learn_wall_s']:.0f} s (2 cores; load {load0} -> {rep['loadavg_end']}).", "",
             "## After each iteration (test RMSE, E meV/atom / F meV/Å)", "",
             "| iteration | labels | wall (s) | max grade per condition | all | md | bulk_fcc_small | vacancy | surface_fcc100 | surface_fcc111 |",
             "|---:|---:|---:|---|---|---|---|---|---|---|"]
    for it in iterations:
        t = it["test"]
        g = ", ".join(f"{k} {v:.3g}" for k, v in (it["max_gamma"] or {}).items())
        cells = " | ".join(f"{t[c]['E']} / {t[c]['F']}" if c in t else "" for c in
                           ("all", "md", "bulk_fcc_small", "vacancy", "surface_fcc100", "surface_fcc111"))
        lines.append(f"| {it['iteration']} | {it['labels']} | {it['wall_s']} | {g} | {cells} |")
    lines += ["", "## Final models on the whole test set (E meV/atom / F meV/Å per config_type)", ""]
    lines += table(list(final.items()))
    lines += ["", f"The random baseline: the same model and recipe on {n_labels} configurations drawn at random "
              f"(seed 0) from emt_alloy_train.extxyz ({rep['baseline_train_s']:.0f} s).", ""]
    md = "\n".join(lines)
    print(md)
    res = ROOT / "benchmarks" / "results"
    res.mkdir(parents=True, exist_ok=True)
    (res / "learn_emt.md").write_text(md)
    (res / "learn_emt.json").write_text(json.dumps(rep, indent=1) + "\n")


if __name__ == "__main__":
    main()
