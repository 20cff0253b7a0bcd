"""``sus2md learn``: active learning (MD exploration, extrapolation grade, MaxVol selection, labels)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import typer


def learn(
    config: Path = typer.Argument(..., help="Learning config YAML (see examples/learn_emt.yaml)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run directory (default runs/<config stem>)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in the run directory (after an interrupt, or once external labels are written)."),
) -> None:
    """Grow a training set and a model: train, explore by MD, select by MaxVol, label, repeat."""
    from sus2md.active.config import load_learn_config
    from sus2md.active.learn import LabellingPending, learn as run_learning

    cfg = load_learn_config(config)
    where = out if out is not None else Path("runs") / config.stem
    for name in ("sus2md.active", "sus2md.train"):
        lg = logging.getLogger(name)
        if lg.getEffectiveLevel() > logging.INFO:
            lg.setLevel(logging.INFO)
    typer.echo(f"{config} -> {where}", err=True)
    try:
        result = run_learning(cfg, where, resume=resume, echo=lambda s: typer.echo(s, err=True))
    except LabellingPending as exc:
        typer.echo(str(exc), err=True)
        typer.echo(f"then: sus2md learn {config} --out {where} --resume", err=True)
        raise SystemExit(exc.exit_code) from None
    except KeyboardInterrupt:
        typer.echo(f"interrupted; continue with: sus2md learn {config} --out {where} --resume", err=True)
        raise SystemExit(130) from None
    typer.echo(f"{where}: {result.status} after {result.iterations} iteration(s), {result.labels} labels, "
               f"{result.wall_s:.0f} s; model {where / 'model.mtp'}, log {where / 'log.csv'}")


COMMANDS = [learn]
