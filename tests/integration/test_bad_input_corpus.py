"""The bad-input corpus (tests/corpus, listed in tests/corpus/expected.yaml) through the CLI.

Every entry must exit with its code (2 usage, 1 runtime) and print exactly one ``error: ...``
line, last on stderr, matching its regex, with no traceback; with ``--debug`` the same error
propagates with its traceback.  All entries run in-process (``sus2md.cli.main``; a fresh
interpreter costs seconds of imports); the entries marked ``subprocess`` also run through
``python -m sus2md`` in parallel, to cover the real entry point (``subprocess: debug`` with and
without ``--debug``).
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from sus2md.errors import Sus2mdError

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "corpus"
ENTRIES: list[dict] = yaml.safe_load((CORPUS / "expected.yaml").read_text())["entries"]
SUBPROCESS = [e for e in ENTRIES if e.get("subprocess")]


def _id(entry: dict) -> str:
    """``run-ok.yaml--platform-CUDA`` from ``run {dir}/ok.yaml --platform CUDA --out r_cuda``."""
    words = [Path(w).name if "{dir}" in w else w for w in entry["command"].split()]
    words = [w for k, w in enumerate(words) if w != "tiny.mtp" and w != "--out" and words[k - 1] != "--out"]
    return "-".join(words)


def _platforms() -> set[str]:
    import openmm

    return {openmm.Platform.getPlatform(k).getName() for k in range(openmm.Platform.getNumPlatforms())}


def _skip_reason(entry: dict) -> str | None:
    plat = entry.get("skip_if_platform")
    if plat and plat in _platforms():
        return f"the {plat} platform is available here"
    return None


def _args(entry: dict, where: Path, debug: bool = False) -> list[str]:
    args = shlex.split(entry["command"].format(dir=where))
    if debug:  # a fresh --out, so the debug run meets the same error rather than the first run's directory
        args = ["--debug"] + [a + "_debug" if prev == "--out" else a for prev, a in zip([""] + args, args)]
    return args


def check_message(stderr: str, entry: dict) -> None:
    """Exactly one ``error:`` line, the last one, matching the entry's regex; no traceback."""
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert "Traceback" not in stderr, stderr
    assert len(errors) == 1 and lines[-1] == errors[0], stderr
    assert re.search(entry["message"], errors[0][len("error: "):]), f"{errors[0]!r} !~ {entry['message']!r}"


def _in_process(args: list[str]) -> int:
    from sus2md.cli import main

    try:
        main(args)
    except SystemExit as e:
        return int(e.code or 0)
    return 0


@pytest.fixture(scope="module")
def corpus_copy(tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("corpus") / "corpus"
    shutil.copytree(CORPUS, dest, ignore=shutil.ignore_patterns("make_corpus.py", "__pycache__"))
    return dest


def test_the_corpus_is_large_and_every_file_exists():
    assert len(ENTRIES) >= 30
    for e in ENTRIES:
        assert e["exit"] in (1, 2) and e["message"]
        re.compile(e["message"])
        for word in shlex.split(e["command"]):
            if word.startswith("{dir}/") and not re.search(r"no_such|not_a_dir/", word):
                assert (CORPUS / word[len("{dir}/"):]).exists(), word
    assert any(e["exit"] == 1 for e in ENTRIES) and any(e["exit"] == 2 for e in ENTRIES)


@pytest.mark.parametrize("entry", ENTRIES, ids=_id)
def test_bad_input_gives_one_line_and_its_exit_code(entry, corpus_copy, capsys, monkeypatch):
    reason = _skip_reason(entry)
    if reason:
        pytest.skip(reason)
    monkeypatch.chdir(corpus_copy)
    monkeypatch.delenv("SUS2MD_DEBUG", raising=False)
    code = _in_process(_args(entry, corpus_copy))
    err = capsys.readouterr().err
    assert code == entry["exit"], err
    check_message(err, entry)
    args = _args(entry, corpus_copy)
    if args[0] == "run" and entry["exit"] == 2 and "--out" in args:  # bad input leaves no run directory behind
        out = Path(args[args.index("--out") + 1])
        assert not (out if out.is_absolute() else corpus_copy / out).exists()
    # --debug: the same error propagates (the interpreter prints its traceback)
    with pytest.raises(Sus2mdError) as exc:
        _in_process(_args(entry, corpus_copy, debug=True))
    assert exc.value.exit_code == entry["exit"]
    assert re.search(entry["message"], str(exc.value)), str(exc.value)
    assert exc.value.__traceback__ is not None


@pytest.fixture(scope="module")
def subprocess_results(tmp_path_factory) -> dict[tuple[str, bool], subprocess.CompletedProcess]:
    """Every ``subprocess: true`` entry, plain and with --debug, run in parallel in its own copy."""
    where = tmp_path_factory.mktemp("corpus_sub") / "corpus"
    shutil.copytree(CORPUS, where, ignore=shutil.ignore_patterns("make_corpus.py", "__pycache__"))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    env.pop("SUS2MD_DEBUG", None)
    jobs = [(e["command"], False) for e in SUBPROCESS if not _skip_reason(e)]
    jobs += [(e["command"], True) for e in SUBPROCESS if e["subprocess"] == "debug" and not _skip_reason(e)]

    def one(job):
        command, debug = job
        entry = next(e for e in SUBPROCESS if e["command"] == command)
        cmd = [sys.executable, "-m", "sus2md", *_args(entry, where, debug)]
        return job, subprocess.run(cmd, cwd=where, env=env, capture_output=True, text=True, timeout=300)

    with ThreadPoolExecutor(max_workers=len(jobs) or 1) as pool:
        return dict(pool.map(one, jobs))


@pytest.mark.parametrize("entry", SUBPROCESS, ids=_id)
def test_bad_input_through_python_m_sus2md(entry, subprocess_results):
    reason = _skip_reason(entry)
    if reason:
        pytest.skip(reason)
    plain = subprocess_results[(entry["command"], False)]
    assert plain.returncode == entry["exit"], plain.stderr
    check_message(plain.stderr, entry)
    if entry["subprocess"] != "debug":
        return
    debug = subprocess_results[(entry["command"], True)]
    assert debug.returncode != 0
    assert "Traceback (most recent call last)" in debug.stderr, debug.stderr
    last = [ln for ln in debug.stderr.splitlines() if ln.strip()][-1]
    assert last.startswith("sus2md.errors.") and re.search(entry["message"], last), last
