"""Compile a SUS2 model to a self-describing TorchScript file for OpenMM's ``TorchForce``.

The file holds :class:`OpenMMAdapter` (the model plus a unit/neighbor-list shell) and a JSON
member ``sus2md_metadata.json`` (species, cutoff, units, dtype, versions, source model hash).
The adapter speaks OpenMM's units and does the conversion at one boundary::

    r_A = 10 r_nm,     E_kJ/mol = E_eV * EV_TO_KJ_PER_MOL,     F_kJ/mol/nm = F_eV/Å * EV_TO_KJ_PER_MOL * 10

The compiled file is structure-independent: the per-particle species are bound when the force
is created (:meth:`OpenMMAdapter.set_species`).  Neighbors are all periodic images within r_c
(:func:`sus2md.nn.neighbors.neighbor_list`), so triclinic cells and cells thinner than 2 r_c work.
"""
from __future__ import annotations

import copy
import datetime
import json
import warnings
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor

import sus2md
from sus2md.errors import ModelFileError, UsageError
from sus2md.io.mtp import file_sha256
from sus2md.nn.calc import edge_forces
from sus2md.nn.neighbors import edge_vectors, neighbor_list
from sus2md.nn.potential import SUS2Potential
from sus2md.units import EV_TO_KJ_PER_MOL, NM_TO_ANGSTROM

__all__ = ["OpenMMAdapter", "PaddedAdapter", "compile_for_openmm", "load_compiled", "scripted_adapter", "FORMAT_VERSION", "UNITS"]

FORMAT_VERSION = 1
#: Verlet skin of the neighbor list inside the adapter (Å); 0 rebuilds it at every call.
DEFAULT_SKIN_A = 0.5
METADATA_NAME = "sus2md_metadata.json"
UNITS = "positions nm, box nm, energy kJ/mol, forces kJ/mol/nm"
DTYPES = {"float32": torch.float32, "float64": torch.float64}
_RECOMPILE = "recompile it with `sus2md compile MODEL.mtp -o MODEL.pt`"



def _require_species(n_bound: int, n: int) -> None:
    """The species bound to the force must cover every particle of the system."""
    if n_bound != n:
        raise RuntimeError(
            "sus2md: species are bound for " + str(n_bound) + " particles but the system has "
            + str(n) + "; create the force with sus2md.engine.to_openmm_force (or call set_species)")

