"""Hooks: the pre-commit framework hooks through a real `pre-commit run`, and the plain git
hooks through real `git commit`, `git checkout` and `git push` with PATH lacking the venv."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from mlsnap import hookscripts
from mlsnap.hooks import HOOK_IDS
from tests.helpers import git, mlsnap, sha256, train

SOURCE = Path(__file__).resolve().parent.parent
# pip's cache of the real user, read at import (before fixtures re-point HOME): the framework's
# hook venv then installs mlsnap's dependencies from PyPI once per machine, not once per run.
PIP_CACHE = os.environ.get("PIP_CACHE_DIR") or os.path.expanduser("~/.cache/pip")
# A PATH with git and sh but without the venv's bin: the plain hooks must not need it.
BARE_PATH = os.pathsep.join(
    d for d in ("/usr/local/bin", "/usr/bin", "/bin")
    if Path(d).is_dir() and Path(d).resolve() != Path(sys.executable).parent.resolve()
)


# --------------------------------------------------------------------------- helpers


@pytest.fixture(scope="session")
def hook_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project as the pre-commit framework sees it: a Git repo of the working tree."""
    repo = tmp_path_factory.mktemp("mlsnap-src")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(SOURCE / "mlsnap", repo / "mlsnap", ignore=ignore)
    shutil.copytree(SOURCE / "hooks", repo / "hooks")
    for name in ("pyproject.toml", "README.md", ".pre-commit-hooks.yaml"):
        if (SOURCE / name).exists():
            shutil.copy2(SOURCE / name, repo / name)
    env = {**os.environ, "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z",
           "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z"}
    for args in (["init", "-q", "-b", "main"], ["add", "-A"],
                 ["-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m",
                  "mlsnap"]):
        subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True)
    return repo


@dataclass
class Framework:
    """A config naming every hook of the source repo at its commit, and one pre-commit cache
    for the module, whose hook venv (mlsnap + DVC from PyPI) is built once, in the background
    while the plain-hook tests run. (`pre-commit try-repo` would rebuild it on every call: it
    always uses a fresh temporary cache.)"""

    config: Path
    home: Path
    log: Path
    building: subprocess.Popen[bytes] | None

    def ready(self) -> Framework:
        if self.building is not None:
            code = self.building.wait(timeout=900)
            self.building = None
            assert code == 0, f"building the hook venv failed:\n{self.log.read_text()}"
        return self


