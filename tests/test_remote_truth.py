"""What mlsnap says about the remote is checked object by object, folders' files included.

DVC takes a folder's ``.dir`` listing on the remote as proof of every file in it, and its cloud
status reports "on the remote, not in this cache" like "missing". These tests build the states
where that misleads (a fresh clone, a remote that lost files, a push or fetch cut short after
the listing landed) on a real folder remote, and check every answer against the remote's files.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.helpers import git, mlsnap, sha256


def _folder_project(project: Path, files: int = 12) -> dict[str, str]:
    models = project / "models"
    models.mkdir()
    for i in range(files):
        (models / f"w{i:02d}.bin").write_bytes(f"weights {i}\n".encode() * (i + 1))
    mlsnap(project, "commit", "models", "-M", "folder model")
    return {p.name: sha256(p) for p in models.iterdir()}


def _remote_object(remote: Path, md5: str) -> Path:
    return remote / "files" / "md5" / md5[:2] / md5[2:]


def _listing(project: Path) -> tuple[str, list[dict[str, str]]]:
    pointer = (project / "models.dvc").read_text()
    md5 = next(line.split(":", 1)[1].strip() for line in pointer.splitlines()
               if line.strip().startswith("- md5:") or line.strip().startswith("md5:"))
    cached = project / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]
    return md5, json.loads(cached.read_text())


def test_fresh_clone_status_does_not_blame_the_remote(project: Path, tmp_path: Path) -> None:
    _folder_project(project)
    (project / "model.pkl").write_bytes(b"a model\n" * 100)
    mlsnap(project, "commit", "model.pkl", "-M", "file model")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(project), str(clone))
    out = mlsnap(clone, "status", check=None)
    assert "not on remote" not in out.stdout + out.stderr, out.stdout
    assert "model.pkl" in out.stdout and "pull" in out.stdout, out.stdout
    mlsnap(clone, "pull")
    assert mlsnap(clone, "status").returncode == 0


def test_remote_that_lost_folder_files_is_reported_and_refilled(project: Path,
                                                               remote_dir: Path,
                                                               tmp_path: Path) -> None:
    digests = _folder_project(project)
    _, entries = _listing(project)
    lost = [e["md5"] for e in entries[:3]]
    for md5 in lost:  # the listing stays on the remote; three of its files do not
        _remote_object(remote_dir, md5).unlink()

    out = mlsnap(project, "status", check=3)
    assert "not on remote: models" in out.stdout, out.stdout
    out = mlsnap(project, "push")
    assert "pushed 3 object(s)" in out.stdout, out.stdout
    assert all(_remote_object(remote_dir, md5).is_file() for md5 in lost)
    assert "everything is already on the remote" in mlsnap(project, "push").stdout
    mlsnap(project, "status")

    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(project), str(clone))
    mlsnap(clone, "pull")
    assert {p.name: sha256(p) for p in (clone / "models").iterdir()} == digests


def test_push_without_the_bytes_says_they_are_nowhere(project: Path, remote_dir: Path,
                                                      tmp_path: Path) -> None:
    _folder_project(project)
    _, entries = _listing(project)
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(project), str(clone))
    _remote_object(remote_dir, entries[0]["md5"]).unlink()
    out = mlsnap(clone, "push", check=1)
    assert "everything is already on the remote" not in out.stdout
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "neither in this cache nor on remote" in lines[0], out.stderr
    assert "Traceback" not in out.stderr


def test_get_after_a_fetch_cut_short_fetches_the_rest(project: Path, tmp_path: Path) -> None:
    digests = _folder_project(project)
    md5, entries = _listing(project)
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(project), str(clone))
    # What a fetch killed after the listing and two files leaves in the clone's cache.
    cache = project / ".dvc" / "cache" / "files" / "md5"
    for oid in [md5] + [e["md5"] for e in entries[:2]]:
        dest = clone / ".dvc" / "cache" / "files" / "md5" / oid[:2] / oid[2:]
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(cache / oid[:2] / oid[2:], dest)
    out = mlsnap(clone, "get", "HEAD", "-o", str(tmp_path / "out"))
    assert out.returncode == 0
    got = tmp_path / "out" / "models"
    assert {p.name: sha256(p) for p in got.iterdir()} == digests


def test_half_written_dvc_rwlock_is_repaired(project: Path) -> None:
    (project / "model.pkl").write_bytes(b"a model\n" * 100)
    rwlock = project / ".dvc" / "tmp" / "rwlock"
    rwlock.parent.mkdir(parents=True, exist_ok=True)
    rwlock.write_text('{"write": {"/x": {"pid": 1')  # cut off mid-write by a kill
    out = mlsnap(project, "commit", "model.pkl")
    assert "snapshot" in out.stdout
    mlsnap(project, "status")


def test_a_file_lost_from_remote_and_cache_is_called_lost_not_pushed(project: Path,
                                                                   remote_dir: Path,
                                                                   tmp_path: Path) -> None:
    (project / "model.pkl").write_bytes(b"a model\n" * 100)
    mlsnap(project, "commit", "model.pkl")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(project), str(clone))
    for obj in (remote_dir / "files").rglob("*"):
        if obj.is_file():
            obj.unlink()
    out = mlsnap(clone, "push", check=1)
    assert "everything is already on the remote" not in out.stdout
    assert "model.pkl" in out.stderr and "neither in this cache nor on remote" in out.stderr
    out = mlsnap(clone, "status", check=3)
    assert "lost here: model.pkl" in out.stdout and "(run `mlsnap pull`)" not in out.stdout
    # The first project still has the bytes: its push puts them back.
    out = mlsnap(project, "status", check=3)
    assert "not on remote: model.pkl (run `mlsnap push`)" in out.stdout, out.stdout
    assert "pushed 1 object(s)" in mlsnap(project, "push").stdout
    mlsnap(clone, "pull")


def test_push_hook_refills_a_folder_whose_listing_alone_reached_the_remote(
        project: Path, remote_dir: Path) -> None:
    """`mlsnap hook mlsnap-push` (what the pre-push hook runs) asks object by object too."""
    _folder_project(project)
    _, entries = _listing(project)
    lost = [e["md5"] for e in entries[-2:]]
    for md5 in lost:
        _remote_object(remote_dir, md5).unlink()
    mlsnap(project, "hook", "mlsnap-push")
    assert all(_remote_object(remote_dir, md5).is_file() for md5 in lost)
    mlsnap(project, "status")
