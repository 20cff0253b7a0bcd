"""Throughput benchmarks: energy+forces of the model alone and full MD steps through OpenMM.

Every measurement is expressed in atom-steps per second (atoms x steps / wall second) so that
systems of different sizes compare directly.  Timing is warm-up followed by best-of-k: each
"round" times ``steps`` calls (or MD steps) of every configuration in turn, and the fastest
round of each configuration counts.  Interleaving the rounds means that load from other
processes on a shared machine hits all configurations alike, so the *ratios* between rows of one
run are much more trustworthy than the absolute numbers.  Each row also records the process CPU
time per step (all threads), which does not count time spent waiting for a busy CPU and is
therefore the steadier cost measure on a loaded machine.

``species_scan`` measures the SUS2 claim that the cost does not grow with the number of species:
models with 2, 7 and 53 species (same L, K, R, cutoff; default coefficients) evaluate random
alloys on one fcc lattice, so the number of neighbours per atom is the same for all of them.
"""
from __future__ import annotations

import copy
import datetime
import importlib.metadata
import logging
import os
import platform as _platform
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
from ase import Atoms
from ase.build import bulk

from sus2md.engine.provenance import cpu_model
from sus2md.errors import UsageError
from sus2md.io.data import species_index
from sus2md.nn.calc import evaluate, graph_from_atoms
from sus2md.nn.potential import SUS2Potential

__all__ = ["BenchConfig", "run_bench", "species_scan", "profile_model", "to_markdown", "machine_info", "replicate",
           "random_alloy", "scan_species_lists", "as_dict", "ALLOY_SPECIES", "EMT_SPECIES"]

log = logging.getLogger(__name__)

SCHEMA = "sus2md-bench/1"
#: ``model``: the model alone on the default path (compiled padded step, Verlet list kept);
#: ``model-eager``: the eager edge-list path (ASE calculator before 0.2, autograd forces);
#: the rest are MD backends through OpenMM (sus2md.engine.force)
BACKENDS = ("model", "model-eager", "auto", "compiled", "torch", "python")
DTYPES = {"float32": torch.float32, "float64": torch.float64}
EMT_SPECIES = ["Al", "Ni", "Cu", "Pd", "Ag", "Pt", "Au"]
# the 53 species of the authors' alloy.mtp, in its type order
ALLOY_SPECIES = ("Li Be Na Mg Al Si K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge Sr Y Zr Nb Mo Ru Rh Pd Ag Cd In Sn "
                 "La Ce Pr Nd Sm Gd Tb Dy Ho Er Tm Lu Hf Ta W Re Os Ir Pt Au Pb").split()
LOAD_NOTE = ("Absolute numbers depend on the load from other processes (see loadavg); rows of one run are "
             "timed in interleaved rounds (warm-up, then best of k), so ratios between rows are the robust result.")


@dataclass
class BenchConfig:
    """What to measure.  ``sizes`` are target atom counts: the structure is replicated along its
    cell vectors to the nearest count (never below one copy)."""

    sizes: Sequence[int] = (1500,)
    dtypes: Sequence[str] = ("float32", "float64")
    backends: Sequence[str] = ("model", "auto", "torch")
    threads: Sequence[int] = (1,)
    device: str = "cpu"
    steps: int = 10
    repeats: int = 3
    warmup: int = 2

    def validate(self) -> None:
        bad = [b for b in self.backends if b not in BACKENDS]
        if bad:
            raise UsageError(f"backends: {', '.join(bad)} unknown; choose from {', '.join(BACKENDS)}")
        bad = [d for d in self.dtypes if d not in DTYPES]
        if bad:
            raise UsageError(f"dtypes: {', '.join(bad)} unknown; choose from float32, float64")
        if self.device not in ("cpu", "cuda"):
            raise UsageError(f"device must be cpu or cuda, got {self.device!r}")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise UsageError("device cuda asked for but torch sees no CUDA device")
        for name in ("steps", "repeats"):
            if int(getattr(self, name)) < 1:
                raise UsageError(f"{name} must be >= 1, got {getattr(self, name)}")
        if int(self.warmup) < 0:
            raise UsageError(f"warmup must be >= 0, got {self.warmup}")
        if any(int(n) < 1 for n in self.sizes) or any(int(t) < 1 for t in self.threads):
            raise UsageError("sizes and threads must be positive integers")


