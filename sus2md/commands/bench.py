"""``sus2md bench``: throughput of the model alone and of MD through OpenMM, and cost vs species."""
from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path
from typing import Optional

import typer

from sus2md.errors import UsageError

SHARED_REFERENCE = Path(os.environ.get("SUS2MD_SHARED", Path(__file__).resolve().parents[3] / "shared")) / "reference"
DEFAULT_SPECIES = {"cu2se.mtp": ["Cu", "Se"]}


def _list(text: str, cast=str, what: str = "list") -> list:
    try:
        return [cast(x.strip()) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"--{what}: expected comma-separated values, got {text!r}") from None


def _default_model(model: Optional[Path], structure: Optional[Path]) -> tuple[Path, Optional[Path]]:
    if model is not None:
        return model, structure
    ref = SHARED_REFERENCE / "cu2se.mtp"
    if not ref.is_file():
        raise UsageError(f"no MODEL given and the default {ref} is absent; pass a model file")
    data = SHARED_REFERENCE / "cu2se_1500.lammps-data"
    return ref, structure or (data if data.is_file() else None)


def bench(
    model: Optional[Path] = typer.Argument(None, help="Model file (.mtp); default ../shared/reference/cu2se.mtp with its 1500-atom cell."),
    structure: Optional[Path] = typer.Option(None, help="Base structure, replicated to each size (default: the Cu2Se cell for the default model, else a random fcc alloy of the model's species)."),
    species: Optional[str] = typer.Option(None, help="Element symbols of the model's species in type order (for .mtp files that name none)."),
    sizes: str = typer.Option("1500", help="Target atom counts, e.g. 1500,12000,100000 (the structure is replicated k x k x k)."),
    dtypes: str = typer.Option("float32,float64", help="Model precisions."),
    backends: str = typer.Option("model,auto,torch", help="model (energy+forces alone on the MD path: compiled padded step), model-eager (eager edge-list model), and MD through OpenMM: auto (the default backend), compiled, torch (TorchForce), python (PythonForce over TorchScript)."),
    threads: str = typer.Option("1", help="Thread counts (torch intra-op and OpenMM CPU), e.g. 1,2."),
    device: str = typer.Option("cpu", help="cpu (OpenMM CPU platform) or cuda (CUDA platform, mixed precision)."),
    steps: int = typer.Option(5, help="Steps (or model calls) per timed round."),
    repeats: int = typer.Option(3, help="Timed rounds; the best counts."),
    warmup: int = typer.Option(1, help="Untimed warm-up steps per configuration."),
    species_scan: bool = typer.Option(False, "--species-scan", help="Also time models with 2, 7 and 53 species on the same fcc lattice."),
    scan_species: str = typer.Option("2,7,53", help="Species counts for --species-scan."),
    scan_atoms: int = typer.Option(2048, help="Atoms of the --species-scan alloys."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the full report as JSON."),
    markdown: Optional[Path] = typer.Option(None, "--markdown", help="Write the report as Markdown tables."),
    profile: Optional[Path] = typer.Option(None, "--profile", help="Also profile the model alone (torch.profiler, largest size, last dtype) into this text file."),
) -> None:
    """Atom-steps/s of energy+forces and of OpenMM MD vs size, precision, backend, threads, device."""
    from sus2md.bench import throughput as lib
    from sus2md.io.structures import read_structure, validate_structure
    from sus2md.model import load_model

    cfg = lib.BenchConfig(sizes=_list(sizes, int, "sizes"), dtypes=_list(dtypes), backends=_list(backends),
                          threads=_list(threads, int, "threads"), device=device, steps=steps, repeats=repeats,
                          warmup=warmup)
    cfg.validate()
    model_path, structure = _default_model(model, structure)
    names = _list(species) if species else DEFAULT_SPECIES.get(model_path.name) if model is None else None
    pot = load_model(model_path, species=names, dtype="float64")
    if not pot.species_names:
        raise UsageError(f"{model_path} names no elements; pass --species (element symbols in type order)")
    sp = list(pot.species_names)
    atoms = read_structure(structure, species=sp) if structure is not None else None
    if atoms is not None:
        validate_structure(atoms, source=structure.name)
    for out in (json_out, markdown, profile):  # before the timing, which may take long
        if out is not None and (out.is_dir() or not out.parent.is_dir()):
            raise UsageError(f"cannot write {out}: " + ("it is a directory" if out.is_dir() else
                                                        f"{out.parent} is not a directory"))
    machine = lib.machine_info()
    base = f"base cell {len(atoms)} atoms" if atoms is not None else "random fcc alloys of its species"
    typer.echo(f"{machine['cpu_model']}, {machine['logical_cores']} cores, load {machine['loadavg']}; "
               f"model {model_path.name} ({', '.join(sp)}); {base}")
    typer.echo("note: " + lib.LOAD_NOTE)
    rows = [] if not cfg.backends or not cfg.sizes else lib.run_bench(pot, atoms, cfg)
    scan = []
    if species_scan:
        scan = lib.species_scan(_list(scan_species, int, "scan-species"), n_atoms=scan_atoms, dtype=cfg.dtypes[-1],
                                threads=cfg.threads[0], device=cfg.device, steps=max(1, cfg.steps // 2),
                                repeats=cfg.repeats, warmup=min(cfg.warmup, 1))
    report = {"schema": lib.SCHEMA, "machine": machine, "model": str(model_path), "species": sp,
              "structure": str(structure) if structure else "random fcc alloy (a = 3.9 Å) per size",
              "config": lib.as_dict(cfg), "command": "sus2md " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
              "note": lib.LOAD_NOTE, "results": rows, "species_scan": scan}
    report["machine"]["loadavg_end"] = lib.machine_info()["loadavg"]
    md = lib.to_markdown(report)
    typer.echo(md)
    for out, text, what in ((json_out, json.dumps(report, indent=1), "JSON"), (markdown, md, "Markdown")):
        if out:
            try:
                out.write_text(text)
            except OSError as e:
                raise UsageError(f"cannot write {out}: {e.strerror or e}") from None
            typer.echo(f"{what} written to {out}")
    if profile:
        big = max(cfg.sizes)
        sys_atoms = lib.replicate(atoms, big) if atoms is not None else lib.random_alloy(sp, big)
        profile.write_text(lib.profile_model(pot, sys_atoms, cfg.dtypes[-1], cfg.threads[0], cfg.device))
        typer.echo(f"profile written to {profile}")


COMMANDS = [bench]
