"""``sus2md select`` and ``sus2md grade``: extrapolation grades and active learning (MaxVol)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from sus2md.errors import UsageError


def _load(model: Path, species: Optional[str]):
    from sus2md.model import load_model

    names = [s.strip() for s in species.split(",") if s.strip()] if species else None
    pot = load_model(model, species=names)
    if not pot.species_names:
        typer.echo("note: the model stores no element names; data files must carry types (.cfg) or pass --species", err=True)
    return pot


def select(
    model: Path = typer.Argument(..., help="Model file (.mtp)."),
    train: Path = typer.Argument(..., help="Training set the model was fitted to (.cfg or extxyz)."),
    candidates: Path = typer.Argument(..., help="Candidate configurations (.cfg or extxyz)."),
    output: Path = typer.Option(Path("selected.cfg"), "--output", "-o", help="Where to write the selected configurations (.cfg)."),
    threshold: float = typer.Option(2.0, help="Select configurations whose max grade exceeds this."),
    max_new: int = typer.Option(50, "--max", help="Select at most this many configurations."),
    species: Optional[str] = typer.Option(None, help="Element symbols of the model's species in order, e.g. Cu,Se."),
) -> None:
    """Choose the CANDIDATES to label next (MTP select-add): most extrapolative first, greedy MaxVol."""
    import numpy as np

    from sus2md.active.grade import ActiveSet, frame_max_gamma, select_configurations
    from sus2md.io.cfg import write_cfg
    from sus2md.model import load_frames_for

    if threshold <= 0 or max_new < 0:
        raise UsageError(f"--threshold must be > 0 and --max >= 0, got {threshold} and {max_new}")
    pot = _load(model, species)
    names = pot.species_names or None
    train_frames = load_frames_for(pot, train)
    cand = load_frames_for(pot, candidates)
    aset = ActiveSet.from_frames(pot, train_frames)
    gmax = frame_max_gamma(pot, aset, cand)
    chosen = select_configurations(pot, train_frames, cand, threshold=threshold, max_new=max_new, active_set=aset)
    write_cfg(output, [cand[k] for k in chosen], species=names)
    above = int(np.count_nonzero(gmax > threshold))
    typer.echo(f"active set: {sum(aset.size().values())} rows from {len(train_frames)} training configurations")
    typer.echo(f"{len(cand)} candidates, {above} with max grade > {threshold:g} (largest {gmax.max(initial=0.0):.3g})")
    typer.echo(f"selected {len(chosen)} configurations -> {output}")


def grade_cmd(
    model: Path = typer.Argument(..., help="Model file (.mtp)."),
    train: Path = typer.Argument(..., help="Training set the model was fitted to (.cfg or extxyz)."),
    data: Path = typer.Argument(..., help="Configurations to grade (.cfg or extxyz)."),
    active_set: Path = typer.Option(Path("active_set.npz"), "--active-set", help="Active set to write (.npz)."),
    threshold: float = typer.Option(2.0, help="Count configurations above this grade."),
    species: Optional[str] = typer.Option(None, help="Element symbols of the model's species in order, e.g. Cu,Se."),
) -> None:
    """Max extrapolation grade of every configuration of DATA (<= 1 interpolation, > 1 extrapolation)."""
    import numpy as np

    from sus2md.active.grade import ActiveSet, frame_max_gamma
    from sus2md.model import load_frames_for

    if threshold <= 0:
        raise UsageError(f"--threshold must be > 0, got {threshold}")
    pot = _load(model, species)
    train_frames, frames = load_frames_for(pot, train), load_frames_for(pot, data)  # both checked before writing
    aset = ActiveSet.from_frames(pot, train_frames)
    aset.save(active_set)
    gmax = frame_max_gamma(pot, aset, frames)
    typer.echo(f"{'config':>8}{'atoms':>8}{'max_gamma':>14}")
    for k, (a, g) in enumerate(zip(frames, gmax)):
        typer.echo(f"{k:>8}{len(a):>8}{g:>14.4g}")
    typer.echo(f"{int(np.count_nonzero(gmax > threshold))} of {len(frames)} configurations above {threshold:g}; "
               f"active set ({sum(aset.size().values())} rows) written to {active_set}")


grade_cmd.cli_name = "grade"  # type: ignore[attr-defined]

COMMANDS = [select, grade_cmd]
