"""The few Git operations mlsnap needs, through the ``git`` command (fast, exact, no daemon)."""

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


def subject(root: Path, rev: str) -> str:
    """The first line of the message of commit ``rev``."""
    return out(root, ["log", "-1", "--format=%s", "--end-of-options", check_rev(rev)])


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
                 remove: Sequence[str] = ()) -> str:
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
        run(root, ["commit", "--quiet", "--no-verify", "-m", message], index=index)
    finally:
        index.unlink(missing_ok=True)
    fault_point("before-index-sync")
    sync_index(root, [*add, *remove])
    return head(root)


def sync_index(root: Path, paths: Sequence[str]) -> None:
    """Make the real index entries of ``paths`` match HEAD (unstaging what HEAD lacks)."""
    if paths:
        run(root, ["reset", "-q", "HEAD", "--", *paths], check=False)


def last_commit_of(root: Path, path: str) -> str | None:
    """The newest commit at or before HEAD that changed ``path``."""
    sha = out(root, ["log", "-1", "--format=%H", "HEAD", "--", path])
    return sha or None


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


def create_tag(root: Path, tag: str, rev: str, message: str) -> None:
    run(root, ["tag", "-a", "-m", message, "--", tag, check_rev(rev)])


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


def files_changed_by(root: Path, rev_args: Sequence[str], folder: str) -> list[tuple[str, str]]:
    """(commit, path) of every file under ``folder`` that the selected commits (``git log``
    arguments) added or modified, newest commit first."""
    raw = run(root, ["log", "--format=@%H", "--name-only", "--no-renames", "--diff-filter=AM",
                     *rev_args, "--", f"{folder}/"]).stdout
    found: list[tuple[str, str]] = []
    commit = ""
    for line in raw.decode(errors="replace").splitlines():
        if line.startswith("@"):
            commit = line[1:]
        elif line:
            found.append((commit, line))
    return found


def files_at(root: Path, sha: str, folder: str) -> list[str]:
    """Paths of the files directly under ``folder`` in commit ``sha``."""
    raw = run(root, ["ls-tree", "-z", "--name-only", sha, "--", f"{folder}/"]).stdout
    return [p.decode(errors="replace") for p in raw.split(b"\0") if p]

# --------------------------------------------------------------------------- staged content

_BLOB_MODES = ("100644", "100755")
_MAX_ARGS = 500


class Staged:
    """Reads what a commit would hold: index content first, the work tree as a fallback."""

    def __init__(self, root: Path, index: Path | None = None) -> None:
        self.root = root
        self.index = index

    def git(self, args: Sequence[str], check: bool = True) -> bytes:
        return run(self.root, ["--literal-pathspecs", *args], index=self.index,
                           check=check).stdout

    def changed(self) -> list[str]:
        """Paths added or modified in the index relative to HEAD (all of them before a commit)."""
        raw = self.git(["diff", "--cached", "--name-only", "-z", "--no-renames",
                        "--diff-filter=ACMRT"])
        return [p.decode(errors="surrogateescape") for p in raw.split(b"\0") if p]

    def blobs(self, paths: Sequence[str]) -> dict[str, str]:
        """Blob id of each regular file among ``paths`` in the index (symlinks, submodules out)."""
        if not paths:
            return {}
        wanted = set(paths)
        # A first commit of a big tree stages more paths than a command line holds: list all.
        spec = list(paths) if len(paths) <= _MAX_ARGS else []
        found = {}
        for entry in self.git(["ls-files", "-s", "-z", "--", *spec]).split(b"\0"):
            if not entry:
                continue
            meta, _, raw = entry.partition(b"\t")
            mode, sha, _stage = meta.decode().split()
            path = raw.decode(errors="surrogateescape")
            if mode in _BLOB_MODES and path in wanted:
                found[path] = sha
        return found

    def sizes(self, paths: Sequence[str]) -> dict[str, int]:
        """Size in bytes of each path: the staged blob, else the work tree file."""
        blobs = self.blobs(paths)
        sizes: dict[str, int] = {}
        if blobs:
            order = list(blobs)
            query = "".join(f"{blobs[p]}\n" for p in order).encode()
            raw = run(self.root, ["cat-file", "--batch-check=%(objectsize)"],
                              input=query).stdout.decode().split()
            sizes.update({p: int(n) for p, n in zip(order, raw, strict=True)})
        for path in paths:
            if path not in sizes:
                full = self.root / path
                if full.is_file() and not full.is_symlink():
                    sizes[path] = full.stat().st_size
        return sizes

    def lfs(self, paths: Sequence[str]) -> set[str]:
        """Paths Git LFS stores (``filter=lfs``): their bytes do not enter Git."""
        if not paths:
            return set()
        query = b"".join(p.encode(errors="surrogateescape") + b"\0" for p in paths)
        raw = run(self.root, ["check-attr", "--cached", "--stdin", "-z", "filter"],
                          input=query, index=self.index).stdout.split(b"\0")
        return {raw[i].decode(errors="surrogateescape") for i in range(0, len(raw) - 2, 3)
                if raw[i + 2] == b"lfs"}

    def read(self, path: str, worktree: bool = True) -> bytes | None:
        proc = run(self.root, ["cat-file", "blob", f":{path}"], index=self.index,
                           check=False)
        if proc.returncode == 0:
            return proc.stdout
        full = self.root / path
        return full.read_bytes() if worktree and full.is_file() else None

    def files_under(self, folder: str) -> list[str]:
        """Paths in the index under ``folder``."""
        raw = self.git(["ls-files", "-z", "--", f"{folder}/"])
        return [p.decode(errors="surrogateescape") for p in raw.split(b"\0") if p]


