"""Snapshots across Git history, read straight from Git objects (no checkout, no DVC).

``log`` costs one ``git log`` walk over ``.mlsnap/`` (which yields the blob id of every manifest
version) plus one ``git cat-file --batch`` for the blobs it has not parsed before
(``mlsnap.blobs`` parses them fast and caches them by blob id).
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlsnap import collected, gitrepo, workspace
from mlsnap.blobs import Cache, Seen, parse
from mlsnap.errors import BadInput, GitFailed, ManifestInvalid, NoSnapshot
from mlsnap.manifest import (
    MANIFEST_DIR,
    Manifest,
    check_version,
    is_valid_name,
    manifest_path,
)

# `name@v1.2.0`: the Git-tag model-registry form (made by ``mlsnap tag``).
TAG_RE = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]{0,99})@v(?P<version>\d[0-9A-Za-z.+-]*)$")


@dataclass(frozen=True)
class LogEntry:
    """One snapshot in history: a commit that added or changed ``.mlsnap/<name>.yaml``."""

    commit: str
    date: str  # committer date, UTC, ISO 8601
    name: str
    tags: tuple[str, ...]
    manifest: Manifest | None
    error: str | None = None  # why the manifest could not be read (then manifest is None)
    collected: bool = False  # `mlsnap gc --remote` deleted its bytes (mlsnap.collected)

    @property
    def short(self) -> str:
        return self.commit[:7]

    @property
    def message(self) -> str:
        return self.manifest.message if self.manifest else ""

    @property
    def params(self) -> dict[str, Any]:
        return self.manifest.params if self.manifest else {}

    @property
    def metrics(self) -> dict[str, Any]:
        return self.manifest.metrics if self.manifest else {}

    def to_dict(self) -> dict[str, Any]:
        m = self.manifest
        return {
            "commit": self.commit, "short": self.short, "date": self.date, "name": self.name,
            "tags": list(self.tags), "message": self.message, "error": self.error,
            "created": m.created if m else None,
            "code_commit": m.code.commit if m else None,
            "params": self.params, "metrics": self.metrics,
            "artifacts": [o.to_dict() for o in m.artifacts] if m else [],
            "data_hash": m.data_hash if m else None,
            "collected": self.collected,
        }


@dataclass(frozen=True)
class _Found:
    commit: str
    timestamp: int
    name: str
    blob: str


# --------------------------------------------------------------------------- reading Git


def _walk(root: Path, name: str | None, all_refs: bool,
          start: str | None = None) -> list[_Found]:
    """Every (commit, manifest blob) that added or changed a manifest, newest first: one process.

    ``--full-history`` keeps snapshots made on branches that a merge later superseded.
    """
    spec = f"{MANIFEST_DIR}/{name}.yaml" if name else f"{MANIFEST_DIR}/"
    revs = (["--branches", "--tags", "--remotes", "HEAD"] if all_refs
            else ["--end-of-options", gitrepo.check_rev(start or "HEAD")])
    proc = gitrepo.run(root, ["log", "--full-history", "--no-abbrev", "--raw", "-z", "--no-renames",
                              "--format=%x1e%H %ct", *revs, "--", spec], check=False)
    if proc.returncode != 0:
        if gitrepo.resolve(root, "HEAD") is None:
            return []  # no commits yet: no snapshots
        raise GitFailed(["log", *revs], proc.returncode, proc.stderr.decode(errors="replace"))
    found: list[_Found] = []
    for commit, stamp, path, blob in gitrepo.parse_raw_log(proc.stdout):
        snap = _snapshot_name(path)
        if snap and (name is None or snap == name):
            found.append(_Found(commit, stamp, snap, blob))
    return found


def _snapshot_name(path: str) -> str | None:
    folder, _, file = path.partition("/")
    if folder != MANIFEST_DIR or "/" in file or not file.endswith(".yaml"):
        return None
    stem = file[:-5]
    return stem if is_valid_name(stem) else None


def tags_by_commit(root: Path) -> dict[str, list[str]]:
    """Commit SHA -> tag names pointing at it (annotated tags peeled), from one for-each-ref."""
    raw = gitrepo.out(root, ["for-each-ref", "--format=%(objectname) %(*objectname) %(refname)",
                             "refs/tags"])
    tags: dict[str, list[str]] = {}
    for line in raw.splitlines():
        obj, peeled, ref = line.split(" ", 2)
        tags.setdefault(peeled or obj, []).append(ref[len("refs/tags/"):])
    return tags


def tags_for(tags: dict[str, list[str]], commit: str, name: str) -> tuple[str, ...]:
    """Tags of ``commit`` that concern snapshot ``name``: its own ``name@v...`` and plain tags."""
    mine = []
    for tag in tags.get(commit, []):
        match = TAG_RE.match(tag)
        if match is None or match["name"] == name:
            mine.append(tag)
    return tuple(sorted(mine))


def read_blobs(root: Path, blobs: Sequence[str]) -> dict[str, bytes]:
    """Contents of many blobs through one ``git cat-file --batch``."""
    return gitrepo.blobs(root, blobs)


def check_name(manifest: Manifest, name: str, source: str) -> Manifest:
    if manifest.name != name:
        raise ManifestInvalid(source, f"name {manifest.name!r} does not match the file name")
    return manifest


# --------------------------------------------------------------------------- log


def log(name: str | None = None, limit: int | None = None, all_refs: bool = False,
        cwd: Path | None = None) -> list[LogEntry]:
    """Snapshots reachable from HEAD (``all_refs``: every branch, tag and remote), newest first.

    A manifest that cannot be read gives an entry with ``error`` set instead of stopping the log.
    """
    root = workspace.find_root(cwd)
    if name is not None:
        workspace.check_name(name)
    if limit is not None and limit < 0:
        raise BadInput(f"-n {limit}", "must not be negative")
    return log_and_beyond(root, name, limit, all_refs)[0]


@dataclass(frozen=True)
class BeyondShallow:
    """A manifest found in a shallow clone's oldest commit that this clone cannot attribute:
    the snapshot was taken in a commit ``git clone --depth`` left out."""

    name: str
    boundary: str  # the clone's oldest commit, which holds the manifest


def log_and_beyond(root: Path, name: str | None = None, limit: int | None = None,
                   all_refs: bool = False) -> tuple[list[LogEntry], list[BeyondShallow]]:
    """``log``, and the snapshots of a shallow clone that lie beyond its history.

    Git shows every file of a shallow clone's oldest commit as added there, so a snapshot
    taken before it would be listed at the wrong commit. A manifest there is kept only when
    that commit made it (its one parent is the manifest's code commit, as for every snapshot
    commit mlsnap makes); the others are returned apart, never given a commit they lack.
    """
    found = _walk(root, name, all_refs)
    boundary = shallow_commits(root) & {f.commit for f in found}
    if not boundary:
        found = found[:limit] if limit is not None else found
        return _entries(root, found, tags_by_commit(root)), []
    entries = _entries(root, found, tags_by_commit(root))
    parents = commit_parents(root, sorted(boundary))
    kept, beyond = [], []
    for e in entries:
        if e.commit in boundary and not (
                e.manifest is not None and parents.get(e.commit) == [e.manifest.code.commit]):
            beyond.append(BeyondShallow(e.name, e.commit))
        else:
            kept.append(e)
    return (kept[:limit] if limit is not None else kept), beyond


@dataclass(frozen=True)
class Leftover:
    """A file in the workspace that a snapshot recorded but no snapshot at HEAD names (a
    ``git checkout`` removes the ``.dvc`` pointer and leaves the DVC-tracked bytes)."""

    path: str
    name: str  # the newest snapshot, on any branch or tag, that records it
    commit: str


def leftovers(root: Path, at_head: Sequence[Manifest]) -> list[Leftover]:
    """Files of other snapshots still in the workspace: one ``git log --all`` over the
    manifests (parsed once, cached by blob id), then a ``stat`` per recorded path."""
    named = {o.path for m in at_head for o in m.outputs}

    def covered(path: str) -> bool:
        return any(path == p or path.startswith(p + "/") or p.startswith(path + "/")
                   for p in named)

    found: dict[str, Leftover] = {}
    for entry in _entries(root, _walk(root, None, True), {}):
        for o in entry.manifest.outputs if entry.manifest else ():
            if o.path not in found and not covered(o.path) and (root / o.path).exists():
                found[o.path] = Leftover(o.path, entry.name, entry.commit)
    in_git = set(gitrepo.tracked(root, sorted(found)))
    return [found[p] for p in sorted(found) if p not in in_git]


def shallow_commits(root: Path) -> set[str]:
    """The commits where a shallow clone's history is cut (no process: ``.git/shallow``)."""
    try:
        return set((gitrepo.common_dir(root) / "shallow").read_text().split())
    except OSError:
        return set()


