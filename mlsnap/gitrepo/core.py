"""The one ``git`` runner, and the repository's work tree, index, commits and tags.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path

from mlsnap.errors import BadInput, GitFailed, NoCommits, NoGitIdentity, NotAGitRepo
from mlsnap.fsutil import fault_point

# Variables Git sets for hooks; left in place they point a nested `git` at the wrong repository.


_LEAKY_GIT_VARS = (
    "GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_PREFIX", "GIT_COMMON_DIR", "GIT_NAMESPACE",
)


def no_git_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment without the GIT_* variables that leak into hooks."""
    env = dict(os.environ if base is None else base)
    for var in _LEAKY_GIT_VARS:
        env.pop(var, None)
    return env


def run(root: Path, args: Sequence[str], *, input: bytes | None = None,
        check: bool = True, index: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run ``git args`` in ``root``; raise ``GitFailed`` (command, code, stderr) on failure.

    ``index`` points Git at another index file (``GIT_INDEX_FILE``).
    """
    env = no_git_env()
    if index is not None:
        env["GIT_INDEX_FILE"] = str(index)
    proc = subprocess.run(
        ["git", *args], cwd=root, input=input, capture_output=True, env=env, check=False
    )
    if check and proc.returncode != 0:
        raise GitFailed(args, proc.returncode, proc.stderr.decode(errors="replace"))
    return proc


def out(root: Path, args: Sequence[str]) -> str:
    return run(root, args).stdout.decode(errors="replace").strip()


def require_identity(root: Path) -> None:
    """Fail before any change when Git cannot name an author and committer for a commit.

    Git itself finds that out only at ``git commit``, after mlsnap would have written and
    staged everything; ``git var`` asks the same question with no side effect.
    """
    for var in ("GIT_AUTHOR_IDENT", "GIT_COMMITTER_IDENT"):
        if run(root, ["var", var], check=False).returncode != 0:
            raise NoGitIdentity(str(root))


def toplevel(path: Path) -> Path:
    """The work tree root containing ``path``."""
    proc = run(path, ["rev-parse", "--show-toplevel"], check=False)
    if proc.returncode != 0:
        raise NotAGitRepo(str(path))
    return Path(proc.stdout.decode().strip())


def head(root: Path) -> str:
    """Full SHA of HEAD; ``NoCommits`` in a repository without any."""
    proc = run(root, ["rev-parse", "--verify", "-q", "HEAD^{commit}"], check=False)
    if proc.returncode != 0:
        raise NoCommits(str(root))
    return proc.stdout.decode().strip()


def head_or_none(root: Path) -> str | None:
    """Full SHA of HEAD, or None on an unborn branch."""
    proc = run(root, ["rev-parse", "--verify", "-q", "HEAD^{commit}"], check=False)
    return proc.stdout.decode().strip() if proc.returncode == 0 else None


def git_path(root: Path, name: str) -> Path:
    """Where Git keeps ``name`` (``hooks`` follows ``core.hooksPath``), as an absolute path."""
    path = Path(out(root, ["rev-parse", "--git-path", name]))
    return path if path.is_absolute() else root / path


def branch(root: Path) -> str | None:
    """Current branch name, or None when HEAD is detached."""
    proc = run(root, ["symbolic-ref", "-q", "--short", "HEAD"], check=False)
    return proc.stdout.decode().strip() or None if proc.returncode == 0 else None


def check_rev(rev: str) -> str:
    """Refuse revisions that Git would read as options (``--upload-pack=...``)."""
    if not rev or rev.startswith("-") or "\x00" in rev or "\n" in rev:
        raise BadInput(repr(rev), "not a revision; give a commit, branch or tag")
    return rev


def resolve(root: Path, rev: str) -> str | None:
    """Full commit SHA of ``rev`` or None when it names no commit."""
    proc = run(root, ["rev-parse", "--verify", "-q", "--end-of-options", f"{check_rev(rev)}^{{commit}}"],
               check=False)
    return proc.stdout.decode().strip() if proc.returncode == 0 else None


def modified_tracked(root: Path) -> list[str]:
    """Tracked paths with staged or unstaged changes (untracked files are ignored)."""
    raw = run(root, ["status", "--porcelain=v1", "-z", "--untracked-files=no"]).stdout
    paths = []
    entries = raw.split(b"\x00")
    i = 0
    while i < len(entries):
        entry = entries[i]
        i += 1
        if not entry:
            continue
        status, path = entry[:2], entry[3:]
        if status[:1] in (b"R", b"C"):
            i += 1  # the source path of a rename follows
        paths.append(path.decode(errors="replace"))
    return paths


def diff_head(root: Path, exclude: Iterable[str] = ()) -> bytes:
    """The uncommitted diff of tracked files against HEAD, binary-safe, with each dirty
    submodule's own diff (its paths prefixed), where Git alone would only say ``-dirty``."""
    specs = [f":(exclude){p}" for p in exclude]
    diff = run(root, ["diff", "HEAD", "--binary", "--ignore-submodules=dirty", "--", ".",
                      *specs]).stdout
    for sub in submodules(root):
        proc = run(root / sub, ["diff", "HEAD", "--binary", f"--src-prefix=a/{sub}/",
                                f"--dst-prefix=b/{sub}/"], check=False)
        diff += proc.stdout if proc.returncode == 0 else b""
    return diff


def submodules(root: Path) -> list[str]:
    """Paths of the checked-out submodules named in ``.gitmodules`` (no process without one)."""
    if not (root / ".gitmodules").is_file():
        return []
    proc = run(root, ["config", "--file", ".gitmodules", "--get-regexp", r"^submodule\..*\.path$"],
               check=False)
    paths = [line.split(" ", 1)[1] for line in proc.stdout.decode(errors="replace").splitlines()
             if " " in line]
    return [p for p in paths if (root / p / ".git").exists()]


def tracked(root: Path, paths: Sequence[str]) -> list[str]:
    """Which of ``paths`` are tracked by Git (they cannot also be tracked by DVC)."""
    if not paths:
        return []
    raw = run(root, ["ls-files", "-z", "--", *paths]).stdout
    return [p.decode() for p in raw.split(b"\x00") if p]


def ignored(root: Path, paths: Sequence[str]) -> list[str]:
    """Which of ``paths`` Git ignores (tracked files never count as ignored)."""
    if not paths:
        return []
    proc = run(root, ["check-ignore", "--stdin", "-z"], check=False,
               input=b"".join(p.encode() + b"\x00" for p in paths))
    if proc.returncode not in (0, 1):
        raise GitFailed(["check-ignore", "--stdin", *paths], proc.returncode,
                        proc.stderr.decode(errors="replace"))
    return [p.decode() for p in proc.stdout.split(b"\x00") if p]


def changed_paths(root: Path, paths: Sequence[str]) -> list[str]:
    """Which of ``paths`` differ from HEAD or are untracked (one ``git status``)."""
    if not paths:
        return []
    raw = run(root, ["status", "--porcelain=v1", "-z", "--untracked-files=all", "--",
                     *paths]).stdout
    return sorted({e[3:].decode(errors="replace") for e in raw.split(b"\x00") if len(e) > 3}
                  & set(paths))


def commit_paths(root: Path, message: str, add: Sequence[str],
                 remove: Sequence[str] = (), sign: bool = False) -> str:
    """Commit exactly: HEAD + ``add`` (work tree content) - ``remove``; return the new SHA.

    The commit is built in a private index, so whatever else the user staged stays staged and
    out of this commit; the entries of these paths in the real index then follow the commit.
    Hooks do not run: the commit holds only files mlsnap wrote and has validated itself.
    """
    index = git_dir(root) / "mlsnap-index"
    has_head = run(root, ["rev-parse", "-q", "--verify", "HEAD^{commit}"], check=False)
    try:
        if has_head.returncode == 0:
            run(root, ["read-tree", "HEAD"], index=index)
        else:
            index.unlink(missing_ok=True)
        if add:
            run(root, ["add", "--", *add], index=index)
        if remove:
            run(root, ["rm", "-r", "--cached", "--quiet", "--ignore-unmatch", "--", *remove],
                index=index)
        fault_point("after-git-add")
        run(root, ["commit", "--quiet", "--no-verify", *(["-S"] if sign else []), "-m", message],
            index=index)
    finally:
        index.unlink(missing_ok=True)
    fault_point("before-index-sync")
    sync_index(root, [*add, *remove])
    return head(root)


def sync_index(root: Path, paths: Sequence[str]) -> None:
    """Make the real index entries of ``paths`` match HEAD (unstaging what HEAD lacks)."""
    if paths:
        run(root, ["reset", "-q", "HEAD", "--", *paths], check=False)


def show(root: Path, rev: str, path: str) -> bytes | None:
    """Content of ``path`` at ``rev`` or None when it does not exist there."""
    proc = run(root, ["cat-file", "blob", f"{rev}:{path}"], check=False)
    return proc.stdout if proc.returncode == 0 else None


def is_shallow(root: Path) -> bool:
    """Whether ``root`` is a shallow clone (no process: Git keeps the cut in ``shallow``)."""
    return (common_dir(root) / "shallow").is_file()


def git_dir(root: Path) -> Path:
    """This work tree's Git directory; no process in the common case of a plain ``.git``."""
    if (root / ".git").is_dir():
        return root / ".git"
    path = Path(out(root, ["rev-parse", "--git-dir"]))
    return path if path.is_absolute() else root / path


def tag_exists(root: Path, tag: str) -> bool:
    return run(root, ["rev-parse", "-q", "--verify", f"refs/tags/{tag}"], check=False).returncode == 0


def create_tag(root: Path, tag: str, rev: str, message: str, sign: bool = False) -> None:
    run(root, ["tag", "-s" if sign else "-a", "-m", message, "--", tag, check_rev(rev)])


def tag_is_signed(root: Path, tag: str) -> bool:
    """Whether the annotated tag ``tag`` carries a signature (good or not: Git judges it)."""
    proc = run(root, ["cat-file", "tag", f"refs/tags/{tag}"], check=False)
    return proc.returncode == 0 and b"-----BEGIN " in proc.stdout and b" SIGNATURE-----" in proc.stdout


def changed_since_head(root: Path, paths: Sequence[str]) -> bool:
    """Whether any of ``paths`` differs from HEAD (or is new, or there is no HEAD)."""
    if run(root, ["rev-parse", "-q", "--verify", "HEAD^{commit}"], check=False).returncode:
        return True
    listed = set(tracked_at_head(root, paths))
    if any(p not in listed for p in paths):
        return True
    return run(root, ["diff", "--quiet", "HEAD", "--", *paths], check=False).returncode != 0


def tracked_at_head(root: Path, paths: Sequence[str]) -> list[str]:
    raw = run(root, ["ls-tree", "-r", "-z", "--name-only", "HEAD", "--", *paths]).stdout
    return [p.decode() for p in raw.split(b"\x00") if p]


def common_dir(root: Path) -> Path:
    """The Git directory shared by all worktrees (where caches belong); no process when obvious."""
    dot_git = root / ".git"
    if dot_git.is_dir():
        return dot_git
    path = Path(out(root, ["rev-parse", "--git-common-dir"]))
    return path if path.is_absolute() else root / path


def has_commit(root: Path, sha: str) -> bool:
    return run(root, ["cat-file", "-e", f"{sha}^{{commit}}"], check=False).returncode == 0


def identity(root: Path) -> str:
    """Who Git says is committing here (``Name <email>``), or ``unknown``."""
    proc = run(root, ["var", "GIT_COMMITTER_IDENT"], check=False)
    ident = proc.stdout.decode(errors="replace").strip()
    return ident.rsplit(" ", 2)[0] if proc.returncode == 0 and ident else "unknown"


def hash_object(root: Path, path: Path) -> str:
    """The blob id Git gives the bytes of ``path`` (nothing is written)."""
    return out(root, ["hash-object", "--no-filters", "--", str(path)])


def files_matching(root: Path, pattern: str) -> list[str]:
    """Tracked and untracked, not ignored, files matching ``pattern`` (a pathspec glob)."""
    raw = run(root, ["ls-files", "-z", "--cached", "--others", "--exclude-standard", "--",
                     pattern]).stdout
    return sorted({p.decode(errors="replace") for p in raw.split(b"\x00") if p})