# ---------------------------------------------------------------------------- structures


def replicate(atoms: Atoms, n_target: int) -> Atoms:
    """``atoms`` repeated k x k x k times with k^3 * len(atoms) closest to ``n_target`` (k >= 1)."""
    k = max(1, int(round((n_target / len(atoms)) ** (1 / 3))))
    out = atoms.repeat((k, k, k)) if k > 1 else atoms.copy()
    return out


def random_alloy(species: Sequence[str], n_target: int, a_A: float = 3.9, seed: int = 0) -> Atoms:
    """Random substitutional fcc alloy of ``species`` (uniform), ~``n_target`` atoms, lattice ``a_A``."""
    rep = max(1, int(round((n_target / 4) ** (1 / 3))))
    at = bulk("Cu", "fcc", a=a_A, cubic=True).repeat((rep, rep, rep))
    rng = np.random.default_rng(seed)
    at.set_chemical_symbols(list(rng.choice(list(species), len(at))))
    return at


def scan_species_lists(counts: Sequence[int]) -> list[list[str]]:
    """Element lists for a species scan: the 7 EMT metals first, then the rest of the 53 alloy
    elements, so that every list is a prefix of the next."""
    order = EMT_SPECIES + [s for s in ALLOY_SPECIES if s not in EMT_SPECIES]
    bad = [c for c in counts if not 1 <= int(c) <= len(order)]
    if bad:
        raise UsageError(f"species counts must be between 1 and {len(order)}, got {', '.join(map(str, bad))}")
    return [order[: int(c)] for c in counts]


# ---------------------------------------------------------------------------- machine




def machine_info() -> dict:
    """CPU model, cores, load average, GPU, versions, date (UTC)."""
    import sus2md

    versions = {"sus2md": sus2md.__version__, "torch": torch.__version__, "python": _platform.python_version()}
    for dist in ("openmm", "openmmtorch", "ase", "numpy"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = None
    gpu = None
    if torch.cuda.is_available():
        gpu = ", ".join(torch.cuda.get_device_name(k) for k in range(torch.cuda.device_count()))
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "hostname": _platform.node(),
        "cpu_model": cpu_model(),
        "logical_cores": os.cpu_count(),
        "affinity_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "gpu": gpu,
        "versions": versions,
    }


# ---------------------------------------------------------------------------- runners


@dataclass
class _Case:
    """One configuration to time: ``run(n)`` performs n calls/steps."""

    meta: dict
    run: Callable[[int], None]
    threads: int
    times: list = field(default_factory=list)
    cpu_times: list = field(default_factory=list)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _model_case(model: SUS2Potential, atoms: Atoms, dtype: str, threads: int, device: str) -> _Case:
    """Energy + forces of the model alone on the path MD uses: the padded per-centre Verlet list
    with the compiled step (:func:`sus2md.export.aot.compiled_adapter`), positions in Å on
    ``device``.  The atoms do not move, so the list is built once (MD rows include rebuilds)."""
    from sus2md.export.aot import compiled_adapter

    index = torch.from_numpy(species_index(atoms, list(model.species_names)))
    adapter, art = compiled_adapter(model, index, dtype=dtype, device=device)
    f64 = dict(dtype=torch.float64, device=device)
    pos, cell = torch.tensor(atoms.positions, **f64), torch.tensor(atoms.cell.array, **f64)
    pbc = torch.tensor(np.asarray(atoms.pbc, dtype=bool), device=device)
    adapter.compute(pos, cell, pbc)

    def run(n: int) -> None:
        for _ in range(n):
            adapter.compute(pos, cell, pbc)
        _sync(device)

    return _Case({"neighbor_slots_per_atom": round(adapter.n_slots / len(atoms), 2),
                  "compile_s": round(art.compile_s, 1), "step_cached": art.cached}, run, threads)


