#!/usr/bin/env python
"""Side-by-side peer benchmark on the EMT 7-metal alloy data: SUS2 (sus2md) vs MACE vs EMT.

One rerunnable script, run with sus2md's own venv::

    .venv/bin/python benchmarks/peers/run_peers.py [--mace-epochs 2] [--limit 300] [--stages all]

Stages (each writes its result under ``--work`` (default ``runs/peers/``, git-ignored) and is
skipped when that result exists, unless ``--force STAGE``):

1. ``venv``   -- a separate venv for MACE (``/tmp/mace-venv``, CPU torch 2.13.0 from the local
   wheel) and, if it builds, asap3;
2. ``sus2``   -- the SUS2 model: ``models/emt_alloy.mtp`` if present (training time taken from
   ``models/README.md``), else ``sus2md train examples/train_emt.yaml`` with a short time budget;
3. ``mace``   -- trains a small MACE (32x0e, max_L 0, r_max 5, 2 layers, float32) on
   ``emt_alloy_train1000`` for ``--mace-epochs`` epochs (wall time recorded);
4. ``calc``   -- ``../shared/tools/bench_calc.py`` for SUS2 (float64 and float32), MACE, ASE EMT,
   asap3 EMT: accuracy on ``emt_alloy_test`` (MACE on the first ``--limit`` configurations, SUS2
   and EMT on that subset too and SUS2 on the full set) and MD speed at 500/2048 atoms, 1 thread;
5. ``openmm`` -- ``sus2md bench`` with the EMT model through OpenMM at 1.5k and 12k atoms;
6. ``results``-- writes ``benchmarks/RESULTS.md`` from whatever results exist.

The machine is shared: absolute speeds are load-dependent; compare the ratios, and read the load
averages recorded with each stage.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("SUS2MD_SHARED", ROOT.parent / "shared"))
DATA = SHARED / "data"
BENCH_CALC = SHARED / "tools" / "bench_calc.py"
MACE_VENV = Path(os.environ.get("MACE_VENV", "/tmp/mace-venv"))
TORCH_PIN = "torch==2.13.0"
TAGS = ("sus2_f64", "sus2_f64_subset", "sus2_f32", "sus2_f32_pair", "mace_f32", "emt", "asap3_emt")
STAGES = ("venv", "mace", "sus2", "calc", "openmm", "results")  # MACE first: the long pole
MACE_ARGS = ["--model", "MACE", "--hidden_irreps", "32x0e", "--max_L", "0", "--r_max", "5.0",
             "--num_interactions", "2", "--correlation", "3", "--batch_size", "10", "--E0s", "average",
             "--default_dtype", "float32", "--device", "cpu", "--seed", "0", "--lr", "0.01"]


def log(msg: str) -> None:
    print(f"[{datetime.datetime.now().strftime('%H:%M:%S')}] {msg}", flush=True)


def sh(cmd: list[str], *, env: dict | None = None, cwd: Path | None = None, logfile: Path | None = None,
       check: bool = True) -> tuple[int, float]:
    """Run ``cmd``; return (exit code, wall seconds).  Output goes to ``logfile`` when given."""
    log("$ " + " ".join(shlex.quote(str(c)) for c in cmd))
    t0 = time.time()
    full_env = {**os.environ, **(env or {})}
    if logfile:
        with open(logfile, "a") as fh:
            rc = subprocess.run([str(c) for c in cmd], env=full_env, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT).returncode
    else:
        rc = subprocess.run([str(c) for c in cmd], env=full_env, cwd=cwd).returncode
    dt = time.time() - t0
    if check and rc != 0:
        raise SystemExit(f"command failed ({rc}) after {dt:.0f} s: {' '.join(map(str, cmd))}"
                         + (f"; see {logfile}" if logfile else ""))
    return rc, dt


def save(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=1))


def load(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def threads_env(n: int) -> dict:
    return {"OMP_NUM_THREADS": str(n), "MKL_NUM_THREADS": str(n), "OMP_WAIT_POLICY": "PASSIVE"}


# ------------------------------------------------------------------ 1. venv


def stage_venv(work: Path) -> dict:
    py = MACE_VENV / "bin" / "python"
    lg = work / "venv.log"
    constraints = work / "torch-constraint.txt"
    constraints.write_text(TORCH_PIN + "\n")
    if not py.exists():
        sh(["python3", "-m", "venv", MACE_VENV], logfile=lg)
    pip = [MACE_VENV / "bin" / "pip", "install", "-c", constraints]
    if subprocess.run([py, "-c", "import mace"], capture_output=True).returncode != 0:
        sh([MACE_VENV / "bin" / "pip", "install", TORCH_PIN], logfile=lg)
        sh(pip + ["mace-torch"], logfile=lg)
    asap_ok = subprocess.run([py, "-c", "import asap3"], capture_output=True).returncode == 0
    if not asap_ok:
        rc, _ = sh(pip + ["asap3"], logfile=lg, check=False)
        asap_ok = rc == 0
    ver = subprocess.run([py, "-c", "import torch, mace, ase; print(torch.__version__, mace.__version__, ase.__version__)"],
                         capture_output=True, text=True).stdout.split()
    return {"venv": str(MACE_VENV), "torch": ver[0], "mace": ver[1], "ase": ver[2], "asap3": asap_ok}


# ------------------------------------------------------------------ 2. SUS2 model


def _readme_training_note() -> str | None:
    """The ``Training: ...`` line of models/README.md (how the shipped model was trained)."""
    readme = ROOT / "models" / "README.md"
    if not readme.is_file():
        return None
    return next((ln.split(":", 1)[1].strip() for ln in readme.read_text().splitlines()
                 if ln.startswith("Training:")), None)


def stage_sus2(work: Path, train_min: float) -> dict:
    model = ROOT / "models" / "emt_alloy.mtp"
    if model.is_file():
        return {"model": str(model), "source": "models/emt_alloy.mtp (trained by the training engineer)",
                "training": _readme_training_note() or "see models/README.md"}
    run = ROOT / "runs" / "train_emt"  # benchmarks/train_emt.py: the same config, summary with wall time
    if (run / "emt_alloy.mtp").is_file() and (run / "summary.json").is_file():
        sm = json.loads((run / "summary.json").read_text())
        frozen = work / "sus2_emt.mtp"  # a copy: a later training run may overwrite runs/train_emt
        shutil.copyfile(run / "emt_alloy.mtp", frozen)
        return {"model": str(frozen), "source": "runs/train_emt/emt_alloy.mtp (benchmarks/train_emt.py, "
                "examples/train_emt.yaml)", "training": f"{sm['wall_s'] / 60:.1f} min wall, {sm.get('steps')} L-BFGS steps "
                f"({sm.get('stop_reason')}), {sm['config'].get('threads')} thread", "wall_s": sm["wall_s"]}
    import yaml

    cfg_path = ROOT / "examples" / "train_emt.yaml"
    cfg = yaml.safe_load(cfg_path.read_text())
    for k, v in cfg["data"].items():
        if k in ("train", "validation", "test") and v:
            cfg["data"][k] = str((cfg_path.parent / v).resolve())
    cfg["optimizer"]["max_time_min"] = float(train_min)
    out = work / "sus2_emt.mtp"
    cfg["output"]["model"] = str(out)
    short = work / "train_emt_short.yaml"
    short.write_text(yaml.safe_dump(cfg, sort_keys=False))
    _, dt = sh([ROOT / ".venv" / "bin" / "sus2md", "train", short], logfile=work / "sus2_train.log")
    return {"model": str(out), "source": f"sus2md train {short} (examples/train_emt.yaml, max_time_min={train_min})",
            "training": f"{dt / 60:.1f} min wall (L-BFGS + linear solves, {cfg['threads']} thread)", "wall_s": dt}


# ------------------------------------------------------------------ 3. MACE


def _ref_keyed(src: Path, dst: Path) -> None:
    """Copy of an extxyz with labels under REF_* keys (MACE reads info/arrays, not the calculator)."""
    from ase.io import read, write

    frames = []
    for a in read(src, ":"):
        r = a.calc.results
        b = a.copy()
        b.calc = None
        b.info["REF_energy"] = float(r["energy"])
        b.arrays["REF_forces"] = r["forces"].copy()
        if "stress" in r:
            b.info["REF_stress"] = r["stress"].copy()
        frames.append(b)
    write(dst, frames, format="extxyz")


def stage_mace(work: Path, epochs: int, threads: int) -> dict:
    wd = work / "mace"
    wd.mkdir(exist_ok=True)
    train, val = wd / "train_ref.extxyz", wd / "val_ref.extxyz"
    if not train.is_file():
        _ref_keyed(DATA / "emt_alloy_train1000.extxyz", train)
        _ref_keyed(DATA / "emt_alloy_val.extxyz", val)
    cmd = [MACE_VENV / "bin" / "mace_run_train", "--name", "emt_mace", "--work_dir", wd,
           "--train_file", train, "--valid_file", val, "--energy_key", "REF_energy", "--forces_key", "REF_forces",
           "--stress_key", "REF_stress", "--max_num_epochs", str(epochs), "--restart_latest", *MACE_ARGS]
    load0 = os.getloadavg()
    _, dt = sh(cmd, env=threads_env(threads), logfile=work / "mace_train.log")
    text = "\n".join(p.read_text(errors="replace") for p in sorted((wd / "logs").glob("*.log"))) if (wd / "logs").is_dir() else ""
    m = re.findall(r"Total number of parameters:\s*(\d+)", text) or re.findall(r"[Nn]umber of parameters:?\s*(\d+)", text)
    done = re.findall(r"Epoch (\d+)", text)
    model = next((p for p in (wd / "emt_mace.model", wd / "emt_mace_compiled.model") if p.is_file()), None)
    if model is None:
        raise SystemExit(f"MACE training ended without a model file in {wd}; see {work / 'mace_train.log'}")
    return {"model": str(model), "epochs": epochs, "last_epoch_logged": int(done[-1]) if done else None,
            "wall_s": dt, "threads": threads, "parameters": int(m[-1]) if m else None, "loadavg_start": load0,
            "command": " ".join(map(str, cmd))}


# ------------------------------------------------------------------ 4. bench_calc


def _bench_calc(work: Path, python: Path, calc: str, tag: str, args: list[str], env: dict | None = None,
                force: bool = False) -> bool:
    """One bench_calc run into ``calc_<tag>.jsonl``; skipped when that file exists (unless ``force``)."""
    out = work / f"calc_{tag}.jsonl"
    if out.exists() and not force:
        log(f"calc {tag}: cached ({out.name})")
        return False
    out.unlink(missing_ok=True)
    e = {**threads_env(1), "PYTHONPATH": str(Path(__file__).parent), **(env or {})}
    load0 = os.getloadavg()
    sh([python, BENCH_CALC, "--calc", calc, "--tag", tag, "--json", out, *args], env=e, cwd=work,
       logfile=work / "calc.log")
    with open(out, "a") as fh:  # the load around this run, for the table
        fh.write(json.dumps({"what": "load", "tag": tag, "start": load0, "end": os.getloadavg()}) + "\n")
    return True


def stage_calc(work: Path, limit: int, steps: int, steps_fast: int, sus2_model: str | None, mace: dict | None, asap: bool,
               force: bool, sizes: str = "1500,12000") -> dict:
    """bench_calc for every calculator available now; each result is cached on its own, so this
    stage can run before MACE has finished training and again afterwards."""
    test = DATA / "emt_alloy_test.extxyz"
    speed = ["--speed", "--sizes", sizes, "--steps", str(steps_fast)]
    speed_mace = ["--speed", "--sizes", sizes, "--steps", str(steps)]  # MACE is ~100x slower per step
    main_py, mace_py = ROOT / ".venv" / "bin" / "python", MACE_VENV / "bin" / "python"
    sus = {"SUS2MD_PEER_MODEL": sus2_model or ""}
    sus2_calc = "py:sus2md_peer_factory:make"
    _bench_calc(work, main_py, "emt", "emt", ["--test", test, "--limit", str(limit), *speed], force=force)
    if asap:
        _bench_calc(work, mace_py, "py:sus2md_peer_factory:make_asap", "asap3_emt", speed, force=force)
    if sus2_model:
        _bench_calc(work, main_py, sus2_calc, "sus2_f64", ["--test", test, *speed], {**sus, "SUS2MD_DTYPE": "float64"}, force)
        _bench_calc(work, main_py, sus2_calc, "sus2_f64_subset", ["--test", test, "--limit", str(limit)],
                    {**sus, "SUS2MD_DTYPE": "float64"}, force)
        _bench_calc(work, main_py, sus2_calc, "sus2_f32", speed, {**sus, "SUS2MD_DTYPE": "float32"}, force)
    if mace and sus2_model:
        # SUS2 float32 speed again right before MACE: the SUS2/MACE ratio comes from adjacent runs
        if _bench_calc(work, mace_py, f"mace:{mace['model']}", "mace_f32",
                       ["--test", test, "--limit", str(limit), *speed_mace], {"MACE_DTYPE": "float32"}, force):
            _bench_calc(work, main_py, sus2_calc, "sus2_f32_pair", speed, {**sus, "SUS2MD_DTYPE": "float32"}, True)
    return {"limit": limit, "steps": steps, "steps_fast": steps_fast, "sizes": sizes, "sus2_model": sus2_model, "mace": bool(mace),
            "tags": sorted(p.stem[5:] for p in work.glob("calc_*.jsonl"))}


# ------------------------------------------------------------------ 5. OpenMM


def stage_openmm(work: Path, sus2_model: str, sizes: str, steps: int) -> dict:
    js, md = work / "openmm.json", work / "openmm.md"
    cmd = [ROOT / ".venv" / "bin" / "sus2md", "bench", sus2_model, "--sizes", sizes, "--backends", "model,torch,compiled",
           "--dtypes", "float32,float64", "--threads", "1", "--steps", str(steps), "--repeats", "3",
           "--json", js, "--markdown", md]
    _, dt = sh(cmd, logfile=work / "openmm.log")
    return {"json": str(js), "command": " ".join(map(str, cmd[1:])).replace(str(ROOT / ".venv" / "bin") + "/", ""),
            "wall_s": dt}


# ------------------------------------------------------------------ 6. RESULTS.md


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.is_file() else []


def _acc(rows: list[dict]) -> dict | None:
    return next((r for r in rows if r.get("what") == "accuracy"), None)


def _md_speed(rows: list[dict]) -> dict[int, float]:
    return {r["atoms"]: r["atom_steps_per_s"] for r in rows if r.get("what") == "md_speed"}


def _f(x, nd=1) -> str:
    return "—" if x is None else f"{x:,.{nd}f}".replace(",", " ")


def _ratio(a, b) -> str:
    return "—" if not a or not b else f"{a / b:.2f}"


def _mace_params(mace: dict) -> int | None:
    if mace.get("parameters") or not mace.get("model"):
        return mace.get("parameters")
    code = ("import torch; m = torch.load(%r, map_location='cpu', weights_only=False); "
            "print(sum(p.numel() for p in m.parameters()))" % mace["model"])
    r = subprocess.run([MACE_VENV / "bin" / "python", "-c", code], capture_output=True, text=True)
    return int(r.stdout.split()[-1]) if r.returncode == 0 and r.stdout.split() else None


def _sus2_params(path: str) -> int | None:
    try:
        from sus2md.io.mtp import read_mtp

        return int(read_mtp(path).parameter_counts()["total"])
    except Exception:  # noqa: BLE001  (a missing model only blanks a cell)
        return None


def stage_results(work: Path, state: dict, argv: list[str]) -> Path:
    import platform

    calc = {t: _jsonl(work / f"calc_{t}.jsonl") for t in TAGS}
    sp = {t: _md_speed(r) for t, r in calc.items()}
    sizes = sorted({n for d in sp.values() for n in d})
    sus2, mace, venv = state.get("sus2") or {}, state.get("mace") or {}, state.get("venv") or {}
    lim = (state.get("calc") or {}).get("limit")
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    lines = [
        "# Peer benchmark: SUS2 (sus2md) vs MACE vs EMT on the EMT 7-metal alloy data", "",
        f"- date: {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='minutes')}; machine: {cpu}, "
        f"{os.cpu_count()} logical cores, no GPU; possibly shared with other jobs (1-minute load average at the start "
        "and end of each run in the last column) — absolute speeds are load-dependent; the ratios (same machine, "
        "same harness, adjacent runs) are the result to quote.",
        "- commands: " + "; ".join(f"{k}: `{(state.get(k) or {}).get('invocation', ' '.join(argv))}`"
                                   for k in ("mace", "sus2", "calc", "openmm") if state.get(k))
        + f" (rerunnable; stages cache their results in `{work.relative_to(ROOT) if work.is_relative_to(ROOT) else work}`)",
        "- harness: `../shared/tools/bench_calc.py` (peer-neutral): accuracy on `emt_alloy_test.extxyz`, "
        "MD speed = ASE velocity Verlet, 1 fs, random 7-metal fcc alloy, 1 thread (`OMP_NUM_THREADS=1`).",
        f"- SUS2: {sus2.get('source', '—')}; training: {sus2.get('training', '—')}; "
        f"parameters {_f(_sus2_params(sus2['model']) if sus2.get('model') else None, 0)}.",
        f"- MACE {venv.get('mace', '?')} (torch {venv.get('torch', '?')} CPU, own venv `{venv.get('venv', MACE_VENV)}`): "
        "32x0e, max_L 0, r_max 5, 2 interactions, correlation 3, batch 10, lr 0.01, E0s average, float32, "
        f"trained on `emt_alloy_train1000` (val `emt_alloy_val`): {mace.get('epochs', '—')} epochs, "
        f"{_f((mace.get('wall_s') or 0) / 60 or None)} min wall on {mace.get('threads', '—')} threads; "
        f"parameters {_f(_mace_params(mace), 0)}.",
        f"- accuracy subset: MACE, EMT and the `SUS2 (subset)` row use the first {lim} test configurations "
        "(MACE is slow to evaluate); `SUS2 (full)` uses all 768.",
        f"- asap3: {'installed' if venv.get('asap3') else 'not installed (build failed or not attempted)'}; "
        "its C++ EMT is a different parameterisation, so only its speed is meaningful.", "",
        "## Side by side", "",
        "| model | test configs | E RMSE meV/atom | F RMSE meV/Å | S RMSE GPa | " + " | ".join(f"MD {n} atoms (atom-steps/s)" for n in sizes) + " | load |",
        "|---|---:|---:|---:|---:|" + "---:|" * len(sizes) + "---|",
    ]
    rows = [("SUS2 float64 (full test)", "sus2_f64"), ("SUS2 float64 (subset)", "sus2_f64_subset"),
            ("SUS2 float32", "sus2_f32"), ("SUS2 float32 (run next to MACE)", "sus2_f32_pair"),
            ("MACE float32", "mace_f32"), ("ASE EMT (reference)", "emt"),
            ("asap3 EMT (C++)", "asap3_emt")]
    for label, tag in rows:
        a = _acc(calc[tag])
        if not calc[tag]:
            lines.append(f"| {label} | not run |" + " |" * (4 + len(sizes)))
            continue
        speed = sp.get(tag if tag != "sus2_f64_subset" else "", {})
        lines.append(f"| {label} | {a['configs'] if a else '—'} | {_f(a and a['E_rmse_meV_atom'])} | "
                     f"{_f(a and a['F_rmse_meV_A'])} | {_f(a and a.get('S_rmse_GPa'), 3)} | "
                     + " | ".join(_f(speed.get(n), 0) for n in sizes) + f" | {_load_cell(calc[tag])} |")
    if sp.get("sus2_f32") and sp.get("sus2_f32_pair"):
        spread = [abs(sp["sus2_f32_pair"][n] / sp["sus2_f32"][n] - 1) for n in sizes if n in sp["sus2_f32"] and n in sp["sus2_f32_pair"]]
        if spread:
            lines += ["", f"Run-to-run noise: SUS2 float32 was measured twice in this invocation (rows 3 and 4); the two "
                      f"differ by up to {100 * max(spread):.0f} %. Treat ratios within that band as equal."]
    lines += ["", "## Ratios (adjacent runs of this invocation)", "",
              "| ratio | " + " | ".join(f"{n} atoms" for n in sizes) + " |", "|---|" + "---:|" * len(sizes)]
    pair = "sus2_f32_pair" if sp.get("sus2_f32_pair") else "sus2_f32"
    for label, a, b in [("MD speed SUS2 f32 / MACE f32", pair, "mace_f32"),
                        ("MD speed SUS2 f64 / MACE f32", "sus2_f64", "mace_f32"),
                        ("MD speed SUS2 f64 / ASE EMT", "sus2_f64", "emt"),
                        ("MD speed SUS2 f32 / ASE EMT", "sus2_f32", "emt"),
                        ("MD speed SUS2 f64 / asap3 EMT", "sus2_f64", "asap3_emt")]:
        lines.append(f"| {label} | " + " | ".join(_ratio(sp[a].get(n), sp[b].get(n)) for n in sizes) + " |")
    ms, mm = _acc(calc["sus2_f64_subset"]), _acc(calc["mace_f32"])
    if ms and mm:
        lines += ["", f"Error ratios on the same {ms['configs']} test configurations (MACE / SUS2; > 1 means SUS2 is more "
                  f"accurate): energy {_ratio(mm['E_rmse_meV_atom'], ms['E_rmse_meV_atom'])}, forces "
                  f"{_ratio(mm['F_rmse_meV_A'], ms['F_rmse_meV_A'])}"
                  + (f", stress {_ratio(mm.get('S_rmse_GPa'), ms.get('S_rmse_GPa'))}" if mm.get("S_rmse_GPa") else "") + "."]
    lines += ["", "Accuracy reflects the training budgets above: MACE here is a short run (the peers' MACE "
              "reference in `../shared/data/README.md`, 12 epochs / 49 min, reached 104 meV/atom and 209 meV/Å on the "
              "test set, still above SUS2's errors). Speed does not depend on training."]
    omm = load(Path((state.get("openmm") or {}).get("json", "/nonexistent")))
    if omm:
        lines += ["", "## SUS2 through OpenMM (`sus2md bench`, CPU platform, 1 thread)", "",
                  f"`{state['openmm']['command']}` — load average at start {', '.join(f'{x:.1f}' for x in omm['machine']['loadavg'])}.", "",
                  "| atoms | backend | dtype | ms/step | atom-steps/s | × model alone | CPU ms/step |", "|---:|---|---|---:|---:|---:|---:|"]
        for r in omm["results"]:
            lines.append(f"| {r['n_atoms']} | {_BACKEND_LABEL.get(r['backend'], r['backend'])} | {r['dtype']} | "
                         f"{1e3 * r['best_s_per_step']:.1f} | {_f(r['atom_steps_per_s'], 0)} | {_f(r.get('vs_model_alone'), 2)} | "
                         f"{_f(r.get('best_cpu_s_per_step') and 1e3 * r['best_cpu_s_per_step'])} |")
        mace_sp = sp.get("mace_f32", {})
        comp = [r for r in omm["results"] if r["backend"] == "compiled" and r["dtype"] == "float32"]
        if mace_sp and comp:
            lines += ["", "### SUS2 MD in OpenMM (compiled backend, float32) vs MACE MD (ASE harness), 1 thread", "",
                      "| SUS2 atoms | SUS2 atom-steps/s | MACE atoms | MACE atom-steps/s | ratio |", "|---:|---:|---:|---:|---:|"]
            for r in comp:
                n_m = min(mace_sp, key=lambda n: abs(n - r["n_atoms"]))  # the nearest size MACE ran
                lines.append(f"| {r['n_atoms']} | {_f(r['atom_steps_per_s'], 0)} | {n_m} | {_f(mace_sp[n_m], 0)} | "
                             f"**{r['atom_steps_per_s'] / mace_sp[n_m]:.0f}×** |")
            lines += ["", "Same random 7-metal fcc alloy sizes; the engines differ (OpenMM velocity Verlet with the "
                      "compiled SUS2 force vs ASE velocity Verlet with MACE's calculator), as the performance issue asks "
                      "(SUS2 through OpenMM, MACE through its ASE calculator). SUS2 is also the more accurate model on the "
                      "same test configurations (error ratios above)."]
        lines += ["", "`model` = energy+forces of the eager model with its neighbour list (no engine); "
                  "TorchForce MD / compiled MD = full velocity-Verlet steps inside OpenMM (TorchForce over the "
                  "TorchScript model; PythonForce over the torch.compile'd padded Verlet-list evaluation); CPU ms/step = process CPU time per step "
                  "(does not count waiting for a busy CPU)."]
    lines += ["", "Raw results: the `calc_*.jsonl`, `openmm.json` and `state.json` files of the work directory.", ""]
    out = ROOT / "benchmarks" / "RESULTS.md"
    out.write_text("\n".join(lines))
    return out


_BACKEND_LABEL = {"torch": "TorchForce MD", "compiled": "compiled MD (PythonForce, torch.compile)"}


def _load_cell(rows: list[dict]) -> str:
    ld = next((r for r in rows if r.get("what") == "load"), None)
    return "—" if not ld else f"{ld['start'][0]:.1f} → {ld['end'][0]:.1f}"


# ------------------------------------------------------------------ main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "peers")
    ap.add_argument("--stages", default="all", help=f"comma-separated subset of {', '.join(STAGES)}")
    ap.add_argument("--force", default="", help="stages to redo even if their result exists")
    ap.add_argument("--mace-epochs", type=int, default=2)
    ap.add_argument("--mace-threads", type=int, default=2)
    ap.add_argument("--sus2-train-min", type=float, default=8.0, help="training budget when models/emt_alloy.mtp is absent")
    ap.add_argument("--limit", type=int, default=200, help="test configurations for the MACE accuracy subset")
    ap.add_argument("--steps", type=int, default=5, help="MD steps per size in bench_calc for MACE")
    ap.add_argument("--steps-fast", type=int, default=20, help="MD steps per size in bench_calc for SUS2 and EMT")
    ap.add_argument("--openmm-sizes", default="1500,12000")
    ap.add_argument("--calc-sizes", default="1500,12000", help="MD sizes (atoms) of the ASE-harness speed runs")
    ap.add_argument("--openmm-steps", type=int, default=3)
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    stages = STAGES if a.stages == "all" else tuple(s.strip() for s in a.stages.split(","))
    force = {s.strip() for s in a.force.split(",") if s.strip()}
    state_path = a.work / "state.json"
    state = load(state_path) or {}

    def done(name: str) -> bool:
        return name in state and name not in force

    for name in stages:
        if name == "results":
            continue
        if done(name) and name != "calc":  # calc caches per calculator
            log(f"{name}: cached ({state_path})")
            continue
        log(f"{name}: start (load {os.getloadavg()})")
        if name == "venv":
            state[name] = stage_venv(a.work)
        elif name == "sus2":
            state[name] = stage_sus2(a.work, a.sus2_train_min)
        elif name == "mace":
            state[name] = stage_mace(a.work, a.mace_epochs, a.mace_threads)
        elif name == "calc":
            state[name] = stage_calc(a.work, a.limit, a.steps, a.steps_fast, (state.get("sus2") or {}).get("model"), state.get("mace"),
                                     bool((state.get("venv") or {}).get("asap3")), "calc" in force, a.calc_sizes)
        elif name == "openmm":
            state[name] = stage_openmm(a.work, state["sus2"]["model"], a.openmm_sizes, a.openmm_steps)
        else:
            raise SystemExit(f"unknown stage {name!r}; choose from {', '.join(STAGES)}")
        result = state[name]
        result["invocation"] = " ".join(["python benchmarks/peers/run_peers.py", *sys.argv[1:]])
        state = load(state_path) or {}  # merge: another invocation may have finished other stages meanwhile
        state[name] = result
        save(state_path, state)
        log(f"{name}: done")
    if "results" in stages:
        out = stage_results(a.work, state, ["python benchmarks/peers/run_peers.py", *sys.argv[1:]])
        log(f"wrote {out}")


if __name__ == "__main__":
    main()
