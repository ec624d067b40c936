"""The core loop end to end: init, commit, clone, checkout, pull, status, show, env."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import TRAIN_PY, git, make_project, mlsnap, sha256, train, tree_digest


def snapshot_commits(repo: Path) -> list[str]:
    return git(repo, "log", "--format=%H", "--grep=^mlsnap: model:").split()


def cache_files(repo: Path) -> set[str]:
    cache = repo / ".dvc" / "cache"
    return {p.relative_to(cache).as_posix() for p in cache.rglob("*") if p.is_file()}


def test_full_loop_restores_each_snapshot_byte_exact_in_a_fresh_clone(project: Path,
                                                                       tmp_path: Path) -> None:
    train(project)
    first_model = sha256(project / "model.pkl")
    out = mlsnap(project, "commit", "model.pkl", "--data", "data/train.csv",
                 "--params", "params.yaml", "-m", "accuracy=0.93", "-M", "baseline").stdout
    assert "snapshot model:" in out and "pushed" in out

    (project / "params.yaml").write_text("lr: 0.01\nepochs: 10\noptimizer:\n  name: adam\n")
    git(project, "commit", "-qam", "lower lr")
    train(project)
    second_model = sha256(project / "model.pkl")
    assert second_model != first_model
    mlsnap(project, "commit", "-p", "epochs=20", "--metrics", "metrics.json", "-M", "lower lr")

    second, first = snapshot_commits(project)
    manifest = yaml.safe_load(git(project, "show", f"{second}:.mlsnap/model.yaml"))
    assert manifest["params"] == {"lr": 0.01, "epochs": 20, "optimizer": {"name": "adam"}}
    assert [a["path"] for a in manifest["artifacts"]] == ["model.pkl"]
    assert [i["path"] for i in manifest["data"]["inputs"]] == ["data/train.csv"]
    assert set(manifest["metrics"]) == {"accuracy"}

    clone = tmp_path / "elsewhere"
    git(tmp_path, "clone", "-q", str(project), str(clone))
    for sha, expected in ((first, first_model), (second, second_model)):
        git(clone, "checkout", "-q", sha)
        out = mlsnap(clone, "pull").stdout
        assert "verified" in out
        assert sha256(clone / "model.pkl") == expected
        assert sha256(clone / "data" / "train.csv") == sha256(project / "data" / "train.csv")
        assert "environment: matches the snapshot" in out
        assert mlsnap(clone, "status").returncode == 0

    shown = json.loads(mlsnap(clone, "show", "--json").stdout)
    assert shown["mlsnap"] == 1 and shown["code"]["commit"] == git(project, "rev-parse",
                                                                   f"{second}^")
    assert shown["artifacts"][0]["md5"] == yaml.safe_load(
        (clone / "model.pkl.dvc").read_text())["outs"][0]["md5"]

    (clone / "model.pkl").write_bytes(b"tampered")
    status = mlsnap(clone, "status", check=3)
    assert "modified: model.pkl" in status.stdout

    reqs = mlsnap(clone, "env", "--requirements").stdout
    assert "pyyaml==" in reqs and "click==" in reqs


def test_plain_dvc_pull_works_on_the_same_clone(project: Path, tmp_path: Path) -> None:
    train(project)
    mlsnap(project, "commit", "model.pkl", "-M", "first")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(project), str(clone))
    proc = subprocess.run([sys.executable, "-m", "dvc", "pull"], cwd=clone, capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert sha256(clone / "model.pkl") == sha256(project / "model.pkl")


def test_manifest_keys_follow_the_schema_order(project: Path) -> None:
    train(project)
    mlsnap(project, "commit", "model.pkl", "--data", "data", "-p", "lr=0.1")
    doc = yaml.safe_load((project / ".mlsnap" / "model.yaml").read_text())
    assert list(doc) == ["mlsnap", "name", "created", "message", "code", "data", "artifacts",
                         "params", "metrics", "environment",
                         "pickles"]  # optional keys last: model.pkl is scanned as a pickle
    assert list(doc["code"]) == ["commit", "branch", "dirty", "patch"]
    assert list(doc["environment"]) == ["python", "implementation", "os", "machine", "packages",
                                        "accelerators", "top_level", "tooling"]
    data_dir = doc["data"]["inputs"][0]
    assert data_dir["path"] == "data" and data_dir["md5"].endswith(".dir")
    assert data_dir["nfiles"] == 1
    assert doc["environment"]["python"] == ".".join(map(str, sys.version_info[:3]))
    assert not list((project / ".mlsnap").glob(".mlsnap-tmp-*"))
    # One commit holds manifest + .dvc files + .gitignore changes.
    files = git(project, "show", "--name-only", "--format=", "HEAD").split()
    assert set(files) == {".mlsnap/model.yaml", "model.pkl.dvc", "data.dvc", ".gitignore",
                          "data/train.csv"}  # data/train.csv leaves Git for DVC
    assert git(project, "log", "-1", "--format=%s") == "mlsnap: model: snapshot"


def _wheel(tmp_path: Path, version: str) -> Path:
    """A real (tiny) wheel of the distribution `drift-probe`."""
    import base64
    import hashlib
    import zipfile

    name = f"drift_probe-{version}"
    path = tmp_path / f"{name}-py3-none-any.whl"
    files = {
        "drift_probe.py": "VALUE = 1\n",
        f"{name}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: drift-probe\n"
                                      f"Version: {version}\n",
        f"{name}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                                   "Tag: py3-none-any\n",
    }
    record = []
    for fname, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{fname},sha256={digest.decode()},{len(text)}")
    record.append(f"{name}.dist-info/RECORD,,")
    with zipfile.ZipFile(path, "w") as zf:
        for fname, text in files.items():
            zf.writestr(fname, text)
        zf.writestr(f"{name}.dist-info/RECORD", "\n".join(record) + "\n")
    return path


def _venv_with_probe(tmp_path: Path, version: str) -> Path:
    venv = tmp_path / f"venv-{version}"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
                    "--no-index", "--no-deps", str(_wheel(tmp_path, version))], check=True)
    return python


def test_pull_reports_drift_when_a_package_version_differs(project: Path, tmp_path: Path) -> None:
    old_python = _venv_with_probe(tmp_path, "1.0")
    new_python = _venv_with_probe(tmp_path, "2.0")
    train(project)
    # The CLI records the active virtualenv's interpreter, not its own.
    mlsnap(project, "commit", "model.pkl", env={"VIRTUAL_ENV": str(old_python.parent.parent)})
    doc = yaml.safe_load((project / ".mlsnap" / "model.yaml").read_text())
    assert doc["environment"]["packages"] == {"drift-probe": "1.0"}

    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(project), str(clone))
    out = mlsnap(clone, "pull", "--python", str(new_python)).stdout
    assert "environment drift: 1 changed, 0 missing, 0 extra" in out
    assert any(line.split() == ["drift-probe", "1.0", "2.0"] for line in out.splitlines())
    strict = mlsnap(clone, "pull", "--python", str(new_python), "--strict-env", check=3)
    assert "--strict-env" in strict.stderr
    assert mlsnap(clone, "pull", "--python", str(old_python), "--strict-env").returncode == 0


# --------------------------------------------------------------------------- refusals


def test_commit_refuses_outside_a_git_repo(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "model.pkl").write_bytes(b"x")
    proc = mlsnap(plain, "commit", "model.pkl", check=1)
    assert proc.stderr.startswith("Error: ") and "not inside a Git repository" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in plain.iterdir()) == ["model.pkl"]


def test_commit_refuses_a_repo_without_commits(tmp_path: Path) -> None:
    repo = tmp_path / "empty"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "model.pkl").write_bytes(b"x")
    proc = mlsnap(repo, "commit", "model.pkl", check=1)
    assert "has no commits yet" in proc.stderr and proc.stderr.count("\n") == 1


def test_commit_refuses_before_init(tmp_path: Path) -> None:
    repo = make_project(tmp_path / "p", init=False)
    (repo / "model.pkl").write_bytes(b"x")
    proc = mlsnap(repo, "commit", "model.pkl", check=1)
    assert "mlsnap init" in proc.stderr
    assert not (repo / ".dvc").exists()


def test_commit_refuses_modified_code_and_changes_nothing(project: Path) -> None:
    train(project)
    (project / "train.py").write_text(TRAIN_PY + "# tweak\n")
    before = tree_digest(project)
    cache_before = cache_files(project)
    head = git(project, "rev-parse", "HEAD")
    status = git(project, "status", "--porcelain")
    proc = mlsnap(project, "commit", "model.pkl", check=1)
    assert "train.py" in proc.stderr and "--allow-dirty" in proc.stderr
    assert tree_digest(project) == before
    assert cache_files(project) == cache_before
    assert git(project, "rev-parse", "HEAD") == head
    assert git(project, "status", "--porcelain") == status
    assert "M train.py" in status


def test_allow_dirty_records_the_diff_as_a_dvc_tracked_patch(project: Path,
                                                              tmp_path: Path) -> None:
    train(project)
    (project / "train.py").write_text(TRAIN_PY + "# experiment\n")
    mlsnap(project, "commit", "model.pkl", "--allow-dirty", "-M", "wip")
    doc = yaml.safe_load((project / ".mlsnap" / "model.yaml").read_text())
    assert doc["code"]["dirty"] is True
    patch = doc["code"]["patch"]
    assert patch["path"] == ".mlsnap/patches/model.patch"
    assert "+# experiment" in (project / patch["path"]).read_text()
    assert (project / ".mlsnap/patches/model.patch.dvc").is_file()
    # The user's code change itself stays uncommitted.
    assert git(project, "status", "--porcelain").startswith("M train.py")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(project), str(clone))
    mlsnap(clone, "pull")
    assert "+# experiment" in (clone / patch["path"]).read_text()


def test_pull_refuses_to_overwrite_a_model_whose_content_is_not_cached(project: Path) -> None:
    train(project)
    mlsnap(project, "commit", "model.pkl")
    (project / "model.pkl").write_bytes(b"a week of training, never snapshotted")
    proc = mlsnap(project, "pull", check=1)
    assert "refusing to overwrite model.pkl" in proc.stderr and "--force" in proc.stderr
    assert (project / "model.pkl").read_bytes() == b"a week of training, never snapshotted"
    mlsnap(project, "pull", "--force")
    assert (project / "model.pkl").read_bytes() != b"a week of training, never snapshotted"
    assert mlsnap(project, "status").returncode == 0


def test_failed_push_keeps_the_local_snapshot_and_retry_succeeds(project: Path,
                                                                 tmp_path: Path) -> None:
    train(project)
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the remote folder should be")
    config = project / ".dvc" / "config"
    good = config.read_text()
    config.write_text(good.replace(str(tmp_path / "remote"), str(blocker / "store")))
    git(project, "commit", "-qam", "point the remote at a file")
    proc = mlsnap(project, "commit", "model.pkl", "-M", "offline", check=1)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "could not be pushed to remote 'storage'" in lines[0]
    assert "mlsnap push" in lines[0] and "snapshot committed as" in lines[0]
    assert git(project, "log", "-1", "--format=%s") == "mlsnap: model: offline"
    config.write_text(good)
    git(project, "commit", "-qam", "fix the remote")
    assert "pushed" in mlsnap(project, "push").stdout
    assert "already on the remote" in mlsnap(project, "push").stdout


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (lambda d: d.update(mlsnap=2), "schema 2 is not supported"),
        (lambda d: d.pop("environment"), "missing key 'environment'"),
        (lambda d: d["artifacts"][0].update(size="big"), "artifacts[0].size: expected int"),
        (lambda d: d["artifacts"][0].update(path="/etc/passwd"), "is absolute"),
        (lambda d: d["artifacts"][0].update(path="../outside.pkl"), "contains '..'"),
        (lambda d: d["artifacts"][0].update(md5="zz"), "is not a DVC md5 hash"),
        (lambda d: d["code"].update(dirty="no"), "code.dirty: expected bool"),
    ],
)
def test_invalid_manifest_is_refused_with_file_and_reason(project: Path, edit, reason) -> None:
    train(project)
    mlsnap(project, "commit", "model.pkl")
    path = project / ".mlsnap" / "model.yaml"
    doc = yaml.safe_load(path.read_text())
    edit(doc)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    before = tree_digest(project)
    for command in (["show"], ["pull"], ["status"]):
        proc = mlsnap(project, *command, check=1)
        assert proc.stderr.startswith("Error: .mlsnap/model.yaml: invalid manifest: ")
        assert reason in proc.stderr and proc.stderr.count("\n") == 1
    assert tree_digest(project) == before


def test_manifest_path_leaving_the_repo_through_a_symlink_is_refused(project: Path,
                                                                    tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (project / "models").mkdir()
    (project / "models" / "model.pkl").write_bytes(b"weights")
    mlsnap(project, "commit", "models/model.pkl")
    shutil.rmtree(project / "models")
    (project / "models").symlink_to(outside)
    proc = mlsnap(project, "pull", check=1)
    assert "leaves the repository through a symlink" in proc.stderr
    assert list(outside.iterdir()) == []


# --------------------------------------------------------------------------- params


@pytest.mark.parametrize(
    ("files", "args", "expected"),
    [
        ({}, ["-p", "lr=0.1", "-p", "epochs=3", "-p", "amp=true", "-p", "name=adam"],
         {"lr": 0.1, "epochs": 3, "amp": True, "name": "adam"}),
        ({}, ["-p", "optimizer.lr=0.01", "-p", "optimizer.betas.b1=0.9"],
         {"optimizer": {"lr": 0.01, "betas": {"b1": 0.9}}}),
        ({"p.yaml": "lr: 0.1\nmodel:\n  depth: 4\n"}, ["--params", "p.yaml", "-p", "lr=0.5"],
         {"lr": 0.5, "model": {"depth": 4}}),
        ({"p.json": '{"train": {"lr": 0.2, "bs": 32}, "other": 1}'}, ["--params", "p.json:train"],
         {"lr": 0.2, "bs": 32}),
        ({"p.toml": "[train]\nlr = 0.3\n[train.opt]\nname = 'sgd'\n"},
         ["--params", "p.toml:train.opt"], {"name": "sgd"}),
        ({"p.toml": "seed = 7\n[train]\nlr = 0.3\n"}, ["--params", "p.toml"],
         {"seed": 7, "train": {"lr": 0.3}}),
    ],
)
def test_params_from_values_and_files(project: Path, files: dict[str, str], args: list[str],
                                      expected: dict) -> None:
    for name, text in files.items():
        (project / name).write_text(text)
    (project / "model.pkl").write_bytes(b"w")
    mlsnap(project, "commit", "model.pkl", *args, "--no-push")
    doc = yaml.safe_load((project / ".mlsnap" / "model.yaml").read_text())
    assert doc["params"] == expected


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--params", "missing.yaml"], "missing.yaml: no such file"),
        (["--params", "params.yaml:nope"], "no section 'nope'"),
        (["-p", "a=1", "-p", "a.b=2"], "is already a value"),
    ],
)
def test_bad_params_are_refused_before_anything_is_written(project: Path, args: list[str],
                                                            message: str) -> None:
    (project / "model.pkl").write_bytes(b"w")
    before = tree_digest(project)
    proc = mlsnap(project, "commit", "model.pkl", *args, check=1)
    assert message in proc.stderr and proc.stderr.count("\n") == 1
    assert tree_digest(project) == before
    assert not (project / "model.pkl.dvc").exists()


# --------------------------------------------------------------------------- secrets


def test_planted_secrets_never_reach_the_manifest_or_output(project: Path) -> None:
    token = "s3cr3t-T0KEN-value-123456"
    (project / "creds.yaml").write_text(f"db_password: {token}\nbatch: 8\n")
    (project / "model.pkl").write_bytes(b"w")
    proc = mlsnap(
        project, "commit", "model.pkl", "--params", "creds.yaml",
        "-p", f"api_key={token}", "-p", f"endpoint=https://user:{token}@example.com/x",
        "-p", f"note=copied {token} here", "-M", f"uses {token}",
        env={"MY_SERVICE_TOKEN": token},
    )
    text = (project / ".mlsnap" / "model.yaml").read_text()
    assert token not in text and token not in proc.stdout and token not in proc.stderr
    assert token not in git(project, "log", "-1", "--format=%B")
    doc = yaml.safe_load(text)
    assert doc["params"]["db_password"] == "***" and doc["params"]["api_key"] == "***"
    assert doc["params"]["endpoint"] == "https://***@example.com/x"
    assert doc["params"]["note"] == "copied *** here" and doc["params"]["batch"] == 8


def test_remote_url_with_a_password_is_refused(tmp_path: Path) -> None:
    repo = make_project(tmp_path / "p", init=False)
    proc = mlsnap(repo, "init", "--remote", "webdav://user:hunter2pass@127.0.0.1/x", check=1)
    assert "hunter2pass" not in proc.stderr and "--local" in proc.stderr


# --------------------------------------------------------------------------- lightness


def test_help_and_import_do_not_import_dvc() -> None:
    code = ("import sys, mlsnap\n"
            "from mlsnap.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m == 'dvc' or m.startswith('dvc.')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_python_m_mlsnap_and_version(tmp_path: Path) -> None:
    proc = mlsnap(tmp_path, "--version")
    assert proc.stdout.startswith("mlsnap, version ")


def test_commit_and_pull_from_a_subfolder(project: Path, tmp_path: Path) -> None:
    sub = project / "models"
    sub.mkdir()
    (sub / "m.bin").write_bytes(b"weights from a subfolder")
    mlsnap(sub, "commit", "m.bin", "--data", "../data/train.csv", "-M", "from sub")
    doc = yaml.safe_load((project / ".mlsnap" / "model.yaml").read_text())
    assert [a["path"] for a in doc["artifacts"]] == ["models/m.bin"]
    assert [i["path"] for i in doc["data"]["inputs"]] == ["data/train.csv"]
    (sub / "m.bin").unlink()
    mlsnap(sub, "pull")
    assert (sub / "m.bin").read_bytes() == b"weights from a subfolder"
    assert mlsnap(sub, "status").returncode == 0


# --------------------------------------------------------------------------- no Git identity


def _without_identity(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Git with no user.name/user.email anywhere and no guessing (as on a fresh CI runner)."""
    for var in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME",
                "GIT_COMMITTER_EMAIL", "EMAIL"):
        monkeypatch.delenv(var, raising=False)
    git(repo, "config", "user.useConfigOnly", "true")


