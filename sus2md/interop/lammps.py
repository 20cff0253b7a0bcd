"""Export a SUS2 model and a structure as a ready-to-run LAMMPS directory.

The authors' LAMMPS interface (github hu-yanxiao/SUS2-MLIP, ``interfaces/lammps``, package
``ML-SUS2``) provides ``pair_style sus2mtp`` (CPU) and ``sus2mtp/kk`` (Kokkos, GPU)::

    pair_style sus2mtp model.mtp [tabstep 1.0e-4]        # tabstep: radial table spacing, Å
    pair_coeff * *

It needs ``newton on`` and builds its own full neighbor list; only ``pair_coeff * *`` is accepted
and LAMMPS atom type k is model species k-1 (SPEC-sus2 7).  The pair tallies per-atom energies
and the 9-component centroid per-atom virial, so ``compute centroid/stress/atom`` and
``compute heat/flux`` work with it.  The ``.mtp`` file is read by the pair itself; the element
names that sus2md keeps in ``potential_name`` (``...[Cu,Se]``) are ignored there.

Files written to the output directory:

* ``model.mtp``       the model (:func:`sus2md.io.mtp.write_mtp`, element names attached);
* ``structure.data``  LAMMPS data file, ``atom_style atomic``, types in model species order, masses;
* ``in.lammps``       units metal, read_data, the pair style, velocities, one nvt/npt/nve run,
  thermo and dump output, and optionally the heat-current samples ``heat_flux.txt`` with the
  same columns and units as ``sus2md run``'s ``heat_flux.csv`` (J total, eV*Å/ps);
* ``README.md``       species mapping and how to run it (MPI, Kokkos GPUs).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import ase.io
import numpy as np
from ase import Atoms

from sus2md.errors import UsageError
from sus2md.io.data import species_index
from sus2md.io.mtp import read_mtp, write_mtp

__all__ = ["LammpsExport", "export_lammps", "lammps_input"]

ENSEMBLES = ("nvt", "npt", "nve")


@dataclass(frozen=True)
class LammpsExport:
    """Paths of the written files."""

    directory: Path
    model: Path
    data: Path
    input: Path
    readme: Path
    species: tuple[str, ...]


@dataclass(frozen=True)
class MDSettings:
    """One LAMMPS run: ensemble, state point and output intervals (units in the names)."""

    ensemble: str = "nvt"
    temperature_K: float = 300.0
    pressure_bar: float | None = None
    steps: int = 10000
    timestep_fs: float = 1.0
    seed: int = 12345
    thermo_every: int = 100
    dump_every: int = 1000
    heat_flux_every: int | None = None

    def validate(self, periodic: bool) -> None:
        if self.ensemble not in ENSEMBLES:
            raise UsageError(f"ensemble must be one of {', '.join(ENSEMBLES)}, got {self.ensemble!r}")
        if self.ensemble == "npt" and self.pressure_bar is None:
            raise UsageError("ensemble npt needs pressure_bar (--pressure-bar)")
        if self.ensemble != "npt" and self.pressure_bar is not None:
            raise UsageError(f"pressure_bar is only used with ensemble npt, not {self.ensemble}")
        if self.ensemble == "npt" and not periodic:
            raise UsageError("ensemble npt needs a structure periodic in all three directions")
        if not self.temperature_K > 0:
            raise UsageError(f"temperature_K must be > 0, got {self.temperature_K}")
        if not self.timestep_fs > 0:
            raise UsageError(f"timestep_fs must be > 0, got {self.timestep_fs}")
        for name in ("steps", "thermo_every", "dump_every", "heat_flux_every"):
            value = getattr(self, name)
            if value is not None and (int(value) != value or value < (0 if name == "steps" else 1)):
                raise UsageError(f"{name} must be a {'non-negative' if name == 'steps' else 'positive'} integer, got {value}")


def _boxed(atoms: Atoms, padding_A: float) -> Atoms:
    """A copy with a cell LAMMPS can hold: a padded bounding box for a non-periodic structure."""
    a = atoms.copy()
    if a.pbc.all():
        return a
    if a.pbc.any():
        if np.any(np.linalg.norm(a.cell.array, axis=1) < 1e-8):
            raise UsageError("a partly periodic structure needs a full cell (three non-zero cell vectors) for LAMMPS")
        return a
    lo, hi = a.positions.min(axis=0), a.positions.max(axis=0)
    a.set_cell(np.diag(hi - lo + 2 * padding_A))
    a.positions = a.positions - lo + padding_A
    return a


def lammps_input(species: Sequence[str], pbc: Sequence[bool], md: MDSettings, model_file: str = "model.mtp",
                 data_file: str = "structure.data") -> str:
    """The text of ``in.lammps`` (LAMMPS ``units metal``: Å, eV, ps, bar, K)."""
    dt_ps = md.timestep_fs * 1e-3
    types = ", ".join(f"type {k + 1} = {s}" for k, s in enumerate(species))
    periodic = all(pbc)
    lines = [
        f"# written by sus2md export-lammps; species: {types}",
        "# needs a LAMMPS built with the authors' ML-SUS2 package (pair_style sus2mtp), see README.md",
        "units           metal",
        "atom_style      atomic",
        "boundary        " + " ".join("p" if p else "s" for p in pbc),
        "newton          on",
        f"read_data       {data_file}",
        "",
        f"pair_style      sus2mtp {model_file}",
        "pair_coeff      * *",
        "",
        "neighbor        2.0 bin",
        "neigh_modify    every 1 delay 0 check yes",
        "",
        f"timestep        {dt_ps:g}",
        f"velocity        all create {md.temperature_K:g} {md.seed} mom yes rot {'no' if periodic else 'yes'} dist gaussian",
    ]
    tdamp, pdamp = 100 * dt_ps, 1000 * dt_ps  # the authors' Cu2Se inputs: 100 and 1000 steps
    if md.ensemble == "nvt":
        lines.append(f"fix             integrate all nvt temp {md.temperature_K:g} {md.temperature_K:g} {tdamp:g}")
    elif md.ensemble == "npt":
        lines.append(f"fix             integrate all npt temp {md.temperature_K:g} {md.temperature_K:g} {tdamp:g} "
                     f"iso {md.pressure_bar:g} {md.pressure_bar:g} {pdamp:g}")
    else:
        lines.append("fix             integrate all nve")
    lines += [
        "",
        "thermo_style    custom step time temp pe ke etotal press vol",
        f"thermo          {md.thermo_every}",
        f"dump            traj all custom {md.dump_every} dump.lammpstrj id type element x y z vx vy vz",
        f"dump_modify     traj element {' '.join(species)} sort id",
    ]
    if md.heat_flux_every:
        lines += _heat_flux_block(md.heat_flux_every)
    lines += ["", f"run             {md.steps}", "write_data      final.data", ""]
    return "\n".join(lines)


def _heat_flux_block(every: int) -> list[str]:
    # c_flux[1..3] is the total current sum_i e_i v_i - sum_i S_i v_i in eV*Å/ps (not divided by V)
    return [
        "",
        "# heat current J (eV*Å/ps, total, not divided by volume), as sus2md's heat_flux.csv",
        "compute         ke_atom all ke/atom",
        "compute         pe_atom all pe/atom",
        "compute         stress_atom all centroid/stress/atom NULL virial",
        "compute         flux all heat/flux ke_atom pe_atom stress_atom",
        "variable        step_now equal step",
        "variable        time_ps equal time",
        "variable        Jx equal c_flux[1]",
        "variable        Jy equal c_flux[2]",
        "variable        Jz equal c_flux[3]",
        f'fix             heat_flux all print {every} "${{step_now}} ${{time_ps}} ${{Jx}} ${{Jy}} ${{Jz}}" '
        'file heat_flux.txt screen no title "# step time_ps Jx Jy Jz"',
    ]


def _readme(species: Sequence[str], md: MDSettings, n_atoms: int) -> str:
    rows = "\n".join(f"| {k + 1} | {k} | {s} |" for k, s in enumerate(species))
    return f"""# LAMMPS run written by `sus2md export-lammps`