def _model_eager_case(model: SUS2Potential, atoms: Atoms, dtype: str, threads: int, device: str) -> _Case:
    """Energy + forces of the eager model by autograd over a fresh edge list every call (the
    neighbour list is part of every call)."""
    m = copy.deepcopy(model).to(device=device, dtype=DTYPES[dtype])  # .to() is in place
    for p in m.parameters():
        p.requires_grad_(False)
    a = atoms.copy()
    a.arrays["mtp_type"] = species_index(atoms, list(model.species_names))
    g0 = graph_from_atoms([a], m.cutoff, dtype=DTYPES[dtype], device=device)

    def run(n: int) -> None:
        for _ in range(n):
            g = graph_from_atoms([a], m.cutoff, dtype=DTYPES[dtype], device=device)
            evaluate(m, g, forces=True, virial=False)
        _sync(device)

    meta = {"neighbors_per_atom": round(int(g0.edge_i.shape[0]) / len(a), 2)}
    return _Case(meta, run, threads)


def _md_case(model: SUS2Potential, atoms: Atoms, backend: str, dtype: str, threads: int, device: str) -> _Case:
    """Velocity-Verlet steps (1 fs) through OpenMM (CPU platform, or CUDA)."""
    from openmm import unit

    from sus2md.engine.integrators import create_simulation, make_integrator

    platform = "CUDA" if device == "cuda" else "CPU"
    sim = create_simulation(atoms, model, backend=backend, dtype=dtype, platform=platform,
                            precision="mixed" if device == "cuda" else None, threads=threads,
                            integrator=make_integrator("verlet", 1.0))
    sim.context.setVelocitiesToTemperature(300 * unit.kelvin, 1)
    info = sim.sus2md_force_info

    def run(n: int) -> None:
        sim.step(n)
        if device == "cuda":  # the GPU runs asynchronously: wait for the steps to finish
            sim.context.getState(getPositions=True)

    return _Case({"resolved_backend": info.backend}, run, threads)


def _time_rounds(cases: Sequence[_Case], steps: int, repeats: int, warmup: int) -> None:
    """Warm up every case, then ``repeats`` interleaved rounds of ``steps`` each."""
    for c in cases:
        torch.set_num_threads(c.threads)
        if warmup:
            c.run(warmup)
    for _ in range(repeats):
        for c in cases:
            torch.set_num_threads(c.threads)
            t0, c0 = time.perf_counter(), time.process_time()
            c.run(steps)
            c.times.append(time.perf_counter() - t0)
            c.cpu_times.append(time.process_time() - c0)


def _record(c: _Case, steps: int) -> dict:
    best = min(c.times)
    n = c.meta["n_atoms"]
    cpu = min(c.cpu_times)
    return {**c.meta, "steps": steps, "repeats": len(c.times), "best_s_per_step": best / steps,
            "median_s_per_step": float(np.median(c.times)) / steps, "atom_steps_per_s": n * steps / best,
            "best_cpu_s_per_step": cpu / steps, "cpu_atom_steps_per_s": n * steps / cpu if cpu > 0 else None}


def _add_ratios(rows: list[dict]) -> None:
    """MD throughput relative to the model alone (same size, dtype, threads, device)."""
    alone = {(r["n_atoms"], r["dtype"], r["threads"], r["device"]): r["atom_steps_per_s"]
             for r in rows if r["backend"] == "model"}
    for r in rows:
        ref = alone.get((r["n_atoms"], r["dtype"], r["threads"], r["device"]))
        r["vs_model_alone"] = round(r["atom_steps_per_s"] / ref, 3) if ref else None


