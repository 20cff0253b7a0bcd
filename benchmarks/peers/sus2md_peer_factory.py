"""Calculator factories for ``../shared/tools/bench_calc.py --calc py:sus2md_peer_factory:<name>``.

``make``: sus2md's ASE calculator over the EMT-alloy model.  The model file is
``$SUS2MD_PEER_MODEL`` (default ``models/emt_alloy.mtp`` of this checkout) and the precision
``$SUS2MD_DTYPE`` (float64 default, or float32).
``make_asap``: asap3's C++ EMT (a different EMT parameterisation: speed only, not accuracy).
Imports are inside the functions so that either factory loads in a venv without the other package.
"""
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def make():
    from sus2md.interop.ase import SUS2Calculator

    model = os.environ.get("SUS2MD_PEER_MODEL", str(ROOT / "models" / "emt_alloy.mtp"))
    return SUS2Calculator(model, dtype=os.environ.get("SUS2MD_DTYPE", "float64"))


def make_asap():
    from asap3 import EMT

    return EMT()
