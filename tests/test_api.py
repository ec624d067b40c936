"""The Python API (`import mlsnap`): the CLI's flows, called from inside a training process."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import mlsnap
from mlsnap import environment
from mlsnap.errors import BadInput, MlsnapError, NotAGitRepo
from tests.helpers import git, sha256, train
from tests.helpers import mlsnap as run_cli


def test_import_mlsnap_stays_light() -> None:
    code = ("import sys, mlsnap; mlsnap.Checkpointer; "
            "print(sorted(m for m in ('dvc', 'dvc.repo', 'git', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_type_an_api_function_returns_is_exported_by_name() -> None:
    import inspect
    import re

    functions = [n for n in mlsnap.__all__ if n[0].islower() and n != "__version__"]
    assert {"commit", "pull", "log", "diff", "tag", "get", "gc"} <= set(functions)
    for name in functions:
        annotation = inspect.signature(getattr(mlsnap, name)).return_annotation
        for type_name in re.findall(r"\b[A-Z]\w+", str(annotation)):
            assert type_name in mlsnap.__all__, f"mlsnap.{name} returns {type_name}, not exported"
            assert getattr(mlsnap, type_name).__name__ == type_name
        assert "Any" not in str(annotation), f"mlsnap.{name} returns {annotation}"


def test_commit_records_this_process_not_the_active_virtualenv(
        project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bare = tmp_path / "bare-venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    monkeypatch.setenv("VIRTUAL_ENV", str(bare))  # a shell would say this venv is active
    train(project)

    result = mlsnap.commit("model.pkl", data=["data/train.csv"], params={"lr": 0.1},
                           metrics={"accuracy": 0.5}, message="from python", repo=project)
    recorded = result.manifest.environment
    here = environment.this_process()
    assert recorded.packages == here.packages
    assert "dvc" in recorded.packages and "pytest" in recorded.packages
    assert recorded.python == here.python

    # The command line, run in the same shell, records the active venv instead: the contrast.
    (project / "model.pkl").write_bytes(b"retrained")
    run_cli(project, "commit", "model.pkl", "--name", "cli")
    cli = mlsnap.show(name="cli", repo=project).environment
    assert "dvc" not in cli.packages


def test_the_api_works_from_a_subfolder_and_leaves_the_cwd_alone(
        project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    train(project)
    monkeypatch.chdir(project / "data")
    # A training script's other threads (data loaders) keep reading relative paths while the
    # API works: the working directory must not move even for a moment.
    seen: set[str] = set()
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            seen.add(os.getcwd())
            time.sleep(0.0005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        result = mlsnap.commit("../model.pkl", data=["train.csv"], metrics={"accuracy": 0.9},
                               params={"optimizer": {"name": "adam"}}, message="first")
        mlsnap.pull()
    finally:
        done.set()
        watcher.join(timeout=10)
    assert seen == {str(project / "data")}, seen
    assert Path.cwd() == project / "data"
    assert [o.path for o in result.manifest.artifacts] == ["model.pkl"]
    assert [o.path for o in result.manifest.inputs] == ["data/train.csv"]
    assert git(project, "rev-parse", "HEAD") == result.commit
    assert result.pushed and result.pushed > 0

    assert mlsnap.status().clean
    (project / "model.pkl").write_bytes(b"changed")
    report = mlsnap.status()
    assert report.modified == ["model.pkl"] and not report.clean
    shown = mlsnap.show()
    assert shown.metrics == {"accuracy": 0.9} and shown.params == {"optimizer": {"name": "adam"}}
    entries = mlsnap.log()
    assert [e.commit for e in entries] == [result.commit]
    assert entries[0].metrics == {"accuracy": 0.9}
    assert Path.cwd() == project / "data"


def test_pull_restores_a_fresh_clone_from_python(project: Path, tmp_path: Path) -> None:
    train(project)
    mlsnap.commit(["model.pkl"], data=["data/train.csv"], repo=project, push=False)
    assert mlsnap.push(repo=project) > 0
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(project), str(clone))
    assert not (clone / "model.pkl").exists()
    pulled = mlsnap.pull(repo=clone)
    assert sorted(pulled.restored) == ["data/train.csv", "model.pkl"]
    assert sha256(clone / "model.pkl") == sha256(project / "model.pkl")
    assert pulled.pickles == ["model.pkl"]
    assert not pulled.drift["model"], "the same process pulls: no environment drift"
    assert mlsnap.pull(repo=clone).restored == []  # nothing left to do


def test_errors_are_mlsnap_errors_with_one_line_messages(tmp_path: Path) -> None:
    outside = tmp_path / "not-a-repo"
    outside.mkdir()
    with pytest.raises(NotAGitRepo, match="not inside a Git repository"):
        mlsnap.commit("model.pkl", repo=outside)
    assert os.getcwd() != str(outside)
    with pytest.raises(MlsnapError) as info:
        mlsnap.status(repo=outside)
    assert "\n" not in str(info.value)


def test_bad_input_from_python_is_refused_like_the_cli(project: Path) -> None:
    with pytest.raises(BadInput, match="no such file or directory"):
        mlsnap.commit("missing.pkl", repo=project)
    with pytest.raises(BadInput, match="not a commit, branch or tag"):
        mlsnap.show("no-such-rev", repo=project)


def test_compare_tag_and_get_two_snapshots_from_python(project: Path, tmp_path: Path) -> None:
    train(project)
    trained = sha256(project / "model.pkl")
    first = mlsnap.commit("model.pkl", metrics={"accuracy": 0.5}, repo=project, push=False)
    (project / "model.pkl").write_bytes(b"better model")
    second = mlsnap.commit("model.pkl", metrics={"accuracy": 0.75}, repo=project, push=False)

    changes = mlsnap.diff(first.commit, second.commit, repo=project)
    (delta,) = [m for m in changes.metrics if m.key == "accuracy"]
    assert (delta.old, delta.new, delta.delta) == (0.5, 0.75, 0.25)

    tagged = mlsnap.tag("model", "1.0.0", first.commit, repo=project)
    assert tagged.tag == "model@v1.0.0" and tagged.commit == first.commit
    got = mlsnap.get("model@v1.0.0", out=tmp_path / "v1", repo=project)
    assert sha256(tmp_path / "v1" / "model.pkl") == trained
    assert (project / "model.pkl").read_bytes() == b"better model"
    assert got.commit == first.commit
    assert git(project, "rev-parse", "HEAD") == second.commit
