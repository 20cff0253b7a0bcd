"""Train the shipped EMT alloy model (models/emt_alloy.mtp) and report its errors.

    python benchmarks/train_emt.py [--config examples/train_emt.yaml] [--out runs/train_emt]

Trains with ``examples/train_emt.yaml`` (l2k3, 7 species, train / val / test of
``../shared/data``), then writes ``<out>/summary.json``: parameter count, wall time, stop reason,
and train/validation/test RMSEs per ``config_type``.  Skips cleanly without ../shared/data.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=str(ROOT / "examples" / "train_emt.yaml"))
    ap.add_argument("--out", default=str(ROOT / "runs" / "train_emt"))
    ap.add_argument("--max-time-min", type=float, default=None)
    ap.add_argument("--max-train", type=int, default=None)
    args = ap.parse_args()

    from sus2md.train.config import load_config
    from sus2md.train.workflow import format_metrics, train_model

    cfg = load_config(args.config)
    if not cfg.data.train.is_file():
        print(f"skip: {cfg.data.train} not found")
        return 0
    out = Path(args.out)
    cfg.output.model = out / "emt_alloy.mtp"
    cfg.output.checkpoint = out / "emt_alloy.ckpt.pt"
    cfg.output.log_json = out / "train_log.json"
    cfg.output.log_csv = out / "train_log.csv"
    cfg.output.progress = False
    if args.max_time_min:
        cfg.optimizer.max_time_min = args.max_time_min
    if args.max_train:
        cfg.data.max_train = args.max_train
    t0 = time.perf_counter()
    res = train_model(cfg, echo=lambda s: print(s, flush=True))
    wall = time.perf_counter() - t0
    summary = {"config": cfg.model_dump(mode="json"), "n_params": res.n_params, "steps": res.steps,
               "stop_reason": res.stop_reason, "wall_s": wall, "metrics": res.metrics}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"{res.n_params} parameters, {res.steps} steps ({res.stop_reason}), wall {wall:.0f} s")
    print(format_metrics(res.metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
