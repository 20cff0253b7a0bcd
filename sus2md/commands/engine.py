"""``sus2md compile``: an ``.mtp`` model -> TorchScript file for OpenMM's TorchForce."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def compile(  # noqa: A001  (the command is called compile)
    model: Path = typer.Argument(..., help="Model file (.mtp)."),
    output: Path = typer.Option(..., "--output", "-o", help="TorchScript file to write (.pt)."),
    dtype: str = typer.Option("float32", help="float32 or float64: the precision the model evaluates in."),
    species: Optional[str] = typer.Option(None, help="Element symbols of the model's species in type order, e.g. Cu,Se (needed when the .mtp names none)."),
) -> None:
    """Compile MODEL for OpenMM (positions nm, energy kJ/mol) with its metadata."""
    from sus2md.export import compile_for_openmm

    names = [s.strip() for s in species.split(",") if s.strip()] if species else None
    meta = compile_for_openmm(model, output, species=names, dtype=dtype)
    typer.echo(f"wrote {output}")
    typer.echo(f"species      {', '.join(meta['species'])}")
    typer.echo(f"cutoff       {meta['cutoff_A']} Å")
    typer.echo(f"dtype        {meta['dtype']}")
    typer.echo(f"units        {meta['units']}")
    typer.echo(f"source       {meta['source_model']['path']} (sha256 {meta['source_model']['sha256'][:12]}…)")
    typer.echo(f"versions     sus2md {meta['sus2md_version']}, torch {meta['torch_version']}, format {meta['format_version']}")


COMMANDS = [compile]