def test_init_without_git_identity_says_how_to_set_it_and_stages_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = make_project(tmp_path / "p", init=False)
    _without_identity(repo, monkeypatch)
    before = tree_digest(repo)
    proc = mlsnap(repo, "init", "--remote", str(tmp_path / "remote"), check=1)
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("Error: ")
    assert "git config --global user.name" in proc.stderr and "user.email" in proc.stderr
    assert "Traceback" not in proc.stderr and "exit code 128" not in proc.stderr
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == ""
    assert tree_digest(repo) == before and not (repo / ".dvc").exists()


def test_commit_and_tag_without_git_identity_change_nothing(
        project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (project / "model.pkl").write_bytes(b"weights")
    mlsnap(project, "commit", "model.pkl", "--no-push")
    (project / "model.pkl").write_bytes(b"better weights")
    _without_identity(project, monkeypatch)
    head = git(project, "rev-parse", "HEAD")
    before = tree_digest(project)
    for args in (["commit", "model.pkl", "--no-push"], ["tag", "model", "1.0.0"]):
        proc = mlsnap(project, *args, check=1)
        assert "user.name" in proc.stderr and proc.stderr.count("\n") == 1
    assert git(project, "rev-parse", "HEAD") == head and git(project, "tag") == ""
    assert tree_digest(project) == before
    assert git(project, "status", "--porcelain") == ""


# --------------------------------------------------------------------------- checkout leftovers


def test_checkout_of_a_commit_without_snapshot_b_reports_its_file_as_leftover(
        project: Path) -> None:
    (project / "models").mkdir()
    (project / "models" / "a.bin").write_bytes(b"model a")
    mlsnap(project, "commit", "models/a.bin", "--name", "a")
    only_a = git(project, "rev-parse", "HEAD")
    (project / "models" / "b.bin").write_bytes(b"model b")
    mlsnap(project, "commit", "models/b.bin", "--name", "b")
    b_commit = git(project, "rev-parse", "HEAD")
    git(project, "checkout", "-q", only_a)
    assert (project / "models" / "b.bin").exists()  # Git removed the pointer, not the bytes

    status = mlsnap(project, "status", check=3)
    assert (f"leftover: models/b.bin (a file of snapshot b at {b_commit[:7]}; no snapshot at "
            "HEAD names it") in status.stdout
    assert status.stdout.splitlines()[-1] == "not clean: 1 leftover (snapshot a)"
    report = json.loads(mlsnap(project, "status", "--json", check=3).stdout)
    assert report["leftover"] == [{"path": "models/b.bin", "snapshot": "b", "commit": b_commit}]
    pulled = mlsnap(project, "pull").stdout
    assert "note: models/b.bin is a file of snapshot b" in pulled
    assert (project / "models" / "b.bin").read_bytes() == b"model b"  # never deleted for you
    assert mlsnap(project, "status", "--name", "a").returncode == 0  # one snapshot's view
    (project / "models" / "b.bin").unlink()
    assert mlsnap(project, "status").stdout.startswith("clean: ")


# --------------------------------------------------------------------------- submodules


def _with_submodule(project: Path, tmp_path: Path) -> Path:
    lib = tmp_path / "lib"
    lib.mkdir()
    git(lib, "init", "-q", "-b", "main")
    (lib / "lib.py").write_text("def f():\n    return 1\n")
    git(lib, "add", "-A")
    git(lib, "commit", "-qm", "lib")
    git(project, "-c", "protocol.file.allow=always", "submodule", "-q", "add", str(lib),
        "libsub")
    git(project, "commit", "-qm", "add the submodule")
    return project / "libsub"


def test_paths_inside_a_submodule_are_refused_before_anything_is_written(
        project: Path, tmp_path: Path) -> None:
    sub = _with_submodule(project, tmp_path)
    (sub / "w.bin").write_bytes(b"weights inside the submodule")
    before, head = tree_digest(project), git(project, "rev-parse", "HEAD")
    status = git(project, "status", "--porcelain=v2")
    for path in ("libsub/w.bin", "libsub"):
        proc = mlsnap(project, "commit", path, check=1)
        assert "Git submodule" in proc.stderr and "cd libsub && mlsnap init" in proc.stderr
        assert proc.stderr.count("\n") == 1
    assert tree_digest(project) == before and git(project, "rev-parse", "HEAD") == head
    assert git(project, "status", "--porcelain=v2") == status
    proc = mlsnap(project, "status", "--no-remote", check=1)
    assert "no snapshot found" in proc.stderr and "did not finish" not in proc.stderr


def test_allow_dirty_records_a_dirty_submodule_s_own_diff(project: Path, tmp_path: Path) -> None:
    sub = _with_submodule(project, tmp_path)
    (sub / "lib.py").write_text("def f():\n    return 2\n")
    (project / "m.bin").write_bytes(b"weights")
    proc = mlsnap(project, "commit", "m.bin", "--no-push", check=1)
    assert "libsub" in proc.stderr and "--allow-dirty" in proc.stderr
    mlsnap(project, "commit", "m.bin", "--no-push", "--allow-dirty")
    patch = (project / ".mlsnap" / "patches" / "model.patch").read_text()
    assert "+    return 2" in patch and "b/libsub/lib.py" in patch
    assert "-dirty" not in patch
    # The patch puts the change back on a clean checkout of the code commit.
    (sub / "lib.py").write_text("def f():\n    return 1\n")
    git(project, "apply", "--check", ".mlsnap/patches/model.patch")
