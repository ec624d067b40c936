"""Helpers for the gc tests: snapshots taken in-process, the objects a store holds."""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

from mlsnap import environment, snapshot
from mlsnap.manifest import Manifest
from tests.helpers import git


@functools.cache
def _environment() -> environment.Environment:
    """This process's environment, described once: gc does not look at it, and describing it
    costs more than the rest of a small snapshot."""
    return environment.this_process()


def take(root: Path, paths: list[str], *, name: str = "model", acc: float | None = None,
         msg: str = "", push: bool = True, tag: str | None = None) -> str:
    """One snapshot of ``paths`` through the commit flow itself; return the commit."""
    result = snapshot.commit(paths, name=name, message=msg, push=push, tag=tag, cwd=root,
                             env=_environment(),
                             extra_metrics=None if acc is None else {"acc": acc})
    return result.commit


def show(root: Path, rev: str, name: str = "model") -> Manifest:
    from mlsnap import history

    return history.show(rev, name, cwd=root)


def add_origin(root: Path, origin: Path) -> Path:
    """A bare Git remote ``origin`` that ``root``'s main branch is pushed to."""
    git(origin.parent, "init", "-q", "--bare", "-b", "main", str(origin))
    git(root, "remote", "add", "origin", str(origin))
    git(root, "push", "-q", "-u", "origin", "main")
    return origin


def snap(root: Path, data: bytes, *, name: str = "model", path: str = "model.bin",
         acc: float | None = None, msg: str = "", push: bool = True,
         tag: str | None = None) -> str:
    """Write ``path`` and take a snapshot of it (in this process); return the commit."""
    target = root / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return take(root, [path], name=name, acc=acc, msg=msg, push=push, tag=tag)


def folder(root: Path, path: str, files: dict[str, bytes]) -> None:
    base = root / path
    base.mkdir(parents=True, exist_ok=True)
    for old in base.iterdir():
        old.unlink()
    for rel, data in files.items():
        (base / rel).write_bytes(data)


def objects(files_dir: Path) -> set[str]:
    """Every object id in a DVC cache or folder remote (``.../files/md5``)."""
    if not files_dir.is_dir():
        return set()
    return {p.parent.name + p.name for p in files_dir.glob("??/*") if p.is_file()
            and not p.name.endswith(".tmp")}


def cache_of(root: Path) -> Path:
    return root / ".dvc" / "cache" / "files" / "md5"


def remote_of(remote: Path) -> Path:
    return remote / "files" / "md5"


def oid_path(files_dir: Path, oid: str) -> Path:
    return files_dir / oid[:2] / oid[2:]


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def unit(root: Path, rev: str, name: str = "model") -> set[str]:
    """Every object of the snapshot ``name`` at ``rev``: outputs, and a folder's files."""
    manifest = show(root, rev, name)
    found: set[str] = set()
    for _, oid in manifest.tracked:
        found.add(oid)
        if oid.endswith(".dir"):
            listing = oid_path(cache_of(root), oid)
            found |= {e["md5"] for e in json.loads(listing.read_bytes())}
    return found
