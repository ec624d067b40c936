"""History read in batches: refs, worktrees, stashes, raw logs, blobs and remote heads.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

# Variables Git sets for hooks; left in place they point a nested `git` at the wrong repository.
from mlsnap.gitrepo.core import check_rev, out, run


def subject(root: Path, rev: str) -> str:
    """The first line of the message of commit ``rev``."""
    return out(root, ["log", "-1", "--format=%s", "--end-of-options", check_rev(rev)])


def last_commit_of(root: Path, path: str) -> str | None:
    """The newest commit at or before HEAD that changed ``path``."""
    sha = out(root, ["log", "-1", "--format=%H", "HEAD", "--", path])
    return sha or None


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
