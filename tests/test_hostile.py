"""Hostile or broken input: refused with one line naming the file and field, exit non-zero,
nothing written, and where code could run, a sentinel file proving it did not."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
from pathlib import Path

import pytest

from mlsnap.manifest import loads
from tests.helpers import git, mlsnap, tree_digest

MANIFEST = ".mlsnap/model.yaml"


@pytest.fixture
def snap(project: Path) -> Path:
    """A project with one pushed snapshot of ``model.pkl``."""
    (project / "model.pkl").write_bytes(b"weights")
    mlsnap(project, "commit", "model.pkl")
    return project


def _plant(root: Path, text: str) -> None:
    """Commit a manifest as a hostile upstream would: it arrives through `git pull`."""
    (root / MANIFEST).write_text(text)
    git(root, "add", MANIFEST)
    git(root, "commit", "-q", "-m", "hostile manifest")


def _refused(root: Path, args: list[str], *needles: str, code: int = 1) -> str:
    before = tree_digest(root)
    proc = mlsnap(root, *args, check=code)
    line = proc.stderr.strip()
    assert line.startswith("Error: ") and "\n" not in line and "Traceback" not in proc.stderr, line
    for needle in needles:
        assert needle in line, (needle, line)
    assert tree_digest(root) == before, "a refused command wrote files"
    return line


def _cases(good: str, sentinel: Path) -> list[tuple[str, str, tuple[str, ...]]]:
    md5 = loads(good, "good").artifacts[0].md5
    path_line = "- {path: model.pkl,"
    assert path_line in good

    def path(p: str) -> str:
        return good.replace(path_line, f"- {{path: {p},")

    bomb = "".join(f"  l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * 9 if i else ["lol"] * 9) + "]\n"
                   for i in range(9))
    return [
        ("python object tag", good.replace("message: ''", "message: !!python/object/apply:"
                                           f"os.system ['touch {sentinel}']"),
         (MANIFEST, "not valid YAML")),
        ("python name tag", good.replace("message: ''", "message: !!python/name:os.system"),
         (MANIFEST, "not valid YAML")),
        ("alias bomb", good.replace("params: {}\n", "params:\n" + bomb),
         (MANIFEST, "aliases are not allowed")),
        ("duplicate key", good.replace("name: model\n", "name: model\nname: other\n"),
         (MANIFEST, "duplicate key 'name'")),
        ("future schema", good.replace("mlsnap: 1\n", "mlsnap: 99\n"),
         (MANIFEST, "mlsnap: schema 99", "upgrade mlsnap")),
        ("unknown schema", good.replace("mlsnap: 1\n", "mlsnap: 0\n"),
         (MANIFEST, "unknown schema 0")),
        ("schema as text", good.replace("mlsnap: 1\n", "mlsnap: '1'\n"), (MANIFEST, "mlsnap:")),
        ("non-hex hash", good.replace(md5, "z" * 32), (MANIFEST, "artifacts[0].md5")),
        ("short hash", good.replace(md5, md5[:31]), (MANIFEST, "artifacts[0].md5")),
        ("absolute path", path("/etc/passwd"), ("artifacts[0].path", "absolute")),
        ("parent path", path("../outside.pkl"), ("artifacts[0].path", "'..'")),
        ("deep parent path", path("a/../../outside.pkl"), ("artifacts[0].path", "'..'")),
        ("into .git", path(".git/hooks/post-checkout"), ("artifacts[0].path", ".git")),
        ("into .GIT", path(".GIT/hooks/post-checkout"), ("artifacts[0].path", ".git")),
        ("into .git.", path("'.git./hooks/post-checkout'"), ("artifacts[0].path", ".git")),
        ("into .git space", path("'.git /hooks/post-checkout'"), ("artifacts[0].path", ".git")),
        ("sub .Git", path("sub/.Git/config"), ("artifacts[0].path", ".git")),
        ("NUL", path('"model\\0.pkl"'), ("artifacts[0].path", "control characters")),
        ("newline", path('"model\\n.pkl"'), ("artifacts[0].path", "control characters")),
        ("escape", path('"model\\e[31m.pkl"'), ("artifacts[0].path", "control characters")),
        ("backslash", path("'..\\\\evil.pkl'"), ("artifacts[0].path",)),
        ("drive", path("'C:/evil.pkl'"), ("artifacts[0].path", "absolute")),
        ("not a mapping", "- just\n- a list\n", (MANIFEST, "top level")),
        ("tampered hash", good.replace(md5, "f" * 32),
         (MANIFEST, "disagrees with model.pkl.dvc")),
    ]


def test_hostile_manifests_are_refused_and_run_nothing(snap: Path, tmp_path: Path) -> None:
    sentinel = tmp_path / "SENTINEL"
    good = (snap / MANIFEST).read_text()
    (snap / "model.pkl").unlink()  # so a pull that went wrong would have something to write
    cases = _cases(good, sentinel)
    for label, text, needles in cases:
        _plant(snap, text)
        try:
            _refused(snap, ["pull"], *needles)
        except AssertionError as exc:
            raise AssertionError(f"case {label!r}: {exc}") from None
        assert not sentinel.exists(), label
        assert not (snap / "model.pkl").exists(), label
    # The readers that do not touch the workspace refuse the same way (two of the worst cases).
    for label, text, needles in (cases[0], cases[2]):
        _plant(snap, text)
        _refused(snap, ["status"], *needles, code=1)
        _refused(snap, ["show", "HEAD"], *needles[1:])
    assert not sentinel.exists()
    assert len(cases) >= 24


def test_intermediate_symlink_out_of_the_repo_is_refused(snap: Path, tmp_path: Path) -> None:
    """DVC #11101: a cloned repo whose folder is a symlink must not make pull write outside."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (snap / "models").mkdir()
    (snap / "models" / "m.pkl").write_bytes(b"inner")
    mlsnap(snap, "commit", "models/m.pkl", "--name", "inner")
    # The hostile upstream turns `models` into a symlink; the pointer now lives outside.
    os.replace(snap / "models" / "m.pkl.dvc", outside / "m.pkl.dvc")
    git(snap, "rm", "-q", "-r", "--cached", "models")
    for leftover in (snap / "models").iterdir():
        leftover.unlink()
    (snap / "models").rmdir()
    (snap / "models").symlink_to(outside)
    git(snap, "add", "models")
    git(snap, "commit", "-q", "-m", "models is a symlink now")
    before = sorted(p.name for p in outside.iterdir())
    _refused(snap, ["pull"], ".mlsnap/inner.yaml", "leaves the repository through a symlink")
    _refused(snap, ["pull", "--force"], "leaves the repository through a symlink")
    assert sorted(p.name for p in outside.iterdir()) == before == ["m.pkl.dvc"]
    # The same path is refused when committing, too.
    (outside / "m.pkl").write_bytes(b"outside file")
    _refused(snap, ["commit", "models/m.pkl", "--name", "again"], "models/m.pkl")


