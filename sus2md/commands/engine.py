"""``sus2md compile``: an ``.mtp`` model -> a TorchScript file for OpenMM's TorchForce (``-o x.pt``),
or its compiled step in the cache of the ``compiled``/``auto`` backend (``--cache``)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from sus2md.errors import UsageError


def compile(  # noqa: A001  (the command is called compile)
    model: Path = typer.Argument(..., help="Model file (.mtp)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="TorchScript file to write (.pt), for the torch/python backends and other TorchForce users."),
    cache: bool = typer.Option(False, "--cache", help="Compile the model's step for the compiled/auto backend into the cache (SUS2MD_CACHE_DIR, else ~/.cache/sus2md) so that runs start without compiling; e.g. on a login node before a job array."),
    dtype: str = typer.Option("float32", help="float32 or float64: the precision the model evaluates in."),
    device: str = typer.Option("cpu", help="With --cache: cpu or cuda, where the runs will evaluate the model."),
    species: Optional[str] = typer.Option(None, help="Element symbols of the model's species in type order, e.g. Cu,Se (needed when the .mtp names none)."),
) -> None:
    """Compile MODEL: a TorchScript file (-o MODEL.pt) and/or the cached compiled step (--cache)."""
    if output is None and not cache:
        raise UsageError("nothing to do: give -o MODEL.pt (TorchScript file) and/or --cache (compiled step)")
    names = [s.strip() for s in species.split(",") if s.strip()] if species else None
    if output is not None:
        from sus2md.export import compile_for_openmm

        meta = compile_for_openmm(model, output, species=names, dtype=dtype)
        typer.echo(f"wrote {output}")
        typer.echo(f"species      {', '.join(meta['species'])}")
        typer.echo(f"cutoff       {meta['cutoff_A']} Å")
        typer.echo(f"dtype        {meta['dtype']}")
        typer.echo(f"units        {meta['units']}")
        typer.echo(f"source       {meta['source_model']['path']} (sha256 {meta['source_model']['sha256'][:12]}…)")
        typer.echo(f"versions     sus2md {meta['sus2md_version']}, torch {meta['torch_version']}, format {meta['format_version']}")
    if cache:
        import torch

        from sus2md.export import DTYPES, frozen_model
        from sus2md.export.aot import load_step

        if dtype not in DTYPES:
            raise UsageError(f"--dtype must be float32 or float64, got {dtype!r}")
        if device not in ("cpu", "cuda") or (device == "cuda" and not torch.cuda.is_available()):
            raise UsageError(f"--device must be cpu or cuda (with a CUDA device visible), got {device!r}")
        pot = frozen_model(model, names, DTYPES[dtype]).to(device)
        _, art = load_step(pot, torch.device(device))
        what = "already cached" if art.cached else f"compiled in {art.compile_s:.0f} s"
        typer.echo(f"compiled step {what}: {art.path}")


COMMANDS = [compile]
