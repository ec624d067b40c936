"""Temporary worktrees for ``mlsnap repro``, which re-runs a snapshot's command in one: the
user's HEAD, branch, index and work tree are never touched. Hooks are off: a post-checkout
hook that pulls must not run in it.

Each temporary worktree is marked (``<common git dir>/mlsnap-worktrees/<pid>-<id>``, naming its
folder) *before* its folder exists, and unmarked once it is gone. A repro killed in between
leaves its mark; the next mlsnap command (``journal.recover``) removes the worktrees of marks
whose process has ended (:func:`remove_stale_worktrees`). Only a marked path is ever removed: a
worktree of the user's is never touched, whatever its name.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
from collections.abc import Sequence
from pathlib import Path

from mlsnap.fsutil import process_alive, process_start_time
from mlsnap.gitrepo.core import check_rev, common_dir, out, run

_NO_HOOKS = ["-c", "core.hooksPath=/dev/null"]
MARKS_DIR = "mlsnap-worktrees"
TEMP_PREFIX = "mlsnap-repro-"


def marks_dir(root: Path) -> Path:
    return common_dir(root) / MARKS_DIR


def mark_temporary(root: Path, parent: Path) -> tuple[Path, Path]:
    """Choose a new temporary folder in ``parent`` (not created yet) and mark it as this
    process's; returns (folder, mark). Create the folder only after this returns."""
    where = marks_dir(root)
    where.mkdir(exist_ok=True)
    token = secrets.token_hex(8)
    folder = parent.resolve() / f"{TEMP_PREFIX}{token}"
    mark = where / f"{os.getpid()}-{token}"
    record = {"pid": os.getpid(), "started": process_start_time(os.getpid()), "folder": str(folder)}
    fd = os.open(mark, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, json.dumps(record).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return folder, mark


def unmark(mark: Path) -> None:
    mark.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        mark.parent.rmdir()  # only when no other mark is left


def remove_temporary(root: Path, folder: Path) -> None:
    """Remove a temporary folder of :func:`mark_temporary` and every worktree Git registered
    inside it (a registration left locked by a killed ``git worktree add`` too)."""
    folder = folder.resolve()
    for wt in _registered_inside(root, folder):
        worktree_remove(root, wt)
    shutil.rmtree(folder, ignore_errors=True)
    run(root, ["worktree", "prune"], check=False)


def _registered_inside(root: Path, folder: Path) -> list[Path]:
    """Worktrees Git records at a path inside ``folder`` (from ``.git/worktrees/*/gitdir``)."""
    found = []
    admin = common_dir(root) / "worktrees"
    with contextlib.suppress(OSError):
        for entry in admin.iterdir():
            try:
                gitdir = Path((entry / "gitdir").read_text().strip())
            except OSError:
                continue
            if folder in gitdir.parents:
                # `git worktree add` locks the entry while it works; a killed one stays locked
                (entry / "locked").unlink(missing_ok=True)
                found.append(gitdir.parent)
    return found


def remove_stale_worktrees(root: Path) -> int:
    """Remove the temporary worktrees whose marking process has ended; return how many."""
    where = marks_dir(root)
    try:
        marks = sorted(where.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return 0
    removed = 0
    for mark in marks:
        pid_text = mark.name.split("-", 1)[0]
        try:
            record = json.loads(mark.read_bytes())
            folder = Path(record["folder"])
            started = record.get("started")
        except (OSError, ValueError, KeyError, TypeError):
            record, folder, started = None, None, None
        if pid_text.isdigit() and process_alive(int(pid_text), started):
            continue
        # Only a folder of the form mark_temporary makes: never anything else of the user's.
        if folder is not None and folder.is_absolute() and folder.name.startswith(TEMP_PREFIX) \
                and ".." not in folder.parts:
            remove_temporary(root, folder)
            removed += 1
        unmark(mark)
    return removed


def worktree_add(root: Path, path: Path, commit: str) -> None:
    """A detached worktree of ``commit`` at ``path`` (absolute, not existing yet)."""
    run(root, [*_NO_HOOKS, "worktree", "add", "--detach", "--quiet", str(path),
               check_rev(commit)])


def worktree_remove(root: Path, path: Path) -> None:
    """Remove the worktree at ``path`` and Git's record of it, whatever it holds now."""
    import shutil

    proc = run(root, ["worktree", "remove", "--force", "--force", str(path)], check=False)
    if proc.returncode != 0 or path.exists():
        shutil.rmtree(path, ignore_errors=True)
    run(root, ["worktree", "prune"], check=False)


def changed_by(root: Path, commit: str) -> list[str]:
    """Files ``commit`` added or modified against its first parent (all of a root commit's)."""
    raw = run(root, ["diff-tree", "--no-commit-id", "--root", "-r", "-z", "--name-only",
                     "--no-renames", "--diff-filter=AMT", check_rev(commit)]).stdout
    return [p.decode(errors="surrogateescape") for p in raw.split(b"\x00") if p]


def checkout_files(worktree: Path, commit: str, paths: Sequence[str]) -> None:
    """Put the content of ``paths`` at ``commit`` into ``worktree`` (its own index only)."""
    if paths:
        run(worktree, [*_NO_HOOKS, "--literal-pathspecs", "checkout", check_rev(commit), "--",
                       *paths])


def apply_patch(worktree: Path, patch: Path) -> None:
    """Apply a ``git diff --binary`` patch to ``worktree``'s files (not its index)."""
    run(worktree, ["apply", "--binary", "--whitespace=nowarn", str(patch)])


def last_change(root: Path, rev: str, path: str) -> str | None:
    """The newest commit at or before ``rev`` that changed ``path``."""
    sha = out(root, ["log", "-1", "--format=%H", "--end-of-options", check_rev(rev), "--", path])
    return sha or None