def test_symlink_into_git_hooks_is_refused(snap: Path) -> None:
    (snap / "hooks").symlink_to(snap / ".git" / "hooks")
    git(snap, "add", "hooks")
    git(snap, "commit", "-q", "-m", "hooks link")
    good = (snap / MANIFEST).read_text()
    _plant(snap, good.replace("- {path: model.pkl,", "- {path: hooks/post-checkout,"))
    _refused(snap, ["pull", "--force"], "leads into .git through a symlink")
    assert not (snap / ".git" / "hooks" / "post-checkout").exists()
    (snap / ".git" / "hooks" / "x.sh").write_text("#!/bin/sh\n")
    _refused(snap, ["commit", "hooks/x.sh", "--name", "hk"], "hooks/x.sh")


def test_revisions_and_urls_never_become_git_options(snap: Path, tmp_path: Path) -> None:
    sentinel = tmp_path / "SENTINEL"
    evil = f"--upload-pack=touch {sentinel}"
    for args in (["show", "--", evil], ["get", "--", evil], ["diff", "--", evil, "HEAD"],
                 ["tag", "model", "9.9.9", "--", evil]):
        _refused(snap, args, "not a revision")
    proc = mlsnap(snap, "show", f"--output={sentinel}", check=2)  # Click: not an option
    assert "Traceback" not in proc.stderr
    # A remote URL is handed to DVC as a storage URL, never to Git as a transport.
    proc = mlsnap(snap, "init", "--remote", f"ext::sh -c touch% {sentinel}", check=None)
    mlsnap(snap, "push", check=None)
    mlsnap(snap, "pull", "--force", check=None)
    assert "Traceback" not in proc.stderr
    assert not sentinel.exists()
    assert not (tmp_path / "SENTINEL").exists()