# --------------------------------------------------------------------------- refs and history
# (what `mlsnap gc` needs to see every snapshot any ref, worktree or stash still names)


def refs(root: Path) -> dict[str, str]:
    """Ref name -> the commit it names (tags peeled), for branches, remote-tracking branches,
    tags and the stash; refs naming anything but a commit are left out (one process)."""
    fmt = "--format=%(objectname) %(objecttype) %(*objectname) %(*objecttype) %(refname)"
    raw = out(root, ["for-each-ref", fmt, "refs/heads", "refs/remotes", "refs/tags",
                     "refs/stash"])
    found: dict[str, str] = {}
    for line in raw.splitlines():
        obj, kind, peeled, peeled_kind, ref = (line.split(" ", 4) + [""] * 5)[:5]
        if kind == "commit":
            found[ref] = obj
        elif kind == "tag" and peeled_kind == "commit":
            found[ref] = peeled
    return found


def worktrees(root: Path) -> list[tuple[Path, str | None]]:
    """(path, HEAD commit or None when unborn) of every worktree of this repository."""
    raw = out(root, ["worktree", "list", "--porcelain"])
    found: list[tuple[Path, str | None]] = []
    for block in raw.split("\n\n"):
        fields = dict(line.partition(" ")[::2] for line in block.splitlines() if line)
        if "worktree" in fields and "bare" not in fields:
            sha = fields.get("HEAD", "")
            found.append((Path(fields["worktree"]), None if set(sha) <= {"0"} else sha))
    return found


def stash_commits(root: Path) -> list[str]:
    """Every stash entry and the commits holding its index and untracked files."""
    proc = run(root, ["log", "-g", "--format=%H %P", "refs/stash", "--"], check=False)
    found: list[str] = []
    for line in proc.stdout.decode().splitlines() if proc.returncode == 0 else []:
        commit, *parents = line.split()
        found += [commit, *parents[1:]]  # parents[0] is the commit the stash was made on
    return found


def path_changes(root: Path, tips: Sequence[str], spec: str) -> list[tuple[str, int, str, str]]:
    """(commit, committer time, path, new blob) of every change under ``spec`` in the history
    of ``tips``, newest first (one ``git log``; tips read from stdin, so any number fits).

    ``--full-history`` keeps changes made on branches that a merge later superseded.
    """
    if not tips:
        return []
    proc = run(root, ["log", "--stdin", "--topo-order", "--full-history", "--no-abbrev",
                      "--raw", "-z", "--no-renames", "--format=%x1e%H %ct", "--", spec],
               input="".join(f"{t}\n" for t in dict.fromkeys(tips)).encode())
    return parse_raw_log(proc.stdout)


