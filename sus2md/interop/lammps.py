"""Export a SUS2 model and a structure as a ready-to-run LAMMPS directory.

The authors' LAMMPS interface (github hu-yanxiao/SUS2-MLIP, ``interfaces/lammps``, package
``ML-SUS2``) provides ``pair_style sus2mtp`` (CPU) and ``sus2mtp/kk`` (Kokkos, GPU)::

    pair_style sus2mtp model.mtp [tabstep 1.0e-4]        # tabstep: radial table spacing, Å
    pair_coeff * *

It needs ``newton on`` and builds its own full neighbor list; only ``pair_coeff * *`` is accepted
and LAMMPS atom type k is model species k-1 (SPEC-sus2 7).  The pair tallies per-atom energies
and the 9-component centroid per-atom virial, but with the off-diagonal components transposed
(it stores r_y·F_x as xy; confirmed by an independent finite-difference heat current), so
``compute heat/flux`` needs the swapped components the written README.md lists.  The ``.mtp`` file is read by the pair itself; the element
names that sus2md keeps in ``potential_name`` (``...[Cu,Se]``) are ignored there.

Files written to the output directory:

* ``model.mtp``       the model (:func:`sus2md.io.mtp.write_mtp`, element names attached);
* ``structure.data``  LAMMPS data file, ``atom_style atomic``, types in model species order, masses;
  the cell is reduced to LAMMPS' tilt limits (``|xy|, |xz| <= lx/2``, ``|yz| <= ly/2`` along
  periodic directions; ASE's ``reduce_cell``: lattice vectors plus integer multiples of the
  others, atoms wrapped into it), so a strongly skewed cell (a strained primitive cell) is the
  same crystal and LAMMPS runs it without ``box tilt large``;
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
from ase.calculators.lammps import Prism

from sus2md.errors import UsageError
from sus2md.io.data import species_index
from sus2md.io.mtp import read_mtp, write_mtp
from sus2md.io.structures import validate_structure

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
        if not (int(self.seed) == self.seed and self.seed >= 1):
            raise UsageError(f"seed must be a positive integer (LAMMPS 'velocity create' needs a seed > 0), got {self.seed}")
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
    hf = (", so also `heat_flux.txt` of this directory, which `in.lammps` takes from `compute heat/flux`"
          if md.heat_flux_every else "")
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
for GPUs). It needs `newton on` (set in `in.lammps`).

For `*_lmp` radial types the pair tabulates the radial functions (`tabstep`, default 1e-4 Å) and
interpolates linearly; sus2md evaluates them exactly. Measured against LAMMPS on a 1500-atom
Cu2Se cell at the default tabstep: 1.1e-6 eV per cell (7.6e-10 eV/atom) in the energy and 3e-8
eV/Å in the forces. The difference falls as tabstep² (`pair_style sus2mtp model.mtp tabstep
1.0e-5` makes it 100 times smaller). Other radial types are evaluated exactly by both and agree
to float64 round-off.

`structure.data` holds the cell reduced to LAMMPS' tilt limits (|xy|, |xz| ≤ lx/2, |yz| ≤ ly/2):
the same crystal with other lattice vectors and the atoms wrapped into it, so `final.data` and
the dump use that cell.

## Running

```bash
lmp -in in.lammps                                  # one core
mpirun -np 64 lmp -in in.lammps                    # MPI, one or many nodes
mpirun -np 4 lmp -k on g 4 -sf kk -in in.lammps    # Kokkos, 4 GPUs: -sf kk selects sus2mtp/kk
```

The authors' GPU runs add a `chunksize` keyword (`pair_style sus2mtp/kk model.mtp chunksize 129600`)
to bound device memory. Outputs: `log.lammps` (thermo), `dump.lammpstrj`, `final.data`
{'and `heat_flux.txt` (step, time_ps, Jx, Jy, Jz: total heat current in eV·Å/ps, the columns of sus2md'
 "'s `heat_flux.csv`, but see the per-atom virial below)" if md.heat_flux_every else ''}.

## Per-atom virial: swap the off-diagonal components (confirmed)

`pair_style sus2mtp` stores the off-diagonal components of its per-atom (centroid) virial
transposed. LAMMPS defines component xy of atom i as Σ r_x·F_y; the pair stores r_y·F_x there
(`pair_sus2_mtp.cpp`: `cvatom[j][xy] -= fx*r[1]`). This is confirmed: an independent
finite-difference heat current agrees with the swapped components and not with the stored
ones. The total virial, the pressure and the diagonal components (xx, yy, zz) are right;
per-atom energies and forces are right.

What is wrong is everything built from the per-atom off-diagonal components, above all
`compute heat/flux` (heat current, Green–Kubo conductivity){hf}. `compute centroid/stress/atom`
lists the nine components as `c_ID[1..9]` = xx yy zz xy xz yz yx zx zy; swap these six:

| component (slot) | the pair stores there | swap with |
|---|---|---|
| xy (`c_ID[4]`) | yx = Σ r_y·F_x | `c_ID[7]` |
| yx (`c_ID[7]`) | xy = Σ r_x·F_y | `c_ID[4]` |
| xz (`c_ID[5]`) | zx = Σ r_z·F_x | `c_ID[8]` |
| zx (`c_ID[8]`) | xz = Σ r_x·F_z | `c_ID[5]` |
| yz (`c_ID[6]`) | zy = Σ r_z·F_y | `c_ID[9]` |
| zy (`c_ID[9]`) | yz = Σ r_y·F_z | `c_ID[6]` |

In post-processing, transpose each atom's 3×3 tensor. In the input, build the heat current
from the swapped components instead of `compute heat/flux` (metal units: 1.6021765e6 bar·Å³
per eV is LAMMPS' `nktv2p`, which heat/flux divides by):

```
compute         ke_atom all ke/atom
compute         pe_atom all pe/atom
compute         S all centroid/stress/atom NULL virial
variable        e atom c_ke_atom+c_pe_atom
variable        jx atom v_e*vx-(c_S[1]*vx+c_S[7]*vy+c_S[8]*vz)/1.6021765e6
variable        jy atom v_e*vy-(c_S[4]*vx+c_S[2]*vy+c_S[9]*vz)/1.6021765e6
variable        jz atom v_e*vz-(c_S[5]*vx+c_S[6]*vy+c_S[3]*vz)/1.6021765e6
compute         J all reduce sum v_jx v_jy v_jz    # c_J[1..3]: total heat current, eV·Å/ps
```

`sus2md.engine.heatflux.heat_current` computes the exact many-body current (W_j[a,b] = −Σ r_a d_b)
on a few frames for comparison.
"""