def test_nan_and_inf_metrics_have_one_encoding(project: Path) -> None:
    (project / "m.bin").write_bytes(b"m")
    (project / "metrics.json").write_text('{"loss": NaN, "up": Infinity, "down": -Infinity}')
    mlsnap(project, "commit", "m.bin", "--metrics", "metrics.json", "-m", "acc=.nan",
           "--no-push")
    text = (project / MANIFEST).read_text()
    assert "loss: .nan" in text and "up: .inf" in text and "down: -.inf" in text
    assert "acc: .nan" in text
    shown = json.loads(mlsnap(project, "show", "--json").stdout)
    assert shown["metrics"] == {"loss": "nan", "up": "inf", "down": "-inf", "acc": "nan"}
    logged = mlsnap(project, "log", "--json").stdout
    assert "NaN" not in logged and "Infinity" not in logged and '"nan"' in logged


def test_zero_length_artifact_round_trips(project: Path) -> None:
    (project / "empty.bin").write_bytes(b"")
    mlsnap(project, "commit", "empty.bin")
    (project / "empty.bin").unlink()
    mlsnap(project, "pull")
    assert (project / "empty.bin").read_bytes() == b""
    m = loads((project / MANIFEST).read_text(), "m")
    assert (m.artifacts[0].size, m.artifacts[0].md5) == (0, "d41d8cd98f00b204e9800998ecf8427e")
    mlsnap(project, "status")


def test_shallow_clone_pulls_and_says_what_history_lacks(snap: Path, tmp_path: Path) -> None:
    (snap / "model.pkl").write_bytes(b"weights v2")
    mlsnap(snap, "commit", "model.pkl")
    clone = tmp_path / "shallow"
    subprocess.run(["git", "clone", "-q", "--depth", "1", f"file://{snap}", str(clone)],
                   check=True)
    mlsnap(clone, "pull")
    assert (clone / "model.pkl").read_bytes() == b"weights v2"
    line = _refused(clone, ["show", "HEAD~1"], "shallow")
    assert "git fetch --unshallow" in line
    log = mlsnap(clone, "log")
    assert "shallow" in log.stderr and "git fetch --unshallow" in log.stderr


def test_detached_head_binds_the_snapshot_to_the_sha(project: Path) -> None:
    git(project, "checkout", "-q", "--detach")
    code = git(project, "rev-parse", "HEAD")
    (project / "m.bin").write_bytes(b"detached")
    out = mlsnap(project, "commit", "m.bin", "--no-push").stdout
    assert "HEAD is detached" in out and "git switch -c" in out
    m = loads((project / MANIFEST).read_text(), "m")
    assert m.code.branch is None and m.code.commit == code


def test_existing_index_lock_is_reported_and_left_alone(project: Path) -> None:
    lock = project / ".git" / "index.lock"
    lock.write_text("")
    (project / "m.bin").write_bytes(b"locked out")
    head = git(project, "rev-parse", "HEAD")
    line = _refused(project, ["commit", "m.bin", "--no-push"], "index.lock", "File exists")
    assert "Another git process" in line
    assert lock.exists()  # Git's lock is Git's: never deleted
    assert git(project, "rev-parse", "HEAD") == head
    assert (project / "m.bin").read_bytes() == b"locked out"
    lock.unlink()
    mlsnap(project, "commit", "m.bin", "--no-push")


class _Boom:
    def __init__(self, sentinel: str) -> None:
        self.sentinel = sentinel

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.sentinel}",))


def test_pickles_are_never_loaded_and_pull_warns_once(project: Path, tmp_path: Path) -> None:
    sentinel = tmp_path / "SENTINEL"
    (project / "model.pkl").write_bytes(pickle.dumps(_Boom(str(sentinel))))
    (project / "model.pt").write_bytes(pickle.dumps(_Boom(str(sentinel))))
    mlsnap(project, "commit", "model.pkl", "model.pt")
    for rel in ("model.pkl", "model.pt"):
        (project / rel).unlink()
    out = mlsnap(project, "pull").stdout
    assert out.count("proves these pickled files are intact, not that they are safe") == 1
    assert "safetensors" in out
    for args in (["status"], ["show"], ["log"], ["diff"]):
        mlsnap(project, *args, check=None)
    assert not sentinel.exists()