def commit_parents(root: Path, commits: Sequence[str]) -> dict[str, list[str]]:
    """The parents each commit object names, even those a shallow clone does not hold
    (``git log`` shows a cut commit as parentless; its object still names them)."""
    parents: dict[str, list[str]] = {}
    for sha, raw in read_blobs(root, commits).items():
        head = raw.split(b"\n\n", 1)[0].decode(errors="replace").splitlines()
        parents[sha] = [line.split()[1] for line in head if line.startswith("parent ")]
    return parents


def _entries(root: Path, found: Sequence[_Found], tags: dict[str, list[str]]) -> list[LogEntry]:
    cache = Cache(gitrepo.common_dir(root) / "mlsnap" / "history.json")
    marks = collected.by_commit(root)
    results = {blob: cache.get(blob) for blob in dict.fromkeys(f.blob for f in found)}
    todo = [blob for blob, result in results.items() if result is None]
    contents = read_blobs(root, todo)
    seen: Seen = {}  # this call's manifests share their identical blocks, no other call's
    for blob in todo:
        try:
            results[blob] = parse(contents[blob], blob, seen=seen)
        except ManifestInvalid as exc:
            results[blob] = exc.reason
        except KeyError:
            continue  # not in the object store (a partial clone): reported below
        cache.put(blob, results[blob])  # type: ignore[arg-type]
    cache.save()
    entries = []
    for f in found:
        source = f"{f.commit[:7]}:{manifest_path(f.name)}"
        result = results[f.blob]
        manifest, error = None, None
        if isinstance(result, Manifest):
            manifest = result
            if result.name != f.name:
                error = str(ManifestInvalid(source, f"name {result.name!r} does not match the file name"))
                manifest = None
        elif isinstance(result, str):
            error = str(ManifestInvalid(source, result))
        else:
            error = f"{source}: the manifest is not in this clone (git fetch it first)"
        date = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(f.timestamp))
        entries.append(LogEntry(f.commit, date, f.name, tags_for(tags, f.commit, f.name),
                                manifest, error, (f.commit, f.name) in marks))
    return entries