{n_atoms} atoms, {md.ensemble} at {md.temperature_K:g} K{f', {md.pressure_bar:g} bar' if md.pressure_bar is not None else ''}, {md.steps} steps of {md.timestep_fs:g} fs.

## Species mapping

LAMMPS atom type k is model species k-1 (`pair_coeff * *` is the only form the pair accepts).

| LAMMPS type | model species index | element |
|---|---|---|
{rows}

## Requirements

`pair_style sus2mtp` is not part of LAMMPS releases: build LAMMPS with the authors' `ML-SUS2`
package (github.com/hu-yanxiao/SUS2-MLIP, `interfaces/lammps`; `scripts/install_into_lammps.sh
/path/to/lammps`, then CMake with `-D PKG_ML-SUS2=on`, plus `-D PKG_KOKKOS=on -D Kokkos_ENABLE_CUDA=on`
for GPUs). It needs `newton on` (set in `in.lammps`). For `*_lmp` radial types the pair
tabulates the radial functions (`tabstep`, default 1e-4 Å); sus2md evaluates them exactly, which
differs by about 1e-9 eV per cell.

## Running

```bash
lmp -in in.lammps                                  # one core
mpirun -np 64 lmp -in in.lammps                    # MPI, one or many nodes
mpirun -np 4 lmp -k on g 4 -sf kk -in in.lammps    # Kokkos, 4 GPUs: -sf kk selects sus2mtp/kk
```

