"""``sus2md train``: fit a SUS2 model to labelled data as a YAML file says."""
from __future__ import annotations

from pathlib import Path

import typer


def train(
    config: Path = typer.Argument(..., help="Training config (YAML); see examples/train_emt.yaml."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the checkpoint named in output.checkpoint."),
) -> None:
    """Train a SUS2 model (linear least squares + L-BFGS); write the .mtp, a checkpoint and logs."""
    from sus2md.train.config import load_config
    from sus2md.train.workflow import format_metrics, train_model

    cfg = load_config(config)
    result = train_model(cfg, resume=resume, echo=typer.echo)
    if result.metrics:
        typer.echo(f"{result.n_params} parameters, {result.steps} steps, {result.wall_s:.1f} s")
        typer.echo(format_metrics(result.metrics))
    if result.stop_reason == "interrupted":  # Ctrl-C / SIGTERM: checkpoint, model and logs are written
        typer.echo(f"interrupted; continue with: sus2md train {config} --resume", err=True)
        raise SystemExit(128 + (result.stop_signal or 2))  # 130 SIGINT, 143 SIGTERM


COMMANDS = [train]
