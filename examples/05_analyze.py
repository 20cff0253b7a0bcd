"""05 -- analyze a run directory (what `sus2md analyze RUN_DIR` does), and go further with mdtraj.

    python examples/05_analyze.py                 # the run of 04_run_protocol.py (made if missing)
    python examples/05_analyze.py --smoke         # seconds (tiny model, 32 atoms)
    python examples/05_analyze.py --run-dir runs/demo   # any sus2md run directory

``analyze_run`` gives per stage: thermo averages (equilibration discarded, block-averaged error
bars), lattice parameters, partial RDFs and first peaks, MSD and D per element; it writes PNGs,
summary.json and report.md into RUN_DIR/analysis and returns the summary as plain data.
``analyze_runs`` does the same for several runs and adds D(T) with an Arrhenius fit.
``load_run`` gives the raw pieces: the resolved protocol, thermo/frames tables and the
trajectory as an ``mdtraj.Trajectory`` (unwrapped coordinates, nm) for analyses of your own.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from _common import sibling  # examples/ is on sys.path when an example runs as a script

HERE = Path(__file__).resolve().parent

train_ex = sibling("02_train")


def fmt(entry: dict | None, spec: str = ".4g") -> str:
    if not entry or entry.get("mean") is None:
        return "n/a"
    sem = entry.get("sem")
    return f"{entry['mean']:{spec}} ± {sem:.2g}" if sem is not None else f"{entry['mean']:{spec}}"


def main(argv: list[str] | None = None) -> int:
    args = train_ex.parse(__doc__.splitlines()[0], argv,
                          extra=lambda ap: ap.add_argument("--run-dir", type=Path, help="a sus2md run directory"))
    from sus2md.analysis import analyze_run, load_run

    run_dir = args.run_dir or args.workdir / "md"
    if not (run_dir / "thermo.csv").exists():
        if args.run_dir is not None:
            raise SystemExit(f"{run_dir} is not a run directory (no thermo.csv)")
        print(f"[{run_dir} missing: running examples/04_run_protocol.py first]")
        sibling("04_run_protocol").run(args.workdir, args.smoke, model=args.model)

    # 1. the standard analysis
    summary = analyze_run(run_dir)
    print(f"\n{summary['n_atoms']} atoms {summary['composition']}, {summary['n_frames']} frames; "
          f"report: {run_dir / 'analysis' / 'report.md'}")
    print(f"{'stage':<16} {'T (K)':>14} {'E_pot (eV)':>18} {'P (bar)':>16} {'density (g/cm3)':>18}")
    for st in summary["thermo"]:
        av = st["averages"]
        print(f"{st['stage']:<16} {fmt(av.get('temperature_K')):>14} {fmt(av.get('potential_energy_eV')):>18} "
              f"{fmt(av.get('pressure_bar')):>16} {fmt(av.get('density_g_cm3')):>18}")
    for stage, peaks in summary["rdf"].items():
        shown = ", ".join(f"{pair} {p['r_A']:.2f} Å (g={p['g']:.1f})" for pair, p in peaks.items()
                          if isinstance(p, dict) and p.get("r_A") is not None)
        print(f"RDF first peaks, {stage}: {shown}")
    for stage, d in summary["diffusion"].items():
        if "elements" in d:
            shown = ", ".join(f"{el} {x['D_cm2_s']:.2e} cm²/s" for el, x in d["elements"].items()
                              if x.get("D_cm2_s") is not None)
            print(f"D (MSD), {stage}: {shown}")
    last = list(summary["lattice"])[-1]
    lat = summary["lattice"][last]
    print(f"box at the end ({last}): a = {fmt(lat['a_A'])} Å, volume = {fmt(lat['volume_A3'])} Å^3")

    # 2. your own analysis on the raw run data: mdtraj trajectory + thermo table
    import mdtraj as md

    run = load_run(run_dir)
    traj = run.load_trajectory()  # nm, unwrapped, box per frame
    last_stage = run.frames["stage_index"].astype(int) == int(run.frames["stage_index"].max())
    sub = traj[np.flatnonzero(last_stage)]
    pairs = sub.topology.select_pairs("all", "all")
    r, g = md.compute_rdf(sub, pairs, r_range=(0.15, 0.5 * float(sub.unitcell_lengths.min())), n_bins=100)
    print(f"total g(r) of the last stage ({sub.n_frames} frames): highest peak at {10 * r[np.argmax(g)]:.2f} Å")
    temp = run.thermo["temperature_K"][run.thermo["stage_index"] == run.thermo["stage_index"].max()]
    print(f"temperature of the last stage: {np.nanmean(temp):.1f} K over {len(temp)} thermo rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
