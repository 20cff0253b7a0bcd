"""``sus2md eval``, ``sus2md info``, ``sus2md init``."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer

from sus2md.errors import UsageError


def _species_opt(text: Optional[str]) -> Optional[list[str]]:
    return [s.strip() for s in text.split(",") if s.strip()] if text else None


def eval(  # noqa: A001  (the command is called eval)
    model: Path = typer.Argument(..., help="Model file (.mtp)."),
    data: Path = typer.Argument(..., help="Labelled data: .cfg, or extxyz/anything ASE reads."),
    species: Optional[str] = typer.Option(None, help="Element symbols of the model's species in order, e.g. Cu,Se (needed for extxyz unless the .mtp names them)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write per-configuration predictions (.json or .extxyz)."),
    dtype: str = typer.Option("float64", help="float64 or float32."),
    threads: Optional[int] = typer.Option(None, help="torch intra-op threads."),
) -> None:
    """Energy/force/virial errors of MODEL on labelled DATA."""
    import torch

    from sus2md.model import error_metrics, evaluate_frames, load_frames_for, load_model

    if threads is not None:
        if threads < 1:
            raise UsageError(f"--threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    pot = load_model(model, species=_species_opt(species), dtype=dtype)
    t0 = time.perf_counter()
    frames = load_frames_for(pot, data)
    t1 = time.perf_counter()
    preds = evaluate_frames(pot, frames)
    t2 = time.perf_counter()
    m = error_metrics(frames, preds)
    typer.echo(f"{data}: {m['n_configs']} configurations, {m['n_atoms']} atoms (read {t1 - t0:.2f} s, evaluated {t2 - t1:.2f} s)")
    rows = [
        ("energy", "meV/atom", m.get("energy_rmse_meV_atom"), m.get("energy_mae_meV_atom")),
        ("forces", "eV/Å", m.get("force_rmse_eV_A"), m.get("force_mae_eV_A")),
        ("virial", "eV", m.get("virial_rmse_eV"), m.get("virial_mae_eV")),
    ]
    typer.echo(f"{'quantity':<10}{'unit':<10}{'RMSE':>12}{'MAE':>12}")
    for q, u, rmse, mae in rows:
        if rmse is not None:
            typer.echo(f"{q:<10}{u:<10}{rmse:>12.4f}{mae:>12.4f}")
    typer.echo(f"sum of predicted energies: {sum(p.energy for p in preds):.7f} eV")
    if output:
        _write_predictions(output, frames, preds)
        typer.echo(f"predictions written to {output}")


def _write_predictions(path: Path, frames, preds) -> None:
    if path.suffix == ".json":
        data = [
            {"index": k, "n_atoms": len(a), "energy_eV": p.energy, "forces_eV_A": p.forces.tolist(),
             "virial_eV": p.virial.tolist()}
            for k, (a, p) in enumerate(zip(frames, preds))
        ]
        try:
            path.write_text(json.dumps(data))
        except OSError as e:
            raise UsageError(f"cannot write predictions to {path}: {e.strerror or e}") from None
        return
    import ase.io
    from ase.calculators.singlepoint import SinglePointCalculator

    out = []
    for a, p in zip(frames, preds):
        b = a.copy()
        kw = {"energy": p.energy, "forces": p.forces}
        if b.pbc.all():
            kw["stress"] = (-p.virial / b.get_volume()).ravel()[[0, 4, 8, 5, 2, 1]]
        b.calc = SinglePointCalculator(b, **kw)
        b.info["virial_eV"] = p.virial.ravel().tolist()
        out.append(b)
    try:
        ase.io.write(path, out, format="extxyz")
    except Exception as e:
        raise UsageError(f"cannot write predictions to {path}: {e}") from None


def info(
    model: Path = typer.Argument(..., help="Model file (.mtp)."),
    species: Optional[str] = typer.Option(None, help="Element symbols of the model's species in type order, e.g. Cu,Se (checked against the model; for a .mtp that names none)."),
) -> None:
    """Species count, L, K, scaling map, cutoff and parameter counts of MODEL."""
    from sus2md.io.cfg import _species_numbers
    from sus2md.io.mtp import read_mtp

    m = read_mtp(model)
    names = _species_opt(species)
    if names is not None:
        _species_numbers(names)
        if len(names) != m.species_count:
            raise UsageError(f"{len(names)} species names given ({', '.join(names)}) but {model} has "
                             f"{m.species_count} species")
    L1 = m.L + 1
    if names is not None:
        stored = f"; the file says {', '.join(m.species_names)}" if m.species_names and m.species_names != names else ""
        named = f" ({', '.join(names)}: from --species{stored})"
    elif m.species_names:
        named = f" ({', '.join(m.species_names)})"
    else:
        named = (" (element names not stored: give them with --species Cu,Se in type order, here and to eval, "
                 "compile, grade, select; model.species in a protocol)")
    typer.echo(f"model        {model}")
    typer.echo(f"name         {m.potential_name}")
    typer.echo(f"species      {m.species_count}{named}")
    typer.echo(f"basis        L={m.L}, K={m.radial_funcs_count // L1} (l{m.L}k{m.radial_funcs_count // L1}), {len(m.alpha_moment_mapping)} scalar moments, {len(m.alpha_index_times)} contractions")
    typer.echo(f"radial       {m.radial_basis_type}, R={m.radial_basis_size}, scaling_map={m.scaling_map} ({m.n_blocks} blocks), cutoff {m.max_dist} Å")
    typer.echo(f"trained      {'yes' if m.is_trained else 'no (untrained)'}")
    typer.echo("parameters")
    for k, v in m.parameter_counts().items():
        typer.echo(f"  {k:<22}{v:>10}")


def init(
    output: Path = typer.Option(..., "--output", "-o", help="Untrained .mtp to write."),
    L: int = typer.Option(2, "--L", help="Maximal tensor rank (2 or 3)."),
    K: int = typer.Option(3, "--K", help="Number of radial channels."),
    species: str = typer.Option(..., help="Element symbols, e.g. Cu,Ag,Au."),
    cutoff: float = typer.Option(5.0, help="Cutoff radius, Å."),
    radial_basis_size: int = typer.Option(8, help="Chebyshev terms per radial function."),
    scaling_map: str = typer.Option("K", help="K, L or LK: how (alpha, r0) are shared."),
    min_dist: float = typer.Option(0.0, help="Minimal distance (only seeds the scaling initialisation)."),
) -> None:
    """Write an untrained SUS2 model with the published basis for (L, K)."""
    from sus2md.io.mtp import write_mtp
    from sus2md.train.init_model import init_mtp

    m = init_mtp(L, K, _species_opt(species) or [], cutoff, min_dist=min_dist, radial_basis_size=radial_basis_size, scaling_map=scaling_map)
    write_mtp(m, output)
    typer.echo(f"wrote untrained l{L}k{K} model for {', '.join(m.species_names or [])} (cutoff {cutoff} Å) to {output}")


COMMANDS = [eval, info, init]
