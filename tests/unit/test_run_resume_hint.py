"""The hint printed when `sus2md run` is interrupted repeats every option the resume needs."""
import shlex
from pathlib import Path

import pytest

import sus2md.engine.run as engine_run
from sus2md.cli import main

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
SWEEP = "sweep: {parameter: temperature_K, values: [300.0, 400.0]}\n"


@pytest.fixture
def interrupted(monkeypatch):
    """run_protocol stubbed to stop at once as if by SIGINT; records the calls it got."""
    calls = []

    def fake(proto, run_dir, **kw):
        calls.append({"run_dir": Path(run_dir), **kw})
        return engine_run.RunResult(Path(run_dir), "interrupted", 3, 1, 1, 0.1, signal=2)

    monkeypatch.setattr(engine_run, "run_protocol", fake)
    monkeypatch.delenv("SLURM_ARRAY_TASK_ID", raising=False)
    return calls


def _hint(args, capsys) -> list[str]:
    with pytest.raises(SystemExit) as exc:
        main(["run", *args])
    assert exc.value.code == 130
    line = next(ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("interrupted; continue with: "))
    return shlex.split(line.split("continue with: ", 1)[1])


def test_hint_keeps_steps_platform_threads_and_replica(interrupted, capsys, tmp_path):
    proto = tmp_path / "p with space.yaml"
    proto.write_text((CORPUS / "ok.yaml").read_text() + SWEEP)
    out = tmp_path / "r"
    hint = _hint([str(proto), "--out", str(out), "--steps", "7", "--platform", "CPU", "--threads", "1",
                  "--replica", "1"], capsys)
    assert hint == ["sus2md", "run", str(proto), "--out", str(out), "--replica", "1", "--steps", "7",
                    "--platform", "CPU", "--threads", "1", "--resume"]


def test_hint_of_a_sweep_run_replica_by_replica_names_the_replica(interrupted, capsys, tmp_path):
    proto = tmp_path / "p.yaml"
    proto.write_text((CORPUS / "ok.yaml").read_text() + SWEEP)
    hint = _hint([str(proto), "--out", str(tmp_path / "r"), "--steps", "5"], capsys)
    # all replicas in turn: replica 0 runs into r_replica0 and is interrupted there
    assert hint == ["sus2md", "run", str(proto), "--out", str(tmp_path / "r_replica0"), "--replica", "0",
                    "--steps", "5", "--resume"]
    # the hint, run as given, resumes the same directory with the same options
    interrupted.clear()
    _hint(hint[2:], capsys)
    assert interrupted[0]["run_dir"] == tmp_path / "r_replica0"
    assert (interrupted[0]["replica"], interrupted[0]["max_steps"], interrupted[0]["resume"]) == (0, 5, True)


def test_hint_without_options(interrupted, capsys, tmp_path):
    hint = _hint([str(CORPUS / "ok.yaml"), "--out", str(tmp_path / "r")], capsys)
    assert hint == ["sus2md", "run", str(CORPUS / "ok.yaml"), "--out", str(tmp_path / "r"), "--resume"]
