"""The production MD path on a CPU (issue 15): default backend speed, per-atom cost vs size,
start-up time with and without the compiled step cached, and threads when another process keeps a
core busy.

Cu2Se, the authors' cu2se.mtp on their 1500-atom cell (../shared/reference), OpenMM CPU platform.

1. Throughput, 1 thread, interleaved rounds in one process (``sus2md.bench.throughput``): the
   default backend (``auto``) and TorchForce (``torch``), float32 and float64, at 1.5k and 12k
   atoms (velocity Verlet, 1 fs).  The authors' LAMMPS pair style (``pair_style sus2mtp``, C++)
   ran this cell at about 3.2e4 atom-steps/s per core (CPU time, measured on this machine kind by
   a colleague; the figure is quoted, LAMMPS is not rebuilt here).
2. Time to the first MD step of ``sus2md run`` (a fresh process: imports, model, compiled step,
   Context, one step), cold (empty compile cache) and warm (cached).
3. ``sus2md run`` (324-atom Cu2Se, 200 NVT steps) with the default threads and with --threads 1
   and 2, while a busy-loop process occupies one core, interleaved; atom-steps/s from
   provenance.json.

Usage::

    python benchmarks/production_path.py [--out benchmarks/results] [--quick]

Prints a Markdown report and writes ``production_path_cu2se.{json,md}``; every figure carries
the load average at its start.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SUS2MD_SHARED", ROOT.parent / "shared")) / "reference"
PY = sys.executable


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def throughput(quick: bool) -> list[dict]:
    import torch

    from sus2md.bench import throughput as lib
    from sus2md.io.structures import read_structure
    from sus2md.model import load_model

    torch.set_num_threads(1)
    pot = load_model(SHARED / "cu2se.mtp", species=["Cu", "Se"])
    atoms = read_structure(SHARED / "cu2se_1500.lammps-data", species=["Cu", "Se"])
    cfg = lib.BenchConfig(sizes=[1500] if quick else [1500, 12000], dtypes=["float32", "float64"],
                          backends=["auto", "torch"], threads=[1], steps=5 if quick else 20,
                          repeats=2 if quick else 3, warmup=2)
    start = loadavg()
    rows = lib.run_bench(pot, atoms, cfg)
    for r in rows:
        r["loadavg_start"], r["loadavg_end"] = start, loadavg()
    return rows


PROTOCOL = """structure: {{path: {structure}, species: [Cu, Se]}}
model: {{path: {model}, species: [Cu, Se]}}
dtype: float32
seed: 1
stages:
  - type: nvt
    steps: {steps}
    timestep_fs: 2.0
    temperature_K: 600
    report_interval_steps: {steps}
    trajectory_interval_steps: {steps}