class OpenMMAdapter(torch.nn.Module):
    """OpenMM ``TorchForce`` contract around a :class:`SUS2Potential`.

    ``forward(positions (N, 3) nm, boxvectors (3, 3) nm rows or None) -> (energy, forces)``:
    energy a float64 scalar in kJ/mol, forces (N, 3) kJ/mol/nm in the dtype of ``positions``
    (use ``TorchForce.setOutputsForces(True)``).  ``boxvectors=None`` means a non-periodic cluster.
    Inputs are cast to the model's dtype and device inside; site energies are summed in float64.
    """

    def __init__(self, model: SUS2Potential, skin_A: float = DEFAULT_SKIN_A):
        super().__init__()
        self.model = model
        self.cutoff = float(model.cutoff)
        self.skin = float(skin_A)
        self.nm_to_A = float(NM_TO_ANGSTROM)
        self.ev_to_kj = float(EV_TO_KJ_PER_MOL)
        self.register_buffer("species", torch.zeros(0, dtype=torch.long))
        # Verlet list: pairs within r_c + skin, kept until an atom moved more than skin/2 or the
        # box changed; each call keeps only the pairs inside r_c (cheap), so results are exact.
        self.register_buffer("nl_pos", torch.zeros((0, 3), dtype=torch.float64))
        self.register_buffer("nl_cell", torch.zeros((3, 3), dtype=torch.float64))
        self.register_buffer("nl_i", torch.zeros(0, dtype=torch.long))
        self.register_buffer("nl_j", torch.zeros(0, dtype=torch.long))
        self.register_buffer("nl_shifts", torch.zeros((0, 3), dtype=torch.float64))
        self.nl_builds = 0
        # analytic=True: forces from the model's explicit reverse pass (no autograd), which
        # torch.compile can fuse (the "compiled" python backend); TorchScript uses autograd.
        self.analytic = False

    def _neighbors(self, pos: Tensor, cell: Tensor, pbc: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """Pairs within r_c, from the cached Verlet list when it is still valid."""
        if self.skin <= 0.0:
            return neighbor_list(pos, cell, pbc, self.cutoff)
        p64 = pos.to(torch.float64)
        c64 = cell.to(torch.float64)
        stale = self.nl_pos.shape[0] != pos.shape[0] or not torch.equal(self.nl_cell, c64)
        if not stale:
            disp = p64 - self.nl_pos.to(p64.device)
            stale = bool(((disp * disp).sum(dim=1) > 0.25 * self.skin * self.skin).any())
        if stale:
            i, j, shifts = neighbor_list(pos, cell, pbc, self.cutoff + self.skin)
            self.nl_pos = p64.clone()
            self.nl_cell = c64.clone()
            self.nl_i = i
            self.nl_j = j
            self.nl_shifts = shifts.to(torch.float64)
            self.nl_builds += 1
        vec = edge_vectors(pos, cell, self.nl_i, self.nl_j, self.nl_shifts.to(pos.dtype))
        keep = torch.nonzero((vec * vec).sum(dim=1) < self.cutoff * self.cutoff).squeeze(1)
        return self.nl_i.index_select(0, keep), self.nl_j.index_select(0, keep), self.nl_shifts.index_select(0, keep).to(pos.dtype)

    @torch.jit.export
    def set_species(self, species: Tensor) -> None:
        """Bind the (N,) int64 model species index of every particle."""
        self.species = species.to(device=self.species.device, dtype=torch.long)

    def forward(self, positions: Tensor, boxvectors: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        n = positions.shape[0]
        _require_species(self.species.shape[0], n)
        dtype = self.model.shift.dtype
        device = self.species.device
        pos = positions.detach().to(device=device, dtype=dtype) * self.nm_to_A
        if boxvectors is None:
            cell = torch.zeros((3, 3), dtype=dtype, device=device)
            pbc = torch.zeros(3, dtype=torch.bool, device=device)
        else:
            cell = boxvectors.detach().to(device=device, dtype=dtype) * self.nm_to_A
            pbc = torch.ones(3, dtype=torch.bool, device=device)
        i, j, shifts = self._neighbors(pos, cell, pbc)
        if self.analytic:
            e_site, d = self.model.energies_and_edge_gradients(self.species, i, j, edge_vectors(pos, cell, i, j, shifts))
            energy = e_site.to(torch.float64).sum()
        else:
            vec = edge_vectors(pos, cell, i, j, shifts).requires_grad_(True)  # needs grad mode on
            energy = self.model(self.species, i, j, vec).to(torch.float64).sum()
            grads = torch.autograd.grad([energy], [vec])
            g = grads[0]
            d = g if g is not None else torch.zeros_like(vec)
        f = edge_forces(n, i, j, d)
        forces = (f * (self.ev_to_kj * self.nm_to_A)).to(device=positions.device, dtype=positions.dtype)
        return (energy.detach() * self.ev_to_kj).to(positions.device), forces



class PaddedAdapter(OpenMMAdapter):
    """Eager :class:`OpenMMAdapter` for ``torch.compile`` (the ``compiled`` PythonForce backend).

    Same contract and units as :class:`OpenMMAdapter`.  The Verlet list (pairs within r_c + skin,
    rebuilt when an atom moved more than skin/2 or the box changed) is stored per centre atom,
    padded to J slots (a multiple of ``slot_multiple``), in equal chunks of at most
    ``chunk_atoms`` centres: centre indices (C,), neighbour index (C, J), Cartesian image shift
    (C, 3, J) and neighbour species (C, J).  Centres are grouped by neighbour count, so each
    chunk's J is close to its own largest count.  Every call evaluates all slots with
    :meth:`SUS2Potential.padded_energies_and_gradients`; pairs beyond r_c contribute exactly 0,
    so nothing is pruned or repacked between rebuilds.  Chunks keep the working set of a call
    independent of N (cache-sized), so the per-atom cost does not grow with the system.
    :meth:`step` (one chunk: positions Å float64 -> energy eV; forces eV/Å added in place) is
    what ``torch.compile`` compiles.  Not scriptable.
    """

    def __init__(self, model: SUS2Potential, skin_A: float = DEFAULT_SKIN_A, chunk_atoms: int = 512,
                 slot_multiple: int = 8):
        super().__init__(model, skin_A)
        self.analytic = True
        self.chunk_atoms = int(chunk_atoms)
        self.slot_multiple = int(slot_multiple)
        self.chunks: List[Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]] = []
        self.step = self._step

    @property
    def n_slots(self) -> int:
        """Neighbour slots of all chunks (padded edges evaluated per call)."""
        return sum(int(c[2].numel()) for c in self.chunks)

    def set_species(self, species: Tensor) -> None:
        super().set_species(species)
        self.chunks = []  # rebuild at the next call
        self.nl_pos = torch.zeros((0, 3), dtype=torch.float64, device=self.species.device)

    def _rebuild(self, pos: Tensor, cell: Tensor, pbc: Tensor) -> None:
        """Chunked, padded per-centre Verlet list of the float64 positions ``pos`` (Å)."""
        n = pos.shape[0]
        device = pos.device
        i, j, shifts = neighbor_list(pos, cell, pbc, self.cutoff + max(self.skin, 0.0))
        if i.shape[0] > 1 and not bool((i[1:] >= i[:-1]).all()):
            order = torch.argsort(i, stable=True)
            i, j, shifts = i[order], j[order], shifts[order]
        counts = torch.bincount(i, minlength=n)
        m = self.slot_multiple
        width = max(m, ((int(counts.max()) if i.shape[0] > 0 else 0) + m - 1) // m * m)
        slot = torch.arange(i.shape[0], device=device) - (torch.cumsum(counts, 0) - counts).index_select(0, i)
        nbr = torch.arange(n, device=device).unsqueeze(1).repeat(1, width)  # padding: the atom itself ...
        nbr[i, slot] = j
        shift = torch.zeros((n, width, 3), dtype=torch.float64, device=device)
        shift[:, :, 0] = self.cutoff + 1.0  # ... one r_c + 1 Å away: beyond the cutoff, contributes 0
        shift[i, slot] = shifts.to(torch.float64) @ cell
        shift = shift.transpose(1, 2)
        by_count = torch.argsort(counts, descending=True, stable=True)
        n_chunks = max(1, -(-n // max(1, self.chunk_atoms)))  # equal chunks: no tiny last one
        bounds = [k * n // n_chunks for k in range(n_chunks + 1)]
        self.chunks = []
        for start, stop in zip(bounds[:-1], bounds[1:]):
            if stop == start:
                continue
            centre = torch.sort(by_count[start:stop]).values
            w = max(m, (int(counts.index_select(0, centre).max()) + m - 1) // m * m)
            c_nbr = nbr.index_select(0, centre)[:, :w].contiguous()
            self.chunks.append((centre, self.species.index_select(0, centre), c_nbr,
                                shift.index_select(0, centre)[:, :, :w].contiguous(),
                                self.species.index_select(0, c_nbr.reshape(-1)).reshape(c_nbr.shape)))
        self.nl_pos = pos.clone()
        self.nl_cell = cell.clone()
        self.nl_builds += 1

    def _step(self, pos: Tensor, forces: Tensor, centre: Tensor, species: Tensor, nbr: Tensor, nbr_shift: Tensor,
              nbr_species: Tensor) -> Tensor:
        """One chunk: energy (float64 scalar, eV) of its ``centre`` atoms for positions (N, 3) Å
        float64; adds the forces (eV/Å) of the chunk's edges to ``forces`` (N, 3) in place
        (F_i += d_ij, F_j -= d_ij), so a chunk costs nothing proportional to N."""
        nc = centre.shape[0]
        vec = (pos.index_select(0, nbr.reshape(-1)).reshape(nc, -1, 3) - pos.index_select(0, centre).unsqueeze(1)).transpose(1, 2) + nbr_shift
        e_site, d = self.model.padded_energies_and_gradients(species, vec.to(self.model.shift.dtype), nbr_species)
        forces.index_add_(0, centre, d.sum(2)).index_add_(0, nbr.reshape(-1), d.transpose(1, 2).reshape(-1, 3), alpha=-1)
        return e_site.to(torch.float64).sum()

    def forward(self, positions: Tensor, boxvectors: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        n = positions.shape[0]
        _require_species(self.species.shape[0], n)
        device = self.species.device
        pos = positions.detach().to(device=device, dtype=torch.float64) * self.nm_to_A
        if boxvectors is None:
            cell = torch.zeros((3, 3), dtype=torch.float64, device=device)
            pbc = torch.zeros(3, dtype=torch.bool, device=device)
        else:
            cell = boxvectors.detach().to(device=device, dtype=torch.float64) * self.nm_to_A
            pbc = torch.ones(3, dtype=torch.bool, device=device)
        stale = (self.nl_pos.shape[0] != n or self.nl_pos.device != device or not torch.equal(self.nl_cell, cell)
                 or (len(self.chunks) > 0 and self.chunks[0][0].device != device))
        if not stale:
            disp = pos - self.nl_pos
            stale = bool(((disp * disp).sum(dim=1) > 0.25 * self.skin * self.skin).any())
        if stale:
            self._rebuild(pos, cell, pbc)
        energy = torch.zeros((), dtype=torch.float64, device=device)
        f = torch.zeros((n, 3), dtype=self.model.shift.dtype, device=device)
        with torch.no_grad():
            for chunk in self.chunks:
                energy = energy + self.step(pos, f, *chunk)
        forces = (f * (self.ev_to_kj * self.nm_to_A)).to(device=positions.device, dtype=positions.dtype)
        return (energy * self.ev_to_kj).to(positions.device), forces

def _as_model(model: SUS2Potential | str | Path, species: Sequence[str] | None, dtype: torch.dtype) -> SUS2Potential:
    """A private copy of ``model`` in ``dtype`` with element names attached."""
    if isinstance(model, SUS2Potential):
        pot = copy.deepcopy(model).to(dtype)
        if species is not None:
            if len(species) != pot.n_species:
                raise UsageError(f"{len(species)} species names given ({', '.join(species)}) but the model has {pot.n_species} species")
            pot.species_names = list(species)
    else:
        pot = SUS2Potential.from_mtp(str(model), dtype=dtype, species=list(species) if species else None)
    if not pot.species_names:
        raise UsageError(
            f"the model names no elements ({pot.n_species} species); pass species=[...] "
            "(`--species Cu,Se`), in the model's type order")
    for p in pot.parameters():
        p.requires_grad_(False)
    return pot.eval()


def scripted_adapter(model: SUS2Potential | str | Path, species: Sequence[str] | None = None,
                     dtype: str = "float64") -> torch.jit.ScriptModule:
    """:class:`OpenMMAdapter` for ``model`` (an ``.mtp`` path or a model), scripted, in memory."""
    if dtype not in DTYPES:
        raise UsageError(f"dtype must be float32 or float64, got {dtype!r}")
    return torch.jit.script(OpenMMAdapter(_as_model(model, species, DTYPES[dtype])))


def compile_for_openmm(model: SUS2Potential | str | Path, path_out: str | Path, *,
                       species: Sequence[str] | None = None, dtype: str = "float32") -> dict:
    """Write ``model`` as a TorchScript file for ``TorchForce`` and return its metadata.

    Args:
        model: an ``.mtp`` path or a :class:`SUS2Potential` (copied, not modified).
        path_out: the ``.pt`` file to write.
        species: element symbols in type order; required when the model names none.
        dtype: ``float32`` or ``float64``, the precision the model evaluates in.
    """
    module = scripted_adapter(model, species, dtype)
    source = None if isinstance(model, SUS2Potential) else Path(model)
    meta = {
        "format": "sus2md-openmm",
        "format_version": FORMAT_VERSION,
        "species": list(module.model.species_names),
        "cutoff_A": float(module.cutoff),
        "units": UNITS,
        "outputs_forces": True,
        "dtype": dtype,
        "sus2md_version": sus2md.__version__,
        "torch_version": torch.__version__,
        "source_model": {"path": str(source.resolve()) if source else None,
                         "sha256": file_sha256(source) if source else None},
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    path_out = Path(path_out)
    try:
        torch.jit.save(module, str(path_out), _extra_files={METADATA_NAME: json.dumps(meta, indent=1)})
    except (OSError, RuntimeError) as e:
        raise UsageError(f"cannot write {path_out}: {e}") from None
    return meta


def load_compiled(path: str | Path) -> tuple[torch.jit.ScriptModule, dict]:
    """Load a file written by :func:`compile_for_openmm` and check its metadata.

    Raises:
        ModelFileError: missing file, not TorchScript, not a sus2md model, or another format_version.
    Warns:
        UserWarning: the file was made with another torch major.minor than the running one.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(path, None, "file not found")
    extra = {METADATA_NAME: ""}
    try:
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except RuntimeError:
        raise ModelFileError(path, None, f"not a TorchScript file; {_RECOMPILE}") from None
    raw = extra[METADATA_NAME]
    try:
        meta = json.loads(raw) if raw else None
    except ValueError:
        meta = None
    if not isinstance(meta, dict) or meta.get("format") != "sus2md-openmm":
        raise ModelFileError(path, None, f"not a sus2md compiled model (no valid {METADATA_NAME}); {_RECOMPILE}")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(
            path, None, f"made by sus2md {meta.get('sus2md_version', '?')} with format_version "
            f"{meta.get('format_version')}, this sus2md {sus2md.__version__} reads format_version {FORMAT_VERSION}; {_RECOMPILE}")
    made, running = _major_minor(str(meta.get("torch_version", "?"))), _major_minor(torch.__version__)
    if made != running:
        warnings.warn(f"{path}: compiled with torch {made}, running torch {running}; if loading or "
                      f"evaluation fails, {_RECOMPILE}", stacklevel=2)
    return module, meta


def _major_minor(version: str) -> str:
    return ".".join(version.split("+")[0].split(".")[:2])
