"""Fuzzing the file readers: any mutation of a valid ``.mtp`` / ``.cfg`` either parses or raises a
:class:`~sus2md.errors.Sus2mdError` (one line, naming the file) -- never another exception type.

Mutations (hypothesis, bounded examples): delete / duplicate / swap lines, truncate at a byte,
replace a byte, replace a number token with an edge value (nan, inf, 1e400, -1, huge ints,
text), insert random text or invalid UTF-8.  A mutated ``.mtp`` that parses must also build a
model that evaluates a small cell (the reader's consistency checks are the model's contract).
"""
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sus2md.errors import Sus2mdError
from sus2md.io.cfg import read_cfg, write_cfg
from sus2md.io.mtp import format_mtp, read_mtp
from sus2md.nn.calc import evaluate, graph_from_atoms
from sus2md.nn.potential import SUS2Potential
from sus2md.train.init_model import init_mtp
from tests.unit.helpers import cluster, random_model, small_cell

NUMBER = re.compile(rb"[-+]?\d+(\.\d*)?([eE][-+]?\d+)?")
EDGE_NUMBERS = [b"nan", b"inf", b"-inf", b"1e400", b"-1", b"0", b"-0", b"2", b"3", b"999999999999999999999",
                b"1.5", b"abc", b"", b"1e-400", b"0x10", b"1_0", b"+", b"--1", b"4", b"120", b"-2147483649"]
BYTES = [b"{", b"}", b",", b"=", b" ", b"\t", b"\n", b"\r", b"-", b".", b"e", b"\xff", b"\x00", b"9", b"0", b"\xc3\xa9"]

OPS = st.one_of(
    st.tuples(st.just("delete"), st.integers(0, 10**6)),
    st.tuples(st.just("duplicate"), st.integers(0, 10**6)),
    st.tuples(st.just("swap"), st.integers(0, 10**6), st.integers(0, 10**6)),
    st.tuples(st.just("truncate"), st.integers(0, 10**6)),
    st.tuples(st.just("byte"), st.integers(0, 10**6), st.sampled_from(BYTES)),
    st.tuples(st.just("number"), st.integers(0, 10**6), st.sampled_from(EDGE_NUMBERS)),
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.text(max_size=30).map(lambda s: s.encode("utf-8", "surrogatepass"))),
)


def mutate(data: bytes, ops) -> bytes:
    for op, *args in ops:
        lines = data.split(b"\n")
        k = args[0] % max(len(lines), 1)
        if op == "delete":
            del lines[k]
        elif op == "duplicate":
            lines.insert(k, lines[k])
        elif op == "swap":
            m = args[1] % len(lines)
            lines[k], lines[m] = lines[m], lines[k]
        elif op == "insert":
            lines.insert(k, args[1])
        if op in ("delete", "duplicate", "swap", "insert"):
            data = b"\n".join(lines)
        elif op == "truncate":
            data = data[: args[0] % (len(data) + 1)]
        elif op == "byte" and data:
            p = args[0] % len(data)
            data = data[:p] + args[1] + data[p + 1:]
        elif op == "number":
            found = list(NUMBER.finditer(data))
            if found:
                m = found[args[0] % len(found)]
                data = data[: m.start()] + args[1] + data[m.end():]
    return data


def mtp_seeds() -> list[bytes]:
    trained = format_mtp(random_model().to_mtp())
    untrained = format_mtp(init_mtp(2, 2, ["Cu", "Se"], 4.5, radial_basis_size=4))
    return [trained.encode(), untrained.encode()]


def cfg_seeds(tmp_path_factory) -> list[bytes]:
    d = tmp_path_factory.mktemp("seed")
    a = small_cell(seed=1, triclinic=True)
    from ase.calculators.singlepoint import SinglePointCalculator

    a.calc = SinglePointCalculator(a, energy=-3.5, forces=np.ones((len(a), 3)), stress=np.arange(6.0))
    a.info.update(config_type="bulk", EnergyWeight=2.0)
    write_cfg(d / "a.cfg", [a, cluster(3)])
    return [(d / "a.cfg").read_bytes()]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


SETTINGS = settings(max_examples=150, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _check(reader, path, data: bytes):
    path.write_bytes(data)
    try:
        return reader(path)
    except Sus2mdError as e:
        msg = str(e)
        assert "\n" not in msg and str(path.name) in msg, msg
    return None


def _read_and_run_mtp(path):
    """A file read_mtp accepts must also build a model that evaluates a 4-atom cell."""
    mtp = read_mtp(path)
    model = SUS2Potential(mtp)
    atoms = small_cell()
    atoms.arrays["mtp_type"] %= mtp.species_count
    evaluate(model, graph_from_atoms([atoms], model.cutoff))
    return mtp


_MTP = mtp_seeds()


@SETTINGS
@given(seed=st.sampled_from(range(len(_MTP))), ops=st.lists(OPS, min_size=1, max_size=4))
def test_read_mtp_survives_mutations(work, seed, ops):
    _check(_read_and_run_mtp, work / "m.mtp", mutate(_MTP[seed], ops))


@pytest.fixture(scope="module")
def cfg_seed(tmp_path_factory):
    return cfg_seeds(tmp_path_factory)[0]


@SETTINGS
@given(ops=st.lists(OPS, min_size=1, max_size=4))
def test_read_cfg_survives_mutations(work, cfg_seed, ops):
    _check(read_cfg, work / "c.cfg", mutate(cfg_seed, ops))
    _check(lambda p: read_cfg(p, species=["Cu", "Se"]), work / "c.cfg", mutate(cfg_seed, ops))


@settings(max_examples=60, deadline=None, derandomize=True)
@given(text=st.binary(max_size=200))
def test_random_bytes_never_crash_either_reader(tmp_path_factory, text):
    d = tmp_path_factory.getbasetemp()
    _check(read_mtp, d / "r.mtp", b"MTP\nversion = 1.1.0\n" + text)
    _check(read_cfg, d / "r.cfg", b"BEGIN_CFG\n" + text)