@pytest.fixture(scope="module", autouse=True)
def framework(hook_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Framework]:
    home = tmp_path_factory.mktemp("pre-commit-home")
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=hook_repo, capture_output=True,
                         text=True, check=True).stdout.strip()
    config = home / "pre-commit-config.yaml"
    config.write_text(yaml.safe_dump({"repos": [{
        "repo": str(hook_repo), "rev": sha,
        "hooks": [{"id": hook_id} for hook_id in HOOK_IDS],
    }]}))
    log = home / "install-hooks.log"
    with open(log, "wb") as out:
        building = subprocess.Popen(
            [sys.executable, "-m", "pre_commit", "install-hooks", "--config", str(config)],
            cwd=hook_repo, env={**os.environ, **framework_env(home)}, stdout=out,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    fw = Framework(config, home, log, building)
    yield fw
    if fw.building is not None:  # only plain-hook tests ran: stop the build and its pip
        os.killpg(fw.building.pid, signal.SIGKILL)
        fw.building.wait()


def framework_env(home: Path) -> dict[str, str]:
    return {"PRE_COMMIT_HOME": str(home), "PIP_CACHE_DIR": PIP_CACHE,
            "PIP_DISABLE_PIP_VERSION_CHECK": "1", "DVC_NO_ANALYTICS": "1"}


def run_hook(cwd: Path, framework: Framework, hook_id: str,
             stage: str | None = None) -> subprocess.CompletedProcess[str]:
    """`pre-commit run HOOK --all-files` with the real framework, in a real repo."""
    args = [sys.executable, "-m", "pre_commit", "run", hook_id, "--all-files", "--verbose",
            "--color=never", "--config", str(framework.ready().config)]
    if stage:
        args += ["--hook-stage", stage]
    return subprocess.run(args, cwd=cwd, env={**os.environ, **framework_env(framework.home)},
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=900,
                          check=False)


def run_git(cwd: Path, *args: str,
            extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Real git with PATH lacking the venv (as in a shell where it is not activated)."""
    env = {**os.environ, "PATH": BARE_PATH, **(extra or {})}
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          check=False, timeout=300)


def snapshot(root: Path, *args: str) -> None:
    train(root)
    mlsnap(root, "commit", "model.pkl", *args)


def two_snapshots(root: Path) -> tuple[str, str, str]:
    """Snapshots at lr 0.1 then 0.5: (first snapshot commit, its model sha256, the second's)."""
    snapshot(root)
    first = git(root, "rev-parse", "HEAD")
    v1 = sha256(root / "model.pkl")
    (root / "params.yaml").write_text("lr: 0.5\nepochs: 10\n")
    git(root, "commit", "-q", "-am", "lr 0.5")
    snapshot(root)
    return first, v1, sha256(root / "model.pkl")


def cache_object(root: Path, path: str) -> Path:
    md5 = yaml.safe_load((root / f"{path}.dvc").read_text())["outs"][0]["md5"]
    return root / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]


def remote_object(remote: Path, cached: Path) -> Path:
    return remote / "files" / "md5" / cached.parent.name / cached.name


def plain_repo(root: Path) -> Path:
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "README").write_text("hello\n")
    git(root, "add", "README")
    git(root, "commit", "-q", "-m", "start")
    return root


# --------------------------------------------------------------------------- plain git hooks


def test_hooks_folder_matches_the_installer_template() -> None:
    for hook in hookscripts.GIT_HOOKS:
        path = SOURCE / "hooks" / hook
        assert path.read_text() == hookscripts.render(hook, None), f"regenerate hooks/{hook}"
        assert os.access(path, os.X_OK)


def test_pre_commit_hooks_yaml_names_every_hook_command() -> None:
    from mlsnap.cli.hooks import hook

    entries = yaml.safe_load((SOURCE / ".pre-commit-hooks.yaml").read_text())
    assert [e["id"] for e in entries] == list(HOOK_IDS) == sorted(hook.commands, key=HOOK_IDS.index)
    for entry in entries:
        assert entry["entry"] == f"mlsnap hook {entry['id']}"
        assert entry["language"] == "python"
        assert hook.commands[entry["id"]].help


def test_install_chains_existing_hook_and_uninstall_restores_it(tmp_path: Path) -> None:
    assert shutil.which("mlsnap", path=BARE_PATH) is None
    repo = plain_repo(tmp_path / "repo")
    ran = tmp_path / "ran.txt"
    user_hook = repo / ".git" / "hooks" / "pre-commit"
    original = f"#!/bin/sh\necho user >> '{ran}'\nexit ${{USER_HOOK_EXIT:-0}}\n"
    user_hook.write_text(original)
    user_hook.chmod(0o755)

    out = mlsnap(repo, "hooks", "install").stdout
    assert "pre-commit: installed; the previous hook is kept as pre-commit.pre-mlsnap" in out
    again = mlsnap(repo, "hooks", "install").stdout
    assert again.count("already installed") == 3
    assert (repo / ".git" / "hooks" / "pre-commit.pre-mlsnap").read_text() == original
    assert str(Path(sys.executable).absolute()) in user_hook.read_text()

    (repo / "notes.txt").write_text("small\n")
    git(repo, "add", "notes.txt")
    assert run_git(repo, "commit", "-q", "-m", "notes").returncode == 0
    assert ran.read_text() == "user\n"

    (repo / "weights.pt").write_bytes(b"w" * 10)
    git(repo, "add", "weights.pt")
    blocked = run_git(repo, "commit", "-q", "-m", "weights")
    assert blocked.returncode != 0
    assert "weights.pt: a model/data file (.pt, 10 B)" in blocked.stderr
    assert ran.read_text() == "user\nuser\n"

    stopped = run_git(repo, "commit", "-q", "-m", "weights", extra={"USER_HOOK_EXIT": "7"})
    assert stopped.returncode != 0
    assert "mlsnap-no-large-files" not in stopped.stderr  # the chain stopped at the user hook

    out = mlsnap(repo, "hooks", "install", "--uninstall").stdout
    assert "pre-commit: removed; pre-commit.pre-mlsnap restored" in out
    assert user_hook.read_text() == original
    assert not (repo / ".git" / "hooks" / "pre-push").exists()


def test_install_respects_core_hooks_path_and_refuses_a_conflict(tmp_path: Path) -> None:
    repo = plain_repo(tmp_path / "repo")
    git(repo, "config", "core.hooksPath", ".githooks")
    mlsnap(repo, "hooks", "install")
    assert hookscripts.is_managed(repo / ".githooks" / "pre-push")
    assert not (repo / ".git" / "hooks" / "pre-push").exists()

    (repo / ".githooks" / "post-checkout").write_text("#!/bin/sh\nexit 0\n")
    (repo / ".githooks" / "post-checkout.pre-mlsnap").write_text("#!/bin/sh\nexit 0\n")
    refused = mlsnap(repo, "hooks", "install", check=1)
    assert refused.stderr.startswith("Error: ") and refused.stderr.count("\n") == 1
    assert "post-checkout.pre-mlsnap already exists" in refused.stderr


def test_post_checkout_restores_the_older_snapshot(project: Path) -> None:
    first, v1, v2 = two_snapshots(project)
    assert v1 != v2
    mlsnap(project, "hooks", "install")

    back = run_git(project, "checkout", "-q", first)
    assert back.returncode == 0, back.stderr
    assert "restored model.pkl" in back.stdout + back.stderr
    assert sha256(project / "model.pkl") == v1

    # A file checkout (flag 0) is not a branch checkout: nothing is pulled.
    run_git(project, "checkout", "-q", "main")
    assert sha256(project / "model.pkl") == v2
    files = run_git(project, "checkout", first, "--", "params.yaml")
    assert files.returncode == 0 and "restored" not in files.stdout + files.stderr
    assert sha256(project / "model.pkl") == v2


def test_pre_push_uploads_missing_bytes_and_blocks_when_it_cannot(
        project: Path, remote_dir: Path, tmp_path: Path) -> None:
    bare = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    git(project, "remote", "add", "origin", str(bare))
    mlsnap(project, "hooks", "install")

    snapshot(project, "--no-push")
    cached = cache_object(project, "model.pkl")
    pushed = run_git(project, "push", "-q", "origin", "main")
    assert pushed.returncode == 0, pushed.stderr
    assert remote_object(remote_dir, cached).read_bytes() == cached.read_bytes()

    (project / "params.yaml").write_text("lr: 0.5\nepochs: 10\n")
    git(project, "commit", "-q", "-am", "lr 0.5")
    snapshot(project, "--no-push")
    cached = cache_object(project, "model.pkl")
    hidden = cached.with_name("hidden")
    cached.rename(hidden)
    blocked = run_git(project, "push", "-q", "origin", "main")
    assert blocked.returncode != 0
    assert "mlsnap-push: 1 problem(s)" in blocked.stderr
    assert "model.pkl" in blocked.stderr and "Push blocked" in blocked.stderr
    head = git(project, "rev-parse", "HEAD")
    assert git(bare, "rev-parse", "main") != head
    by_hand = mlsnap(project, "hook", "mlsnap-push", check=3)  # checks the snapshots at HEAD
    assert f"{head[:12]}:.mlsnap/model.yaml: model.pkl" in by_hand.stderr

    hidden.rename(cached)
    mlsnap(project, "push")
    assert run_git(project, "push", "-q", "origin", "main").returncode == 0
    assert git(bare, "rev-parse", "main") == head


def test_no_large_files_max_kb_and_staged_content(tmp_path: Path) -> None:
    repo = plain_repo(tmp_path / "repo")
    (repo / "table.csv").write_bytes(b"x" * 3000)
    git(repo, "add", "table.csv")
    mlsnap(repo, "hook", "mlsnap-no-large-files")
    over = mlsnap(repo, "hook", "mlsnap-no-large-files", "--max-kb", "2", check=3)
    assert "table.csv: 2.9 KiB, over the 2.0 KiB limit" in over.stderr
    # The staged blob counts, not the work tree copy.
    (repo / "table.csv").write_bytes(b"x")
    mlsnap(repo, "hook", "mlsnap-no-large-files", "--max-kb", "2", check=3)


def test_pre_commit_hook_judges_the_index_of_commit_a(tmp_path: Path) -> None:
    repo = plain_repo(tmp_path / "repo")
    mlsnap(repo, "hooks", "install")
    # `git commit -a` stages into a temporary index (GIT_INDEX_FILE); the real index still
    # holds the small README, so only a hook that reads the handed-on index sees the big one.
    (repo / "README").write_bytes(b"x" * (6 * 1024 * 1024))
    blocked = run_git(repo, "commit", "-q", "-am", "big readme")
    assert blocked.returncode != 0
    assert "README: 6.0 MiB, over the 5.0 MiB limit" in blocked.stderr


# --------------------------------------------------------------------------- pre-commit framework


@pytest.mark.slow
def test_framework_no_large_files(tmp_path: Path, framework: Framework) -> None:
    repo = plain_repo(tmp_path / "repo")
    ok = run_hook(repo, framework, "mlsnap-no-large-files")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "Passed" in ok.stdout

    (repo / "model.onnx").write_bytes(b"\x00" * 100)
    git(repo, "add", "model.onnx")
    bad = run_hook(repo, framework, "mlsnap-no-large-files")
    assert bad.returncode == 1
    assert "Failed" in bad.stdout
    assert "model.onnx: a model/data file (.onnx, 100 B)" in bad.stdout
    assert "mlsnap commit model.onnx" in bad.stdout


@pytest.mark.slow
def test_framework_status_and_check_manifest_on_one_snapshot(
        project: Path, framework: Framework) -> None:
    snapshot(project)
    for hook_id in ("mlsnap-status", "mlsnap-check-manifest"):
        ok = run_hook(project, framework, hook_id)
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert "Passed" in ok.stdout

    (project / "model.pkl").write_bytes(b"retrained")
    modified = run_hook(project, framework, "mlsnap-status")
    assert modified.returncode == 1
    assert "model.pkl: changed after its snapshot" in modified.stdout

    pointer = project / "model.pkl.dvc"
    pointer.write_text(pointer.read_text().replace("size: ", "size: 1"))
    git(project, "add", "model.pkl.dvc")
    bad = run_hook(project, framework, "mlsnap-check-manifest")
    assert bad.returncode == 1
    assert ".mlsnap/model.yaml: records model.pkl as md5" in bad.stdout
    assert "but model.pkl.dvc has md5" in bad.stdout

    # The same hook by hand: a manifest naming a path nobody tracks, then an invalid one.
    git(project, "checkout", "-q", "HEAD", "--", "model.pkl.dvc")
    manifest = project / ".mlsnap" / "model.yaml"
    text = manifest.read_text()
    manifest.write_text(text.replace("path: model.pkl", "path: gone.pkl"))
    git(project, "add", ".mlsnap/model.yaml")
    dangling = mlsnap(project, "hook", "mlsnap-check-manifest", check=3)
    assert "records gone.pkl, which is neither tracked by DVC" in dangling.stderr

    manifest.write_text(text)
    git(project, "add", ".mlsnap/model.yaml")
    git(project, "rm", "-q", "--cached", "model.pkl.dvc")
    unstaged = mlsnap(project, "hook", "mlsnap-check-manifest", ".mlsnap/model.yaml", check=3)
    assert "records model.pkl, but model.pkl.dvc is not staged" in unstaged.stderr

    manifest.write_text(text.replace("mlsnap: 1", "mlsnap: one"))
    git(project, "add", ".mlsnap/model.yaml")
    invalid = mlsnap(project, "hook", "mlsnap-check-manifest", check=3)
    assert ".mlsnap/model.yaml: invalid manifest: mlsnap: schema version" in invalid.stderr


@pytest.mark.slow
def test_framework_push_uploads_or_blocks(project: Path, remote_dir: Path, tmp_path: Path,
                                          framework: Framework) -> None:
    """Through real `git push`es and the framework's own pre-push hook: the first push of a
    branch (PRE_COMMIT_LOCAL_BRANCH), then a push of new commits (PRE_COMMIT_FROM/TO_REF)."""
    framework.ready()
    bare = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    git(project, "remote", "add", "origin", str(bare))
    env = framework_env(framework.home)
    installed = subprocess.run(
        [sys.executable, "-m", "pre_commit", "install", "--hook-type", "pre-push",
         "--config", str(framework.config)], cwd=project, env={**os.environ, **env},
        capture_output=True, text=True, check=False)
    assert installed.returncode == 0, installed.stderr

    snapshot(project, "--no-push")
    cached = cache_object(project, "model.pkl")
    assert not remote_object(remote_dir, cached).exists()
    ok = run_git(project, "push", "-q", "origin", "main", extra=env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert remote_object(remote_dir, cached).read_bytes() == cached.read_bytes()

    (project / "params.yaml").write_text("lr: 0.5\nepochs: 10\n")
    git(project, "commit", "-q", "-am", "lr 0.5")
    snapshot(project, "--no-push")
    cache_object(project, "model.pkl").unlink()
    bad = run_git(project, "push", "-q", "origin", "main", extra=env)
    assert bad.returncode != 0
    assert re.search(r"\(mlsnap push\)\.+Failed", bad.stdout)
    assert "model.pkl" in bad.stdout and "is neither in the local cache nor on remote" in bad.stdout
    assert git(bare, "rev-parse", "main") != git(project, "rev-parse", "HEAD")


@pytest.mark.slow
def test_framework_pull(project: Path, remote_dir: Path,
                        framework: Framework) -> None:
    first, v1, _ = two_snapshots(project)
    git(project, "checkout", "-q", first)
    ok = run_hook(project, framework, "mlsnap-pull", stage="post-checkout")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "restored model.pkl" in ok.stdout
    assert sha256(project / "model.pkl") == v1

    git(project, "checkout", "-q", "main")
    shutil.rmtree(remote_dir / "files")
    shutil.rmtree(project / ".dvc" / "cache")
    (project / "model.pkl").unlink()
    bad = run_hook(project, framework, "mlsnap-pull", stage="post-checkout")
    assert bad.returncode == 1
    assert "not found in the cache or on remote" in bad.stdout


def test_framework_post_checkout_of_a_commit_older_than_its_config_needs_allow_missing_config(
        project: Path, tmp_path: Path) -> None:
    """What docs/hooks.md says about checking out a commit from before the framework's config:
    the framework's own hook fails there unless installed with --allow-missing-config."""
    older = git(project, "rev-parse", "HEAD")
    (project / ".pre-commit-config.yaml").write_text("repos: []\n")
    git(project, "add", ".pre-commit-config.yaml")
    git(project, "commit", "-qm", "use the pre-commit framework")
    env = {**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home")}

    def install(*extra: str) -> None:
        subprocess.run([sys.executable, "-m", "pre_commit", "install", "-t", "post-checkout",
                        "--overwrite", *extra], cwd=project, env=env, check=True,
                       capture_output=True)

    install()
    failed = run_git(project, "checkout", "-q", older)
    assert failed.returncode != 0 and "No .pre-commit-config.yaml file was found" in failed.stderr
    assert run_git(project, "checkout", "-q", "main").returncode == 0
    install("--allow-missing-config")
    passed = run_git(project, "checkout", "-q", older)
    assert passed.returncode == 0 and "Skipping `pre-commit`" in passed.stdout + passed.stderr
