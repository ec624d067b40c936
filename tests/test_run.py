"""`mlsnap run`: the command is recorded with the snapshot, or no snapshot is taken at all."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import mlsnap
from tests.helpers import git, tree_digest
from tests.helpers import mlsnap as cli

RUN = ["run", "-o", "model.pkl", "--data", "data/train.csv", "--params", "params.yaml",
       "--metrics", "metrics.json"]


def snapshot_count(root: Path) -> int:
    return len(git(root, "log", "--format=%s", "--grep=^mlsnap: model:").splitlines())


def manifest(root: Path) -> dict[str, object]:
    return json.loads(cli(root, "show", "--json").stdout)


def test_run_records_the_command_its_output_and_what_it_imported(project: Path) -> None:
    proc = cli(project, *RUN, "-M", "baseline", "--", sys.executable, "train.py")
    assert "snapshot model:" in proc.stdout and "ran `" in proc.stdout
    m = manifest(project)
    run = m["run"]
    assert isinstance(run, dict)
    assert run["cmd"] == [sys.executable, "train.py"]
    assert run["cwd"] == "." and run["exit_code"] == 0
    assert run["started"].endswith("Z") and run["duration_s"] >= 0
    env = m["environment"]
    assert isinstance(env, dict) and "pyyaml" in env["imported"]  # train.py imports yaml
    assert git(project, "status", "--short") == ""
    assert snapshot_count(project) == 1


def test_run_keeps_the_tail_of_the_output_and_redacts_secrets(project: Path) -> None:
    script = ("import sys\nfor i in range(200): print('line', i)\n"
              "print('token', sys.argv[1], file=sys.stderr)\n"
              "open('model.pkl', 'w').write('m')\n")
    (project / "noisy.py").write_text(script)
    git(project, "add", "noisy.py")
    git(project, "commit", "-qm", "noisy")
    secret = "s3cr3t-Value-0123456789abcdef"
    proc = cli(project, "run", "-o", "model.pkl", "--", sys.executable, "noisy.py", secret,
               env={"TRAINING_API_TOKEN": secret})
    assert "line 199" in proc.stdout and secret in proc.stderr  # streamed as printed
    raw = (project / ".mlsnap" / "model.yaml").read_text()
    assert secret not in raw
    tail = manifest(project)["run"]["output_tail"]  # type: ignore[index]
    lines = tail.splitlines()
    assert "line 199" in lines and "line 0" not in lines  # the last lines, not all of them
    assert secret not in tail and len(lines) < 60


def test_failing_command_makes_no_snapshot(project: Path) -> None:
    before = tree_digest(project)
    (project / "fail.py").write_text("import sys\nopen('model.pkl', 'w').write('x')\n"
                                     "sys.exit(7)\n")
    proc = cli(project, "run", "-o", "model.pkl", "--", sys.executable, "fail.py", check=1)
    assert proc.stderr.strip().splitlines()[-1].startswith("Error: ")
    assert "exited with code 7; no snapshot was taken" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert snapshot_count(project) == 0
    assert not (project / ".mlsnap" / "model.yaml").exists()
    after = tree_digest(project)
    assert {k for k in after if k not in before} == {"fail.py", "model.pkl"}


def test_missing_program_and_unwritten_output_are_one_line_errors(project: Path) -> None:
    proc = cli(project, "run", "-o", "model.pkl", "--", "no-such-trainer", check=1)
    assert "could not start: no such program" in proc.stderr and "Traceback" not in proc.stderr
    proc = cli(project, "run", "-o", "model.pkl", "--", sys.executable, "-c", "pass", check=1)
    assert "exited with code 0 but did not write model.pkl (-o)" in proc.stderr
    assert snapshot_count(project) == 0


def test_input_edited_while_the_command_runs_is_refused(project: Path) -> None:
    (project / "edits.py").write_text(
        "open('data/train.csv', 'a').write('999\\n')\nopen('model.pkl', 'w').write('m')\n")
    proc = cli(project, "run", "-o", "model.pkl", "--data", "data/train.csv", "--",
               sys.executable, "edits.py", check=1)
    assert "data/train.csv changed while the command ran" in proc.stderr
    assert snapshot_count(project) == 0
    assert not (project / ".mlsnap" / "model.yaml").exists()
    assert not (project / "data" / "train.csv.dvc").exists()


def test_params_file_edited_while_the_command_runs_is_refused(project: Path) -> None:
    (project / "edits.py").write_text(
        "open('params.yaml', 'a').write('extra: 1\\n')\nopen('model.pkl', 'w').write('m')\n")
    proc = cli(project, "run", "-o", "model.pkl", "--params", "params.yaml", "--",
               sys.executable, "edits.py", check=1)
    assert "params.yaml changed while the command ran" in proc.stderr
    assert snapshot_count(project) == 0


def test_dirty_code_is_refused_before_the_command_starts(project: Path) -> None:
    (project / "train.py").write_text((project / "train.py").read_text()
                                      + "open('ran.txt', 'w').write('yes')\n")
    proc = cli(project, *RUN, "--", sys.executable, "train.py", check=1)
    assert "uncommitted changes (train.py)" in proc.stderr and "--allow-dirty" in proc.stderr
    assert not (project / "ran.txt").exists()  # refused before it ran, not after
    cli(project, *RUN, "--allow-dirty", "--", sys.executable, "train.py")
    code = manifest(project)["code"]
    assert isinstance(code, dict) and code["dirty"] is True and code["patch"]


def test_existing_tag_is_refused_before_the_command_starts(project: Path) -> None:
    cli(project, *RUN, "--tag", "1.0.0", "--", sys.executable, "train.py")
    (project / "model.pkl").unlink()
    cli(project, "run", "--tag", "1.0.0", "--", sys.executable, "train.py", check=1)
    assert not (project / "model.pkl").exists()


def test_ctrl_c_stops_the_command_and_makes_no_snapshot(project: Path, tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    (project / "slow.py").write_text(
        "import os, sys, time\n"
        f"open({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
        "for _ in range(600):\n    time.sleep(0.1)\n"
        "open('model.pkl', 'w').write('m')\n")
    git(project, "add", "slow.py")
    git(project, "commit", "-qm", "slow")
    status = git(project, "status", "--short")
    proc = subprocess.Popen([sys.executable, "-m", "mlsnap", "run", "-o", "model.pkl", "--",
                             sys.executable, "slow.py"], cwd=project, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    for _ in range(600):  # until the command is running (bounded)
        if pid_file.exists() and pid_file.read_text():
            break
        proc.poll()
        assert proc.returncode is None, proc.communicate()
        subprocess.run(["sleep", "0.05"], check=True)
    child = int(pid_file.read_text())
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1].startswith("interrupted: `mlsnap run")
    assert "KeyboardInterrupt" in err  # the command's own stderr: it got the Ctrl-C
    assert "mlsnap/" not in err  # and mlsnap printed no traceback of its own
    assert not Path(f"/proc/{child}").exists()  # stopped (and reaped), not left running
    assert not (project / "model.pkl").exists()
    assert snapshot_count(project) == 0
    assert git(project, "status", "--short") == status


def test_python_api_runs_and_returns_a_frozen_result(project: Path) -> None:
    result = mlsnap.run([sys.executable, "train.py"], outputs=["model.pkl"],
                        data=["data/train.csv"], params_files=["params.yaml"],
                        metrics_files=["metrics.json"], message="api", repo=project)
    assert result.run.cmd == (sys.executable, "train.py")
    assert result.snapshot.manifest.run == result.run
    with pytest.raises(AttributeError):
        result.run = result.run  # type: ignore[misc]
    with pytest.raises(mlsnap.MlsnapError, match="exited with code 3"):
        mlsnap.run([sys.executable, "-c", "raise SystemExit(3)"], outputs=["model.pkl"],
                   repo=project)


def test_rerun_with_nothing_changed_makes_no_second_snapshot(project: Path) -> None:
    cli(project, *RUN, "--", sys.executable, "train.py")
    proc = cli(project, "run", "--", sys.executable, "train.py")
    assert "nothing changed since snapshot" in proc.stdout
    assert snapshot_count(project) == 1
    # the same bytes made by another command are a new record: the command is part of it
    os.remove(project / "model.pkl")
    cli(project, "run", "--", sys.executable, "train.py", "--again")
    assert snapshot_count(project) == 2


def test_killed_during_the_snapshot_the_next_command_puts_it_right(project: Path) -> None:
    status = git(project, "status", "--short")
    proc = cli(project, *RUN, "--", sys.executable, "train.py",
               env={"MLSNAP_FAULT_AT": "after-manifest"}, check=None)
    assert proc.returncode == -signal.SIGKILL
    cli(project, "status", "--no-remote", check=None)  # any command rolls the commit back
    # what the command wrote is kept; nothing mlsnap or DVC wrote is left
    left = set(git(project, "status", "--short").splitlines()) - set(status.splitlines())
    assert left == {"?? metrics.json", "?? model.pkl"}
    assert snapshot_count(project) == 0
    cli(project, *RUN, "--", sys.executable, "train.py")  # the rerun completes
    assert snapshot_count(project) == 1 and git(project, "status", "--short") == ""


def test_run_hashes_an_unchanged_input_once_across_its_checks(project: Path) -> None:
    """Hashed before CMD (DVC's state DB), checked after it and inside the commit without
    reading it again: the input's bytes are read twice in all, hash and copy into the cache."""
    from tests.test_work_done import SIZE, big_file, io_of

    big_file(project / "data" / "big.bin", b"data")
    (project / "fit.py").write_text("open('model.bin', 'w').write('weights')\n")
    git(project, "add", "fit.py")
    git(project, "commit", "-qm", "fit")
    io = io_of(project, "run", "-o", "model.bin", "--data", "data/big.bin", "--no-push", "--",
               sys.executable, "fit.py")
    assert 2 * SIZE <= io["rchar"] < 2.5 * SIZE