def snapshots_of(root: Path, name: str, start: str) -> list[_Found]:
    """Snapshot commits of ``name`` reachable from ``start``, newest first (one ``git log``)."""
    return _walk(root, name, False, start=start)


# --------------------------------------------------------------------------- show


def manifests_at(root: Path, rev: str) -> dict[str, str]:
    """Snapshot name -> manifest blob id at ``rev`` (one ``git ls-tree``)."""
    raw = gitrepo.run(root, ["ls-tree", "-z", "--end-of-options", gitrepo.check_rev(rev),
                             f"{MANIFEST_DIR}/"]).stdout
    found = {}
    for entry in raw.split(b"\x00"):
        meta, _, path = entry.partition(b"\t")
        parts = meta.split()
        snap = _snapshot_name(path.decode(errors="replace"))
        if snap and len(parts) == 3 and parts[1] == b"blob":
            found[snap] = parts[2].decode()
    return found


def pick_name(names: list[str], name: str | None, where: str) -> str:
    if name is not None:
        workspace.check_name(name)
        if name not in names:
            raise NoSnapshot(f"named {name!r} at {where}")
        return name
    if not names:
        raise NoSnapshot(f"at {where}")
    if len(names) > 1:
        raise BadInput(where, f"holds several snapshots ({', '.join(names)}); choose one with --name")
    return names[0]


def name_from_tag(rev: str, name: str | None) -> str | None:
    """The snapshot name a ``name@vX.Y.Z`` revision implies (``name`` wins when given)."""
    match = TAG_RE.match(rev)
    return name if name is not None or match is None else match["name"]


@dataclass(frozen=True)
class Snapshot:
    """A manifest read from a commit."""

    commit: str
    name: str
    blob: str
    manifest: Manifest


def at(root: Path, rev: str, name: str | None = None) -> Snapshot:
    """The snapshot ``name`` at ``rev`` (commit, branch, tag or ``name@vX.Y.Z``), validated."""
    sha = gitrepo.resolve(root, rev)
    if sha is None:
        if gitrepo.is_shallow(root):
            raise BadInput(rev, "is not in this shallow clone (git clone --depth cut its "
                                "history); `git fetch --unshallow` brings the rest")
        raise BadInput(rev, "is not a commit, branch or tag in this repository "
                            "(see `mlsnap log --all` or `git tag`)")
    blobs = manifests_at(root, sha)
    chosen = pick_name(sorted(blobs), name_from_tag(rev, name), rev)
    source = f"{rev}:{manifest_path(chosen)}"
    content = read_blobs(root, [blobs[chosen]])[blobs[chosen]]
    manifest = parse(content, source)
    return Snapshot(sha, chosen, blobs[chosen], check_name(manifest, chosen, source))


def show(rev: str | None = None, name: str | None = None, cwd: Path | None = None) -> Manifest:
    """One manifest: the work tree's, or the one at ``rev`` (commit, branch, tag, name@vX.Y.Z)."""
    root = workspace.find_root(cwd)
    if rev is None:
        return workspace.load(root, pick_name(workspace.manifest_names(root), name, "the work tree"))
    return at(root, rev, name).manifest


# --------------------------------------------------------------------------- tag


@dataclass(frozen=True)
class TagResult:
    tag: str
    commit: str


def tag(name: str, version: str, rev: str = "HEAD", cwd: Path | None = None,
        sign: bool = False) -> TagResult:
    """Create the annotated tag ``name@vVERSION`` on ``rev``, which must hold a manifest of name."""
    root = workspace.find_root(cwd)
    workspace.check_name(name)
    gitrepo.require_identity(root)  # an annotated tag names its tagger
    if sign:
        from mlsnap import signing

        signing.require_signing(root)
    bare = check_version(version, f"VERSION {version!r}")
    ref = f"{name}@v{bare}"
    snap = at(root, rev, name)
    if gitrepo.tag_exists(root, ref):
        where = gitrepo.resolve(root, f"refs/tags/{ref}") or "?"
        raise BadInput(ref, f"already exists (on {where[:7]}); tags are never moved, "
                            "choose a new version")
    message = f"{name} {bare}: {snap.manifest.message}".strip().rstrip(":")
    gitrepo.create_tag(root, ref, snap.commit, message, sign=sign)
    return TagResult(ref, snap.commit)
