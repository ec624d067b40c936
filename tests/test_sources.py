"""What a commit records: explicit values, remembered paths and files, the files it commits."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

import mlsnap
from tests.helpers import git, train
from tests.helpers import mlsnap as run_cli


def manifest(repo: Path, name: str = "model") -> dict:
    return yaml.safe_load((repo / ".mlsnap" / f"{name}.yaml").read_text())


def remember_params_and_metrics(project: Path) -> None:
    """The README's quickstart: the first snapshot reads params.yaml and metrics.json."""
    train(project)
    run_cli(project, "commit", "model.pkl", "--data", "data/train.csv",
            "--params", "params.yaml", "--metrics", "metrics.json", "-M", "baseline")


# --------------------------------------------------------------------------- item 2


def test_api_values_win_over_remembered_files_as_cli_values_do(project: Path) -> None:
    remember_params_and_metrics(project)
    from_file = json.loads((project / "metrics.json").read_text())["accuracy"]
    assert from_file != 0.6
    (project / "model.pkl").write_bytes(b"retrained in python")
    result = mlsnap.commit("model.pkl", params={"lr": 0.7}, metrics={"accuracy": 0.6},
                           message="from python", repo=project)
    assert result.manifest.params == {"lr": 0.7, "epochs": 10, "optimizer": {"name": "adam"}}
    assert result.manifest.metrics == {"accuracy": 0.6}
    assert result.told is not None
    assert "--params params.yaml" in result.told.remembered
    assert "--metrics metrics.json" in result.told.remembered
    # The command line, same values, same rule: one manifest of the same values.
    (project / "model.pkl").write_bytes(b"retrained on the command line")
    run_cli(project, "commit", "model.pkl", "-p", "lr=0.7", "-m", "accuracy=0.6")
    assert manifest(project)["params"] == result.manifest.params
    assert manifest(project)["metrics"] == {"accuracy": 0.6}


def test_explicit_values_win_over_a_params_file_given_in_the_same_call(project: Path) -> None:
    (project / "model.pkl").write_bytes(b"weights")
    result = mlsnap.commit("model.pkl", params={"lr": 0.3}, params_files=["params.yaml"],
                           push=False, repo=project)
    assert result.manifest.params["lr"] == 0.3 and result.manifest.params["epochs"] == 10


# --------------------------------------------------------------------------- item 3


def test_commit_says_what_it_reused_from_the_last_snapshot(project: Path) -> None:
    remember_params_and_metrics(project)
    train(project)
    out = run_cli(project, "commit", "-M", "again").stdout
    assert ("reused from the last snapshot: model.pkl, --data data/train.csv, "
            "--params params.yaml, --metrics metrics.json") in out
    # PATHS given: the inputs and files are still reused (each kind on its own), and said so.
    (project / "model.pkl").write_bytes(b"new")
    out = run_cli(project, "commit", "model.pkl").stdout
    assert "reused from the last snapshot: --data data/train.csv, --params params.yaml" in out
    assert "model.pkl," not in out


def test_an_artifact_that_leaves_the_snapshot_is_named(project: Path) -> None:
    (project / "m.pkl").write_bytes(b"small model")
    run_cli(project, "commit", "m.pkl", "--no-push")
    (project / "big.pt").write_bytes(b"big model")
    out = run_cli(project, "commit", "big.pt", "--no-push").stdout
    assert "left the snapshot: m.pkl (name it again to keep it in)" in out
    assert [a["path"] for a in manifest(project)["artifacts"]] == ["big.pt"]


def test_remembered_metrics_file_missing_in_a_clone_names_its_source_and_the_way_out(
        project: Path, tmp_path: Path) -> None:
    (project / ".gitignore").write_text("metrics.json\n")  # the file never reaches a clone
    git(project, "add", ".gitignore")
    git(project, "commit", "-qm", "ignore metrics")
    remember_params_and_metrics(project)
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(project), str(clone))
    run_cli(clone, "pull")
    (clone / "model.pkl").write_bytes(b"trained in the clone")
    proc = run_cli(clone, "commit", "model.pkl", check=1)
    assert "metrics.json: no such file" in proc.stderr and proc.stderr.count("\n") == 1
    assert ".mlsnap/config.yaml" in proc.stderr and "--forget" in proc.stderr
    out = run_cli(clone, "commit", "model.pkl", "--forget", "-m", "accuracy=0.5").stdout
    assert "reused" not in out and "left the snapshot: --data data/train.csv" in out
    doc = manifest(clone)
    assert doc["metrics"] == {"accuracy": 0.5} and doc["params"] == {} and not doc["data"]["inputs"]
    assert yaml.safe_load((clone / ".mlsnap" / "config.yaml").read_text())["sources"]["model"] \
        == {"params": [], "metrics": []}