def export_lammps(model: str | Path, structure: Atoms, out_dir: str | Path, *, species: Sequence[str] | None = None,
                  md: MDSettings = MDSettings(), source: str = "structure") -> LammpsExport:
    """Write ``model.mtp``, ``structure.data``, ``in.lammps`` and ``README.md`` into ``out_dir``.

    Args:
        model: ``.mtp`` file.
        structure: Atoms (Å); elements must be among the species.
        species: model element symbols in type order; default: the names stored in the ``.mtp``.
        md: the run to set up.
        source: the structure's name in messages (its file name).

    Raises:
        UsageError: no species names, bad settings; UnknownSpeciesError: an element the model
        lacks; StructureError: no atoms, non-finite positions, a degenerate cell, overlapping atoms.
    """
    mtp = read_mtp(model)
    names = list(species) if species is not None else list(mtp.species_names or [])
    if not names:
        raise UsageError(f"{model} does not name its elements; pass species (--species Cu,Se)")
    if len(names) != mtp.species_count:
        raise UsageError(f"{len(names)} species names given ({', '.join(names)}) but the model has "
                         f"species_count = {mtp.species_count}")
    md.validate(bool(np.all(structure.pbc)))
    species_index(structure, names, source=source)  # raises UnknownSpeciesError with all names
    validate_structure(structure, source=source)  # before anything is written
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
    # reduced within LAMMPS' tilt limits; ASE's default Prism would treat every direction as
    # periodic (reducing or wrapping along a non-periodic one changes the structure)
    prism = Prism(atoms.cell.array, pbc=atoms.pbc, reduce_cell=True)
    ase.io.write(paths.data, atoms, format="lammps-data", specorder=names, masses=True, atom_style="atomic",
                 units="metal", prismobj=prism)
    paths.input.write_text(lammps_input(names, atoms.pbc.tolist(), md))
    paths.readme.write_text(_readme(names, md, len(atoms)))
    return paths
