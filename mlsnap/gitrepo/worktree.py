"""Temporary worktrees for ``mlsnap repro``, which re-runs a snapshot's command in one: the
user's HEAD, branch, index and work tree are never touched. Hooks are off: a post-checkout
hook that pulls must not run in it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mlsnap.gitrepo.core import check_rev, out, run

_NO_HOOKS = ["-c", "core.hooksPath=/dev/null"]


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