def test_a_remembered_path_gone_from_the_workspace_says_where_it_came_from(
        project: Path, tmp_path: Path) -> None:
    train(project)
    run_cli(project, "commit", "model.pkl", "--data", "data/train.csv")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(project), str(clone))  # no pull: the bytes are not here
    proc = run_cli(clone, "commit", "-M", "retrain", check=1)
    assert "model.pkl: no such file or directory" in proc.stderr
    assert "previous snapshot of 'model'" in proc.stderr and "mlsnap pull" in proc.stderr


# --------------------------------------------------------------------------- item 4


def test_params_and_metrics_files_read_are_committed_so_checkout_brings_them_back(
        project: Path) -> None:
    remember_params_and_metrics(project)
    first = git(project, "rev-parse", "HEAD")
    assert git(project, "status", "--porcelain") == ""  # metrics.json is in the snapshot
    assert "metrics.json" in git(project, "show", "--name-only", "--format=", "HEAD").split()
    first_metrics = (project / "metrics.json").read_text()
    (project / "params.yaml").write_text("lr: 0.05\nepochs: 10\noptimizer:\n  name: adam\n")
    train(project)  # a new model and a new metrics.json; params.yaml edited, not committed
    out = run_cli(project, "commit", "-M", "lower lr").stdout
    assert "committed with the snapshot: metrics.json, params.yaml" in out
    assert git(project, "status", "--porcelain") == ""
    git(project, "checkout", "-q", first)
    run_cli(project, "pull")
    assert (project / "metrics.json").read_text() == first_metrics
    assert yaml.safe_load((project / "params.yaml").read_text())["lr"] == 0.1
    assert json.loads(first_metrics)["accuracy"] == manifest(project)["metrics"]["accuracy"]


def test_a_params_file_holding_a_secret_is_read_but_never_committed(project: Path) -> None:
    token = "s3cr3t-T0KEN-value-123456"
    (project / "creds.yaml").write_text(f"db_password: {token}\nbatch: 8\n")
    (project / "model.pkl").write_bytes(b"weights")
    out = run_cli(project, "commit", "model.pkl", "--params", "creds.yaml",
                  "--params", "params.yaml").stdout
    assert "creds.yaml holds a secret" in out and "not committed" in out
    assert manifest(project)["params"]["batch"] == 8
    assert "creds.yaml" not in git(project, "ls-files")
    assert token not in git(project, "log", "-p", "--all")
    assert git(project, "status", "--porcelain") == "?? creds.yaml"


def test_a_metrics_file_git_ignores_stays_out_of_the_commit(project: Path) -> None:
    (project / ".gitignore").write_text("metrics.json\n")
    git(project, "add", ".gitignore")
    git(project, "commit", "-qm", "ignore metrics")
    remember_params_and_metrics(project)
    assert "metrics.json" not in git(project, "ls-files")
    assert git(project, "status", "--porcelain") == ""


def test_a_metrics_file_another_snapshot_commits_does_not_block_this_one(project: Path) -> None:
    remember_params_and_metrics(project)  # metrics.json is now in Git, with snapshot model
    (project / "params.yaml").write_text("lr: 0.3\nepochs: 10\n")
    train(project)  # ... and the next run rewrites it
    (project / "tok.bin").write_bytes(b"a tokenizer")
    run_cli(project, "commit", "tok.bin", "--name", "tokenizer", "--no-push")
    assert git(project, "status", "--porcelain").split("\n") == ["M metrics.json",
                                                                 " M params.yaml"]
    out = run_cli(project, "commit", "-M", "retrained").stdout
    assert "committed with the snapshot: metrics.json, params.yaml" in out
    assert git(project, "status", "--porcelain") == ""