def parse_raw_log(raw: bytes) -> list[tuple[str, int, str, str]]:
    """(commit, commit time, path, new blob) of each file a ``git log --raw -z --no-renames
    --format=%x1e%H %ct`` output shows added or modified, in the log's order."""
    found: list[tuple[str, int, str, str]] = []
    tokens = raw.split(b"\x00")
    commit, stamp, i = "", 0, 0
    while i < len(tokens):
        token = tokens[i].lstrip(b"\n")
        i += 1
        if token.startswith(b"\x1e"):
            sha, _, ts = token[1:].decode().partition(" ")
            commit, stamp = sha, int(ts)
        elif token.startswith(b":") and i < len(tokens):
            path = tokens[i].decode(errors="replace")
            i += 1
            fields = token.decode().split()  # :old_mode new_mode old_blob new_blob status
            if fields[-1][:1] in ("A", "M", "T"):
                found.append((commit, stamp, path, fields[3]))
    return found


def commits_touching(root: Path, tip: str, spec: str) -> list[str]:
    """Commits reachable from ``tip`` that change ``spec``, newest first."""
    raw = out(root, ["rev-list", "--full-history", "--end-of-options", check_rev(tip),
                     "--", spec])
    return raw.split()


def not_on_remotes(root: Path, tips: Sequence[str], spec: str) -> set[str]:
    """Commits changing ``spec`` reachable from ``tips`` but from no remote-tracking branch."""
    if not tips:
        return set()
    # Git reads the stdin revisions where --stdin stands: before --not applies.
    proc = run(root, ["rev-list", "--full-history", "--stdin", "--not", "--remotes", "--", spec],
               input="".join(f"{t}\n" for t in dict.fromkeys(tips)).encode())
    return set(proc.stdout.decode().split())


def blob_ids(root: Path, specs: Sequence[str]) -> dict[str, str | None]:
    """``REV:PATH`` -> blob id, or None where there is no such blob (one process)."""
    if not specs:
        return {}
    proc = run(root, ["cat-file", "--batch-check=%(objectname) %(objecttype)"],
               input="".join(f"{s}\n" for s in specs).encode())
    found: dict[str, str | None] = {}
    for spec, line in zip(specs, proc.stdout.decode().splitlines()):
        sha, _, kind = line.partition(" ")
        found[spec] = sha if kind == "blob" else None
    return found


def blobs(root: Path, ids: Sequence[str]) -> dict[str, bytes]:
    """Contents of many objects through one ``git cat-file --batch``."""
    if not ids:
        return {}
    raw = run(root, ["cat-file", "--batch"], input="".join(f"{b}\n" for b in ids).encode()).stdout
    contents: dict[str, bytes] = {}
    pos = 0
    while pos < len(raw):
        end = raw.index(b"\n", pos)
        header = raw[pos:end].decode().split()
        pos = end + 1
        if len(header) == 3:
            size = int(header[2])
            contents[header[0]] = raw[pos:pos + size]
            pos += size + 1  # the newline after the content
    return contents


def remote_names(root: Path) -> list[str]:
    return out(root, ["remote"]).split()


def remote_heads(root: Path, remote: str) -> dict[str, str] | None:
    """Branch and tag refs on the Git remote -> commit (tags peeled); None when it cannot be
    asked (offline, gone, refused). Asked live: ``git ls-remote``."""
    proc = run(root, ["ls-remote", "--heads", "--tags", "--end-of-options", check_rev(remote)],
               check=False)
    if proc.returncode != 0:
        return None
    found: dict[str, str] = {}
    for line in proc.stdout.decode().splitlines():
        sha, _, ref = line.partition("\t")
        found[ref.removesuffix("^{}")] = sha  # the peeled line comes last and wins
    return found


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
