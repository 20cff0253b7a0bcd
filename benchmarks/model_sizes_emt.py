"""Accuracy against speed on the EMT alloy data: models of several sizes trained with one recipe
and budget, then timed in OpenMM MD (issue 13's table for users).

    python benchmarks/model_sizes_emt.py [--budget-min 15] [--shapes l2k2,l2k3,...] [--out runs/model_sizes]

For every shape: ``examples/train_emt.yaml`` with the model's L, K and scaling map replaced, Adam
with its cosine over the wall clock (``optimizer.lr_schedule: time``, ``max_time_min`` = the budget
less 0.75 min for the final evaluation), so each shape takes the steps it can afford; then test RMSE per
``config_type`` on ``../shared/data/emt_alloy_test.extxyz`` and MD throughput of the default
backend (``auto``) in OpenMM, 1 500-atom random 7-metal fcc alloy, float32, 1 thread.  Writes
``benchmarks/results/model_sizes_emt_<budget>min.{md,json}`` and the models under ``--out``.  Skips cleanly
without ../shared/data.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "examples" / "train_emt.yaml"
SHAPES = {  # name: (L, K, scaling map)
    "l2k2": (2, 2, "K"),
    "l2k3": (2, 3, "K"),
    "l2k3-LK": (2, 3, "LK"),
    "l2k4": (2, 4, "K"),
    "l3k3": (3, 3, "K"),
}
EVAL_MIN = 0.75  # minutes of the budget left for the final evaluation of the three sets
TYPES = ("all", "md", "bulk_fcc_small", "bulk_fcc_large", "vacancy", "surface_fcc100", "surface_fcc111", "bcc",
         "hcp", "eos_unary", "extreme")


def _config(shape: str, out: Path, budget_min: float):
    """``examples/train_emt.yaml`` for ``shape``, Adam annealed over the wall clock: the cosine runs
    over ``optimizer.lr_schedule: time``, so every shape ends its budget annealed whatever its cost
    per step; the final evaluation (~40 s) is inside the budget."""
    from sus2md.train.config import load_config

    cfg = load_config(CONFIG)
    L, K, smap = SHAPES[shape]
    cfg.model.L, cfg.model.K, cfg.model.scaling_map = L, K, smap
    cfg.optimizer.max_steps = 10 ** 7
    cfg.optimizer.max_time_min = budget_min - EVAL_MIN
    cfg.optimizer.lr_schedule = "time"
    cfg.early_stopping.validate_every = 1000
    cfg.output.model = out / f"emt_{shape}.mtp"
    cfg.output.checkpoint = out / f"emt_{shape}.ckpt.pt"
    cfg.output.log_json = out / f"emt_{shape}.log.json"
    cfg.output.log_csv = out / f"emt_{shape}.log.csv"
    cfg.output.progress = False
    cfg.threads = 2
    return cfg


def _md_rate(model_path: Path) -> float:
    from sus2md.bench.throughput import BenchConfig, run_bench
    from sus2md.model import load_model

    model = load_model(model_path)
    rows = run_bench(model, None, BenchConfig(sizes=(1500,), dtypes=("float32",), backends=("auto",), threads=(1,),
                                              steps=20, repeats=3, warmup=2))
    return float(rows[0]["atom_steps_per_s"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budget-min", type=float, default=15.0, help="wall-clock training budget per model")
    ap.add_argument("--shapes", default=",".join(SHAPES))
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "model_sizes")
    ap.add_argument("--md-rounds", type=int, default=2, help="interleaved MD timing rounds (the best counts)")
    args = ap.parse_args()
    if not (ROOT.parent / "shared" / "data" / "emt_alloy_train.extxyz").is_file():
        print("skip: ../shared/data not found")
        return 0
    from sus2md.train.workflow import train_model

    args.out.mkdir(parents=True, exist_ok=True)
    load0 = [round(x, 2) for x in os.getloadavg()]
    rows = []
    for shape in args.shapes.split(","):
        cfg = _config(shape, args.out, args.budget_min)
        t0 = time.perf_counter()
        res = train_model(cfg, echo=lambda s: print(f"[{shape}] {s}", flush=True))
        wall = time.perf_counter() - t0
        test = {t: {"E": round(v["E_rmse"], 2), "F": round(v["F_rmse"], 1)} for t, v in res.metrics["test"].items()}
        rows.append({"shape": shape, "L": SHAPES[shape][0], "K": SHAPES[shape][1], "map": SHAPES[shape][2],
                     "params": res.n_params, "steps": res.steps,
                     "stop": res.stop_reason, "train_s": round(wall, 1), "model": str(cfg.output.model),
                     "test": test})
        print(json.dumps(rows[-1]), flush=True)
    # MD after all training, in interleaved rounds (best of them), so every model sees the same load
    md_load0 = [round(x, 2) for x in os.getloadavg()]
    for _ in range(args.md_rounds):
        for r in rows:
            rate = _md_rate(Path(r["model"]))
            r["md_atom_steps_per_s"] = max(r.get("md_atom_steps_per_s", 0), round(rate))
            print(f"[md] {r['shape']}: {rate:,.0f} atom-steps/s", flush=True)
    md_load = [md_load0, [round(x, 2) for x in os.getloadavg()]]
    base = next((r["md_atom_steps_per_s"] for r in rows if r["shape"] == "l2k3"), None)
    lines = [f"# Accuracy against speed, EMT 7-metal alloy ({time.strftime('%Y-%m-%d')})", "",
             f"`python benchmarks/model_sizes_emt.py --budget-min {args.budget_min:g}`: every model trained by "
             f"`examples/train_emt.yaml` (Adam, the cosine over the wall clock: `optimizer.lr_schedule: time`) for {args.budget_min:g} min wall "
             f"on 2 cores (load {load0} at the start); MD: OpenMM, default backend, 1 500-atom random fcc alloy, "
             f"float32, 1 thread, best of {args.md_rounds} interleaved rounds over the models after all training "
             f"(load {md_load[0]} -> {md_load[1]}).", "",
             "Test RMSE, E meV/atom / F meV/Å:", "",
             "| model | L | K | map | parameters | train (s) | steps | MD atom-steps/s | MD cost vs l2k3 | "
             + " | ".join(TYPES) + " |",
             "|---|---:|---:|---|---:|---:|---:|---:|---:|" + "---|" * len(TYPES)]
    for r in rows:
        cost = f"{base / r['md_atom_steps_per_s']:.2f}×" if base else ""
        cells = " | ".join(f"{r['test'][t]['E']} / {r['test'][t]['F']}" if t in r["test"] else "" for t in TYPES)
        lines.append(f"| {r['shape']} | {r['L']} | {r['K']} | {r['map']} | {r['params']} | {r['train_s']:.0f} | "
                     f"{r['steps']} | {r['md_atom_steps_per_s']:,} | {cost} | {cells} |")
    md = "\n".join(lines) + "\n"
    print(md)
    res_dir = ROOT / "benchmarks" / "results"
    tag = f"model_sizes_emt_{args.budget_min:g}min"
    (res_dir / f"{tag}.md").write_text(md)
    (res_dir / f"{tag}.json").write_text(json.dumps({"load_start": load0, "md_load": md_load,
                                                     "budget_min": args.budget_min, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