The authors' GPU runs add a `chunksize` keyword (`pair_style sus2mtp/kk model.mtp chunksize 129600`)
to bound device memory. Outputs: `log.lammps` (thermo), `dump.lammpstrj`, `final.data`
{'and `heat_flux.txt` (step, time_ps, Jx, Jy, Jz: total heat current in eV·Å/ps, the columns of sus2md'
 "'s `heat_flux.csv`)" if md.heat_flux_every else ''}.

## Heat current caveat

`compute heat/flux` forms J_a = Σ_i e_i v_ia − Σ_i S_i,ab v_ib and expects the centroid per-atom
stress component xy to be r_x f_y. The authors' `pair_sus2_mtp.cpp` tallies `cvatom[j][xy] -= fx*r[1]`
(d_x r_y: the transpose of that convention, an issue in the stored source we read). The exact
many-body current needs W_j[a,b] = −Σ r_a d_b (see `sus2md/engine/heatflux.py`). Compare with
`sus2md.engine.heatflux.heat_current` on a few frames before trusting LAMMPS Green–Kubo numbers.
"""


def export_lammps(model: str | Path, structure: Atoms, out_dir: str | Path, *, species: Sequence[str] | None = None,
                  md: MDSettings = MDSettings()) -> LammpsExport:
    """Write ``model.mtp``, ``structure.data``, ``in.lammps`` and ``README.md`` into ``out_dir``.

    Args:
        model: ``.mtp`` file.
        structure: Atoms (Å); elements must be among the species.
        species: model element symbols in type order; default: the names stored in the ``.mtp``.
        md: the run to set up.

    Raises:
        UsageError: no species names, bad settings; UnknownSpeciesError: an element the model lacks.
    """
    mtp = read_mtp(model)
    names = list(species) if species is not None else list(mtp.species_names or [])
    if not names:
        raise UsageError(f"{model} does not name its elements; pass species (--species Cu,Se)")
    if len(names) != mtp.species_count:
        raise UsageError(f"{len(names)} species names given ({', '.join(names)}) but the model has "
                         f"species_count = {mtp.species_count}")
    md.validate(bool(np.all(structure.pbc)))
    species_index(structure, names, source="structure")  # raises UnknownSpeciesError with all names
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot create output directory {out}: {e.strerror}") from None
    mtp = mtp.copy()
    mtp.species_names = names
    paths = LammpsExport(out, out / "model.mtp", out / "structure.data", out / "in.lammps", out / "README.md",
                         tuple(names))
    write_mtp(mtp, paths.model)
    atoms = _boxed(structure, padding_A=float(mtp.max_dist))
    ase.io.write(paths.data, atoms, format="lammps-data", specorder=names, masses=True, atom_style="atomic",
                 units="metal")
    paths.input.write_text(lammps_input(names, atoms.pbc.tolist(), md))
    paths.readme.write_text(_readme(names, md, len(atoms)))
    return paths