"""


def first_step_seconds(tmp: Path, cache: Path, structure: Path, name: str) -> float:
    """Wall seconds of ``sus2md run`` (1 step) in a fresh process: start-up to the first step."""
    proto = tmp / f"{name}.yaml"
    proto.write_text(PROTOCOL.format(structure=structure, model=SHARED / "cu2se.mtp", steps=1))
    env = {**os.environ, "SUS2MD_CACHE_DIR": str(cache), "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    subprocess.run([PY, "-m", "sus2md", "run", str(proto), "--out", str(tmp / f"run_{name}"), "--threads", "1",
                    "--no-progress"], check=True, env=env, capture_output=True)
    return time.perf_counter() - t0


def startup(tmp: Path) -> dict:
    cache = tmp / "cache"
    structure = SHARED / "cu2se_1500.lammps-data"
    out = {"loadavg_start": loadavg()}
    out["cold_s"] = round(first_step_seconds(tmp, cache, structure, "cold"), 1)
    out["warm_s"] = [round(first_step_seconds(tmp, cache, structure, f"warm{k}"), 1) for k in range(3)]
    out["loadavg_end"] = loadavg()
    return out


def busy_core(tmp: Path, quick: bool) -> dict:
    from ase.spacegroup import crystal

    atoms = crystal(["Se", "Cu"], basis=[(0, 0, 0), (0.25, 0.25, 0.25)], spacegroup=225,
                    cellpar=[5.85] * 3 + [90] * 3).repeat(3)
    structure = tmp / "cu2se_324.extxyz"
    atoms.write(structure)
    steps = 100 if quick else 200
    proto = tmp / "busy.yaml"
    proto.write_text(PROTOCOL.format(structure=structure, model=SHARED / "cu2se.mtp", steps=steps))
    spin = subprocess.Popen([PY, "-c", "while True: pass"])  # one core kept busy
    time.sleep(2.0)
    rates: dict[str, list[float]] = {"default": [], "1": [], "2": []}
    threads_used: dict[str, int] = {}
    out = {"loadavg_start": loadavg(), "atoms": len(atoms), "steps": steps}
    try:
        for k in range(2 if quick else 3):
            for label in rates:
                run_dir = tmp / f"busy_{label}_{k}"
                cmd = [PY, "-m", "sus2md", "run", str(proto), "--out", str(run_dir), "--no-progress"]
                if label != "default":
                    cmd += ["--threads", label]
                env = {k2: v for k2, v in os.environ.items() if k2 != "OMP_NUM_THREADS"}  # as a user has it
                subprocess.run(cmd, check=True, env=env, capture_output=True)
                prov = json.loads((run_dir / "provenance.json").read_text())
                rates[label].append(prov["stages"][0]["atom_steps_per_s"])
                threads_used[label] = prov["engine"]["threads"]
    finally:
        spin.kill()
    out["atom_steps_per_s"] = {k: [round(x) for x in v] for k, v in rates.items()}
    out["threads_used"] = threads_used
    best_explicit = max(max(rates["1"]), max(rates["2"]))
    out["default_vs_best_explicit"] = round(max(rates["default"]) / best_explicit, 2)
    out["loadavg_end"] = loadavg()
    return out


def markdown(rep: dict) -> str:
    lines = [f"# Production path, Cu2Se (cu2se.mtp), CPU — {rep['date']}", "",
             f"- machine: {rep['machine']}; commit {rep['commit']}", f"- command: `{rep['command']}`", "",
             "## Throughput in OpenMM, 1 thread (interleaved rounds, best of k)", "",
             "| atoms | backend (resolved) | dtype | ms/step | atom-steps/s | vs LAMMPS sus2mtp 3.2e4/core | load |",
             "|---:|---|---|---:|---:|---:|---|"]
    for r in rep["throughput"]:
        if "not_measured" in r:
            continue
        lines.append(f"| {r['n_atoms']} | {r['backend']} ({r.get('resolved_backend', '')}) | {r['dtype']} | "
                     f"{1e3 * r['best_s_per_step']:.1f} | {r['atom_steps_per_s']:,.0f} | "
                     f"{r['atom_steps_per_s'] / 3.2e4:.2f}x | {r['loadavg_start']} |")
    per_atom = rep.get("per_atom_cost_12k_over_1p5k")
    if per_atom:
        lines += ["", f"Per-atom cost 12k / 1.5k atoms (default backend): {per_atom}"]
    s = rep["startup"]
    lines += ["", "## Time to the first MD step (`sus2md run`, fresh process, 1500 atoms, float32, 1 thread)", "",
              f"- cold (compiled step not cached: compiles): {s['cold_s']} s",
              f"- warm (cached): {', '.join(map(str, s['warm_s']))} s; load {s['loadavg_start']} -> {s['loadavg_end']}"]
    b = rep["busy_core"]
    lines += ["", f"## Threads with one core busy ({b['atoms']} atoms, {b['steps']} NVT steps, float32)", "",
              "| threads | atom-steps/s (runs) | threads used |", "|---|---|---:|"]
    for k, v in b["atom_steps_per_s"].items():
        lines.append(f"| {k} | {', '.join(f'{x:,}' for x in v)} | {b['threads_used'][k]} |")
    lines += ["", f"default / best explicit: {b['default_vs_best_explicit']}; load {b['loadavg_start']} -> "
              f"{b['loadavg_end']}", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--quick", action="store_true", help="fewer sizes, steps and repeats (a smoke run)")
    args = ap.parse_args()
    if not (SHARED / "cu2se.mtp").is_file():
        sys.exit(f"{SHARED} not found: this benchmark needs ../shared/reference")
    from sus2md.engine.provenance import cpu_model

    rep = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "machine": f"{cpu_model()}, {os.cpu_count()} cores",
           "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                    cwd=ROOT).stdout.strip(),
           "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])}
    with tempfile.TemporaryDirectory() as tmp:
        rep["startup"] = startup(Path(tmp))
        rep["throughput"] = throughput(args.quick)
        auto = {r["n_atoms"]: r for r in rep["throughput"] if r.get("backend") == "auto" and r["dtype"] == "float32"}
        if len(auto) == 2:
            small, big = sorted(auto)
            rep["per_atom_cost_12k_over_1p5k"] = round(auto[small]["atom_steps_per_s"] / auto[big]["atom_steps_per_s"], 3)
        rep["busy_core"] = busy_core(Path(tmp), args.quick)
    md = markdown(rep)
    print(md)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "production_path_cu2se.json").write_text(json.dumps(rep, indent=1) + "\n")
    (args.out / "production_path_cu2se.md").write_text(md)


if __name__ == "__main__":
    main()
