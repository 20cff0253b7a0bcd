"""``sus2md export-lammps``."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def export_lammps(
    model: Path = typer.Argument(..., help="Model file (.mtp)."),
    structure: Path = typer.Argument(..., help="Starting structure (extxyz, cif, POSCAR, lammps-data, pdb, cfg)."),
    output: Path = typer.Option(..., "--output", "-o", help="Directory to write model.mtp, structure.data, in.lammps, README.md."),
    species: Optional[str] = typer.Option(None, help="Element symbols of the model's species in order, e.g. Cu,Se (default: names stored in the .mtp)."),
    temperature_K: float = typer.Option(300.0, "--temperature-K", help="Temperature, K (velocities and thermostat)."),
    pressure_bar: Optional[float] = typer.Option(None, "--pressure-bar", help="Pressure, bar (npt only)."),
    ensemble: str = typer.Option("nvt", help="nvt, npt or nve."),
    steps: int = typer.Option(10000, help="Number of MD steps."),
    timestep_fs: float = typer.Option(1.0, "--timestep-fs", help="Time step, fs."),
    seed: int = typer.Option(12345, help="Seed of 'velocity create'."),
    thermo_every: int = typer.Option(100, help="Thermo output interval, steps."),
    dump_every: int = typer.Option(1000, help="Trajectory dump interval, steps."),
    heat_flux_every: Optional[int] = typer.Option(None, help="Also write the heat current every N steps (heat_flux.txt)."),
) -> None:
    """Write a LAMMPS input directory (pair_style sus2mtp) for MODEL and STRUCTURE."""
    from sus2md.io.mtp import read_mtp
    from sus2md.io.structures import read_structure
    from sus2md.interop.lammps import MDSettings, export_lammps as _export

    names = [s.strip() for s in species.split(",") if s.strip()] if species else None
    atoms = read_structure(structure, species=names or read_mtp(model).species_names)
    md = MDSettings(ensemble=ensemble, temperature_K=temperature_K, pressure_bar=pressure_bar, steps=steps,
                    timestep_fs=timestep_fs, seed=seed, thermo_every=thermo_every, dump_every=dump_every,
                    heat_flux_every=heat_flux_every)
    out = _export(model, atoms, output, species=names, md=md, source=structure.name)
    mapping = ", ".join(f"type {k + 1} = {s}" for k, s in enumerate(out.species))
    typer.echo(f"wrote {out.input}, {out.data.name}, {out.model.name}, {out.readme.name} ({len(atoms)} atoms; {mapping})")
    typer.echo(f"run with: cd {out.directory} && mpirun -np 4 lmp -in in.lammps  (needs LAMMPS with pair_style sus2mtp)")


COMMANDS = [export_lammps]
