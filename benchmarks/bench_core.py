#!/usr/bin/env python
"""Core model speed (issue 2): `sus2md eval` over alloy_test.cfg and energy+forces of the
1500-atom Cu2Se cell, at 1 and 2 threads, float32 and float64.

    python benchmarks/bench_core.py [--shared ../shared] [--repeat 10] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

from sus2md.io.data import species_index
from sus2md.io.structures import read_structure
from sus2md.model import load_model
from sus2md.nn.calc import evaluate, graph_from_atoms


def time_eval_cli(shared: Path, threads: int) -> float:
    t = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "sus2md", "eval", str(shared / "reference/alloy.mtp"), str(shared / "reference/alloy_test.cfg"),
         "--threads", str(threads)], check=True, capture_output=True)
    return time.perf_counter() - t


def cu2se_call_ms(shared: Path, dtype: str, threads: int, repeat: int, compiled: bool = False) -> dict:
    torch.set_num_threads(threads)
    model = load_model(shared / "reference/cu2se.mtp", species=["Cu", "Se"], dtype=dtype)
    atoms = read_structure(shared / "reference/cu2se_1500.lammps-data", species=["Cu", "Se"])
    atoms.rattle(0.05, seed=0)
    atoms.arrays["mtp_type"] = species_index(atoms, ["Cu", "Se"])
    tdt = getattr(torch, dtype)
    t_nl, t_model = [], []
    if compiled:  # the 'compiled' MD backend: padded per-centre Verlet list (skin 0) + AOTInductor step
        from sus2md.export.aot import compiled_adapter

        adapter, _ = compiled_adapter(model, torch.from_numpy(atoms.arrays["mtp_type"]), dtype=dtype)
        adapter.skin = 0.0  # fresh list every call, as the eager path
        pos = torch.tensor(atoms.positions, dtype=torch.float64)
        cell = torch.tensor(atoms.cell.array, dtype=torch.float64)
        pbc = torch.ones(3, dtype=torch.bool)
        adapter(pos / 10, cell / 10)  # warm-up (and compilation)
        for _ in range(repeat):
            t0 = time.perf_counter()
            adapter._rebuild(pos, cell, pbc)
            t1 = time.perf_counter()
            f = torch.zeros((len(atoms), 3), dtype=tdt)
            with torch.no_grad():
                for chunk in adapter.chunks:
                    adapter.step(pos, f, *chunk)
            t2 = time.perf_counter()
            t_nl.append(t1 - t0)
            t_model.append(t2 - t1)
    else:
        run = (lambda g: evaluate(model, g, forces=True, virial=False))
        run(graph_from_atoms([atoms], model.cutoff, dtype=tdt))  # warm-up
        for _ in range(repeat):
            t0 = time.perf_counter()
            g = graph_from_atoms([atoms], model.cutoff, dtype=tdt)
            t1 = time.perf_counter()
            run(g)
            t2 = time.perf_counter()
            t_nl.append(t1 - t0)
            t_model.append(t2 - t1)
    best_nl, best_model = min(t_nl) * 1e3, min(t_model) * 1e3
    total = best_nl + best_model
    return {"dtype": dtype, "threads": threads, "path": "compiled padded (AOTInductor)" if compiled else "eager autograd", "neighbor_list_ms": round(best_nl, 2),
            "model_ms": round(best_model, 2), "total_ms": round(total, 2),
            "atom_steps_per_s": round(1500 / (total / 1e3))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared")
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rows = []
    print(f"# sus2md core benchmark — {platform.processor() or platform.machine()}, torch {torch.__version__}")
    for threads in (1, 2):  # noqa: B007
        wall = time_eval_cli(args.shared, threads)
        rows.append({"bench": "eval alloy_test.cfg (2417 configs, forces)", "threads": threads, "wall_s": round(wall, 2)})
        print(f"sus2md eval alloy.mtp alloy_test.cfg  threads={threads}: {wall:.2f} s wall (incl. start-up)")
    print(f"{'path':<24}{'dtype':<8}{'threads':>8}{'nlist ms':>10}{'model ms':>10}{'total ms':>10}{'atom-steps/s':>14}")
    for compiled in (False, True):
        for dtype in ("float32", "float64"):
            for threads in (1, 2):
                r = cu2se_call_ms(args.shared, dtype, threads, args.repeat, compiled)
                rows.append({"bench": "cu2se 1500 energy+forces", **r})
                print(f"{r['path']:<24}{dtype:<8}{threads:>8}{r['neighbor_list_ms']:>10}{r['model_ms']:>10}{r['total_ms']:>10}{r['atom_steps_per_s']:>14}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