def run_bench(model: SUS2Potential, atoms: Atoms | None, config: BenchConfig) -> list[dict]:
    """Throughput rows for every size x dtype x backend x threads of ``config``.

    ``model`` must name its species (``model.species_names``); ``atoms`` is the base cell,
    replicated to each size, or None for a random fcc alloy of the model's species per size.
    Each size is measured as one group of interleaved rounds.
    """
    config.validate()
    if not model.species_names:
        raise UsageError("the model names no elements; pass --species (element symbols in type order)")
    names = list(model.species_names)
    if atoms is not None:
        species_index(atoms, names)  # a clear error before any timing
    rows: list[dict] = []
    skipped: list[dict] = []
    for size in config.sizes:
        sys_atoms = replicate(atoms, int(size)) if atoms is not None else random_alloy(names, int(size))
        cases = []
        for threads in config.threads:
            torch.set_num_threads(int(threads))
            for dtype in config.dtypes:
                for backend in config.backends:
                    log.info("setting up %s %s %d threads, %d atoms", backend, dtype, threads, len(sys_atoms))
                    make = {"model": _model_case, "model-eager": _model_eager_case}.get(backend)
                    try:
                        c = (make(model, sys_atoms, dtype, int(threads), config.device) if make is not None
                             else _md_case(model, sys_atoms, backend, dtype, int(threads), config.device))
                    except Exception as exc:  # noqa: BLE001 - a backend this machine lacks is a row, not an abort
                        log.warning("%s %s %d atoms not measured: %s", backend, dtype, len(sys_atoms), exc)
                        skipped.append({"backend": backend, "dtype": dtype, "threads": int(threads),
                                        "n_atoms": len(sys_atoms), "device": config.device,
                                        "not_measured": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"})
                        continue
                    c.meta.update({"kind": "model" if backend.startswith("model") else "md", "backend": backend,
                                   "dtype": dtype, "threads": int(threads), "device": config.device,
                                   "size_requested": int(size), "n_atoms": len(sys_atoms)})
                    cases.append(c)
        _time_rounds(cases, config.steps, config.repeats, config.warmup)
        rows += [_record(c, config.steps) for c in cases]
        del cases
    _add_ratios(rows)
    return rows + skipped


def species_scan(counts: Sequence[int] = (2, 7, 53), *, L: int = 2, K: int = 3, radial_basis_size: int = 8,
                 cutoff_A: float = 5.0, n_atoms: int = 2048, a_A: float = 3.9, dtype: str = "float64",
                 threads: int = 1, device: str = "cpu", steps: int = 5, repeats: int = 3,
                 warmup: int = 1) -> list[dict]:
    """Energy+forces cost vs number of species at a fixed neighbour count (eager edge-list model:
    no compile per species count).

    Models come from :func:`sus2md.train.init_model.init_mtp` with default coefficients (cost does
    not depend on the coefficient values); each evaluates a random alloy of its own species on
    the same fcc lattice (``a_A``, ``cutoff_A``).  Rows carry ``vs_first``: throughput relative
    to the first count.
    """
    from sus2md.train.init_model import init_mtp

    if dtype not in DTYPES:
        raise UsageError(f"dtype must be float32 or float64, got {dtype!r}")
    torch.set_num_threads(int(threads))
    cases = []
    for names in scan_species_lists(counts):
        mtp = init_mtp(L, K, names, cutoff_A, radial_basis_size=radial_basis_size)
        model = SUS2Potential(mtp, dtype=DTYPES[dtype])
        atoms = random_alloy(names, n_atoms, a_A=a_A, seed=len(names))
        c = _model_eager_case(model, atoms, dtype, int(threads), device)
        c.meta.update({"n_species": len(names), "species": names, "n_atoms": len(atoms),
                       "parameters": int(sum(p.numel() for p in model.parameters())),
                       "basis": f"l{L}k{K}", "cutoff_A": cutoff_A, "dtype": dtype, "threads": int(threads),
                       "device": device})
        cases.append(c)
    _time_rounds(cases, steps, repeats, warmup)
    rows = [_record(c, steps) for c in cases]
    for r in rows:
        r["vs_first"] = round(r["atom_steps_per_s"] / rows[0]["atom_steps_per_s"], 3)
        r["cpu_vs_first"] = round(r["best_cpu_s_per_step"] and rows[0]["best_cpu_s_per_step"] / r["best_cpu_s_per_step"], 3)
    return rows


def profile_model(model: SUS2Potential, atoms: Atoms, dtype: str, threads: int, device: str, steps: int = 5) -> str:
    """torch.profiler table (top 25 operators/kernels by self time) of ``steps`` calls of the model
    alone on the MD path (the ``model`` rows)."""
    from torch.profiler import ProfilerActivity, profile

    torch.set_num_threads(int(threads))
    case = _model_case(model, atoms, dtype, int(threads), device)
    case.run(2)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with profile(activities=activities) as prof:
        case.run(steps)
    key = "self_cuda_time_total" if device == "cuda" else "self_cpu_time_total"
    head = f"{len(atoms)} atoms, {dtype}, {threads} thread(s), {device}, {steps} calls\n"
    return head + prof.key_averages().table(sort_by=key, row_limit=25)


# ---------------------------------------------------------------------------- report


def _fmt_rate(x: float) -> str:
    return f"{x:,.0f}".replace(",", " ")


def to_markdown(report: dict) -> str:
    """Markdown tables of a report produced by the ``sus2md bench`` command."""
    m = report["machine"]
    v = m["versions"]
    lines = [
        f"# sus2md bench — {m['date']}",
        "",
        f"- machine: {m['cpu_model']}, {m['logical_cores']} logical cores"
        + (f", GPU {m['gpu']}" if m.get("gpu") else ", no GPU")
        + (f"; load average at start {', '.join(f'{x:.2f}' for x in m['loadavg'])}" if m.get("loadavg") else ""),
        f"- versions: sus2md {v['sus2md']}, torch {v['torch']}, openmm {v.get('openmm')}, "
        f"openmmtorch {v.get('openmmtorch')}, python {v['python']}",
        f"- model: {report['model']} (species {', '.join(report['species'])}); structure: {report['structure']}",
        f"- command: `{report.get('command', '')}`",
        f"- timing: {report['config']['warmup']} warm-up, best of {report['config']['repeats']} rounds of "
        f"{report['config']['steps']} steps/calls; MD = velocity Verlet 1 fs through OpenMM",
        f"- note: {LOAD_NOTE}",
        "",
    ]
    if report.get("results"):
        lines += ["## Throughput (atom-steps/s; higher is better)", "",
                  "| atoms | backend | dtype | threads | device | ms/step | atom-steps/s | × model alone | CPU ms/step |",
                  "|---:|---|---|---:|---|---:|---:|---:|---:|"]
        for r in report["results"]:
            if "not_measured" in r:
                lines.append(f"| {r['n_atoms']} | {r['backend']} | {r['dtype']} | {r['threads']} | {r['device']} | "
                             f"not measured: {r['not_measured']} | | | |")
                continue
            rel = "" if r.get("vs_model_alone") is None else f"{r['vs_model_alone']:.2f}"
            lines.append(f"| {r['n_atoms']} | {r['backend']} | {r['dtype']} | {r['threads']} | {r['device']} | "
                         f"{1e3 * r['best_s_per_step']:.1f} | {_fmt_rate(r['atom_steps_per_s'])} | {rel} | "
                         f"{1e3 * r['best_cpu_s_per_step']:.1f} |")
        lines += ["", "backend `model` = energy+forces of the model alone on the MD path (padded per-centre Verlet "
                  "list, AOTInductor-compiled step, list kept); `model-eager` = the eager edge-list model with a fresh "
                  "neighbour list per call; MD through OpenMM: `auto` = the default (compiled where it can be), "
                  "`compiled` = PythonForce over the compiled padded step, `torch` = TorchForce, `python` = "
                  "PythonForce over TorchScript. CPU ms/step = process CPU time (all threads) per step: insensitive "
                  "to waiting for a busy CPU, so a steadier cost measure on a shared machine.", ""]
    if report.get("species_scan"):
        s0 = report["species_scan"][0]
        lines += [f"## Cost vs number of species ({s0['basis']}, cutoff {s0['cutoff_A']} Å, random fcc alloys, "
                  f"{s0['dtype']}, {s0['threads']} thread(s))", "",
                  "| species | atoms | neighbours/atom | parameters | ms/step | atom-steps/s | × first | CPU ms/step | × first (CPU) |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in report["species_scan"]:
            lines.append(f"| {r['n_species']} | {r['n_atoms']} | {r['neighbors_per_atom']} | {r['parameters']} | "
                         f"{1e3 * r['best_s_per_step']:.1f} | {_fmt_rate(r['atom_steps_per_s'])} | {r['vs_first']:.2f} | "
                         f"{1e3 * r['best_cpu_s_per_step']:.1f} | {r['cpu_vs_first']:.2f} |")
        lines.append("")
    return "\n".join(lines)


def as_dict(config: BenchConfig) -> dict:
    d = asdict(config)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}
