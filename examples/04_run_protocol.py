"""04 -- run a staged MD protocol from Python (what `sus2md run protocol.yaml` does).

    python examples/04_run_protocol.py           # models/emt_alloy.mtp, 256-atom fcc alloy:
                                                 # minimize, NVT 1200 K 1 ps, NPT 1200 K 1 bar 2 ps
                                                 # (384k atom-steps: minutes to a quarter hour)
    python examples/04_run_protocol.py --smoke   # seconds: tiny model, 32 atoms, 2 x 40 steps
    python examples/04_run_protocol.py --protocol protocols/demo.yaml   # any protocol file

A protocol is plain data (the YAML schema of sus2md/protocol.py): ``validate_protocol`` checks
it and resolves it (stage names, ``duration_ps`` -> steps, relative paths against ``base_dir``);
``load_protocol`` does the same for a file.  ``run_protocol`` writes a run directory --
protocol.yaml, topology.pdb, trajectory.dcd (unwrapped), frames.csv, thermo.csv, checkpoint,
provenance.json, final.extxyz -- that ``examples/05_analyze.py`` reads.  A run that exists
resumes from its checkpoint (``resume=True``); ``--fresh`` starts over.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import yaml

from _common import sibling  # examples/ is on sys.path when an example runs as a script

HERE = Path(__file__).resolve().parent

train_ex = sibling("02_train")
openmm_ex = sibling("03_compile_and_openmm")


def protocol_data(workdir: Path, smoke: bool, model: Path | None = None) -> dict:
    """The protocol as a dict; paths relative to ``workdir`` (the base_dir it is validated with)."""
    model = train_ex.model_for(workdir, smoke, model)
    if smoke:
        structure = workdir / "smoke_alloy_32.extxyz"
        openmm_ex.example_atoms(smoke=True).write(structure)
        dyn = {"steps": 40, "timestep_fs": 2.0, "report_interval_steps": 2, "trajectory_interval_steps": 2}
        temperature = 300.0
    else:
        structure = HERE / "data" / "alloy_fcc_256.extxyz"
        dyn = {"timestep_fs": 2.0, "report_interval_steps": 10, "trajectory_interval_steps": 10}
        temperature = 1200.0
    return {
        "structure": {"path": str(structure)},
        "model": {"path": str(model)},          # sus2md-written models name their species
        "platform": "CPU",
        "dtype": "float32",
        "threads": 1 if smoke else None,
        "seed": 1,
        "output": {"checkpoint_interval_steps": 1000, "final_structure_formats": ["extxyz"]},
        "stages": [
            {"type": "minimize", "max_iterations": 50 if smoke else 200},
            {"name": "nvt", "type": "nvt", "temperature_K": temperature,
             **(dyn if smoke else {**dyn, "duration_ps": 1.0})},
            {"name": "npt", "type": "npt", "temperature_K": temperature, "pressure_bar": 1.0,
             "barostat_interval_steps": 10 if smoke else 25,
             **(dyn if smoke else {**dyn, "duration_ps": 2.0})},
        ],
    }


def run(workdir: Path, smoke: bool, protocol_file: Path | None = None, fresh: bool = False,
        model: Path | None = None) -> Path:
    """Run the example protocol (or ``protocol_file``) into ``workdir/md``; returns the run directory."""
    from sus2md.engine.run import run_protocol
    from sus2md.protocol import load_protocol, validate_protocol

    if protocol_file is not None:
        protocol = load_protocol(protocol_file)
        run_dir = workdir / f"md_{protocol_file.stem}"
    else:
        data = {k: v for k, v in protocol_data(workdir, smoke, model).items() if v is not None}
        protocol = validate_protocol(data, source="example protocol", base_dir=workdir)
        (workdir / "example_protocol.yaml").write_text(yaml.safe_dump(data, sort_keys=False))  # for `sus2md run`
        run_dir = workdir / "md"
    if fresh and run_dir.exists():
        shutil.rmtree(run_dir)
    for st in protocol.stages:
        extra = f", {st.steps} steps x {st.timestep_fs} fs" if st.type != "minimize" else ""
        print(f"  stage {st.name}: {st.type}{extra}")
    result = run_protocol(protocol, run_dir, resume=(run_dir / "checkpoint.json").exists(), progress=not smoke)
    print(f"{result.status}: {result.global_step} steps, {result.frames} frames, {result.thermo_rows} thermo rows "
          f"in {result.wall_time_s:.1f} s -> {run_dir}")
    return run_dir


def main(argv: list[str] | None = None) -> int:
    def extra(ap):
        ap.add_argument("--protocol", type=Path, help="run this protocol file instead of the example one")
        ap.add_argument("--fresh", action="store_true", help="delete an earlier run directory first")

    args = train_ex.parse(__doc__.splitlines()[0], argv, extra=extra)
    run_dir = run(args.workdir, args.smoke, args.protocol, args.fresh, args.model)
    with open(run_dir / "thermo.csv") as fh:
        rows = fh.read().splitlines()
    print("last thermo row:", dict(zip(rows[0].split(","), rows[-1].split(","))))
    print(f"next: python examples/05_analyze.py{' --smoke' if args.smoke else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
