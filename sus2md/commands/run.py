"""``sus2md run`` (a protocol into a run directory) and ``sus2md analyze`` (run directories -> report)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def _replica_dir(protocol: Path, out: Optional[Path], k: Optional[int], explicit_k: bool) -> Path:
    """``--out`` as given for an explicit ``--replica``; otherwise ``<out or runs/stem>_replica{k}``."""
    from sus2md.engine.run import default_run_dir

    if out is None:
        return default_run_dir(protocol, k)
    if k is None or explicit_k:
        return out
    return out.parent / f"{out.name}_replica{k}"


def run(
    protocol: Path = typer.Argument(..., help="Protocol YAML (see protocols/)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run directory (default runs/<protocol stem>, plus _replicaK for a sweep replica)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in the run directory from its last checkpoint."),
    platform: Optional[str] = typer.Option(None, "--platform", help="Override the protocol's OpenMM platform (Reference, CPU, CUDA, OpenCL)."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Cap every dynamical stage at N steps (smoke runs)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="Threads for torch and OpenMM's CPU platform (default: the protocol's threads, else the cores this process may use)."),
    replica: Optional[int] = typer.Option(None, "--replica", help="Run replica K of the protocol's sweep (default: $SLURM_ARRAY_TASK_ID, else all replicas in turn)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar on stderr (only on a terminal)."),
) -> None:
    """Run the stages of PROTOCOL into a run directory (trajectory, thermo.csv, checkpoints, provenance)."""
    import logging
    import sys

    from sus2md.protocol import load_protocol

    engine_log = logging.getLogger("sus2md.engine")
    if engine_log.getEffectiveLevel() > logging.INFO:  # what runs (backend, threads) and minimizer progress
        engine_log.setLevel(logging.INFO)

    proto = load_protocol(protocol)  # validate before the heavy imports
    from sus2md.engine.run import run_protocol, select_replica

    k = select_replica(proto, replica)
    replicas = [k] if (k is not None or proto.sweep is None) else list(range(proto.n_replicas))
    for k in replicas:
        run_dir = _replica_dir(protocol, out, k, explicit_k=replica is not None)
        label = f" replica {k} ({proto.sweep.parameter} = {proto.sweep.values[k]:g})" if proto.sweep and k is not None else ""
        typer.echo(f"{protocol}{label} -> {run_dir}", err=True)
        result = run_protocol(proto, run_dir, resume=resume, replica=k, platform=platform, max_steps=steps,
                              threads=threads, progress=progress, command_line=list(sys.argv))
        if result.status == "nothing to do":
            typer.echo(f"{run_dir}: the run is already complete; nothing to do")
            continue
        typer.echo(f"{run_dir}: {result.status} at step {result.global_step}: {result.frames} frames, "
                   f"{result.thermo_rows} thermo rows, {result.wall_time_s:.1f} s")
        if result.status == "interrupted":
            import shlex  # the hint repeats every option the resumed run must match (or that picks its replica)

            again = {"--out": run_dir, "--replica": k, "--steps": steps, "--platform": platform, "--threads": threads}
            opts = " ".join(f"{o} {shlex.quote(str(v))}" for o, v in again.items() if v is not None)
            typer.echo(f"interrupted; continue with: sus2md run {shlex.quote(str(protocol))} {opts} --resume", err=True)
            # SystemExit, not typer.Exit: cli.main runs click with standalone_mode=False, which turns
            # an Exit into a return value that main() drops
            raise SystemExit(result.exit_code)


def analyze(
    run_dirs: list[Path] = typer.Argument(..., help="One or more run directories."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output directory (default RUN_DIR/analysis for one run, analysis/ for several)."),
) -> None:
    """Thermo averages, RDFs, diffusion and Green-Kubo conductivity of run directories."""
    from sus2md.analysis.report import analyze_run, analyze_runs

    if len(run_dirs) == 1:
        summary = analyze_run(run_dirs[0], out)
        where = out if out is not None else Path(run_dirs[0]) / "analysis"
        typer.echo(f"{run_dirs[0]}: {summary.get('n_frames')} frames analysed -> {where}")
        return
    where = out if out is not None else Path("analysis")
    summary = analyze_runs(list(run_dirs), where)
    typer.echo(f"{len(summary.get('runs', []))} runs analysed -> {where}")


COMMANDS = [run, analyze]
