"""What changed between two snapshots: params, metrics, bytes, environment and code.

Both manifests are read from Git objects (``history.at``); the code section asks Git for the
commits between the two recorded code SHAs. Nothing here imports DVC.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlsnap import blobs, gitrepo, history, workspace
from mlsnap.errors import BadInput, NoSnapshot
from mlsnap.jsonout import jsonable
from mlsnap.manifest import Manifest, Output, manifest_path
from mlsnap.params import as_float

MAX_CODE_LINES = 10
MAX_FILE_LINES = 10  # files listed per directory in the text diff
MAX_FILE_ENTRIES = 100  # ... and in the JSON diff


@dataclass(frozen=True)
class Change:
    key: str
    old: Any
    new: Any


@dataclass(frozen=True)
class MetricDelta:
    key: str
    old: Any
    new: Any
    delta: float | None  # new - old, when both are numbers
    relative: float | None  # delta / |old|, when old is a non-zero number

    @property
    def changed(self) -> bool:
        return not _equal(self.old, self.new)


@dataclass(frozen=True)
class FileChanges:
    """What changed inside a directory artifact or input, file by file (relative paths)."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    error: str | None = None  # why the file lists could not be compared

    @property
    def count(self) -> int:
        return len(self.added) + len(self.removed) + len(self.changed)

    def marked(self) -> list[tuple[str, str]]:
        """(mark, path) of every change, in path order."""
        return sorted([("+", p) for p in self.added] + [("-", p) for p in self.removed]
                      + [("~", p) for p in self.changed], key=lambda item: item[1])

    def to_dict(self, limit: int = MAX_FILE_ENTRIES) -> dict[str, Any]:
        shown = self.marked()[:limit]
        return {"added": [p for m, p in shown if m == "+"],
                "removed": [p for m, p in shown if m == "-"],
                "changed": [p for m, p in shown if m == "~"],
                "count": self.count, "shown": len(shown), "error": self.error}


@dataclass(frozen=True)
class OutputChange:
    path: str
    kind: str  # "artifact" or "data"
    status: str  # "added", "removed" or "changed"
    old: Output | None
    new: Output | None
    files: FileChanges | None = None  # for directories: the files inside that changed


@dataclass(frozen=True)
class CodeRange:
    old: str
    new: str
    count: int | None  # commits in old..new; None when Git cannot tell (shallow clone)
    lines: tuple[str, ...] = ()  # the first "short subject" lines, newest first
    error: str | None = None


@dataclass(frozen=True)
class Side:
    rev: str
    commit: str
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class SnapshotDiff:
    name: str
    a: Side
    b: Side
    params: list[Change] = field(default_factory=list)  # old None: added; new None: removed
    metrics: list[MetricDelta] = field(default_factory=list)
    outputs: list[OutputChange] = field(default_factory=list)
    data_hash: Change | None = None
    packages: list[Change] = field(default_factory=list)
    platform: list[Change] = field(default_factory=list)
    code: CodeRange | None = None

    @property
    def same(self) -> bool:
        return not (self.params or any(m.changed for m in self.metrics) or self.outputs
                    or self.data_hash or self.packages or self.platform or self.code)

    def to_dict(self) -> dict[str, Any]:
        def change(c: Change) -> dict[str, Any]:
            return {"key": c.key, "old": c.old, "new": c.new}

        def out(o: Output | None) -> dict[str, Any] | None:
            return o.to_dict() if o else None

        code = self.code
        result: dict[str, Any] = jsonable({
            "name": self.name,
            "a": {"rev": self.a.rev, "commit": self.a.commit, "tags": list(self.a.tags)},
            "b": {"rev": self.b.rev, "commit": self.b.commit, "tags": list(self.b.tags)},
            "same": self.same,
            "params": {
                "added": {c.key: c.new for c in self.params if c.old is None},
                "removed": {c.key: c.old for c in self.params if c.new is None},
                "changed": [change(c) for c in self.params
                            if c.old is not None and c.new is not None],
            },
            "metrics": [{"key": m.key, "old": m.old, "new": m.new, "delta": m.delta,
                         "relative": m.relative} for m in self.metrics],
            "outputs": [{"path": o.path, "kind": o.kind, "status": o.status,
                         "old": out(o.old), "new": out(o.new),
                         "files": o.files.to_dict() if o.files else None}
                        for o in self.outputs],
            "data_hash": change(self.data_hash) if self.data_hash else None,
            "packages": [change(c) for c in self.packages],
            "platform": [change(c) for c in self.platform],
            "code": None if code is None else {
                "old": code.old, "new": code.new, "count": code.count,
                "commits": list(code.lines), "error": code.error},
        })
        return result


# --------------------------------------------------------------------------- computing


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested params as dotted keys: ``{"optimizer": {"lr": 1}}`` -> ``{"optimizer.lr": 1}``."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{dotted}."))
        else:
            flat[dotted] = value
    return flat


def _changes(old: dict[str, Any], new: dict[str, Any]) -> list[Change]:
    keys = sorted(set(old) | set(new))
    return [Change(k, old.get(k), new.get(k)) for k in keys
            if k not in old or k not in new or not _equal(old[k], new[k])]


def _equal(a: Any, b: Any) -> bool:
    # NaN metrics and params are equal to themselves here: "unchanged", not "changed".
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b  # True is not the number 1 here
    return bool(a == b)


def metric_deltas(old: dict[str, Any], new: dict[str, Any]) -> list[MetricDelta]:
    a, b = flatten(old), flatten(new)
    deltas = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        delta: float | None = None
        relative: float | None = None
        fa, fb = as_float(va), as_float(vb)  # None too for an integer no float holds
        if isinstance(va, (int, float)) and isinstance(vb, (int, float)) \
                and fa is not None and fb is not None:
            delta = vb - va
            if va != 0 and math.isfinite(fa):
                relative = delta / abs(va)
        deltas.append(MetricDelta(key, va, vb, delta, relative))
    return deltas


def dir_listing(root: Path, md5: str) -> dict[str, str] | None:
    """relpath -> md5 of a ``.dir`` object in the repository's own DVC cache, checked against
    its hash; None when it is not there (a fresh clone before ``pull``) or does not match."""
    import hashlib
    import json

    oid = md5.removesuffix(".dir")
    cache = root / ".dvc" / "cache"
    for path in (cache / "files" / "md5" / oid[:2] / f"{oid[2:]}.dir",  # DVC 3
                 cache / oid[:2] / f"{oid[2:]}.dir"):  # DVC 2
        try:
            raw = path.read_bytes()
        except OSError:
            continue
        if hashlib.md5(raw).hexdigest() != oid:
            return None
        try:
            entries = json.loads(raw)
            return {str(e["relpath"]): str(e["md5"]) for e in entries}
        except (ValueError, TypeError, KeyError):
            return None
    return None


def file_changes(root: Path, old: Output | None, new: Output | None) -> FileChanges | None:
    """The files inside a directory that were added, removed or changed (None: not a folder)."""
    if not ((old and old.is_dir) or (new and new.is_dir)):
        return None
    sides: list[dict[str, str]] = []
    for side in (old, new):
        if side is None or not side.is_dir:
            sides.append({})
            continue
        listing = dir_listing(root, side.md5)
        if listing is None:
            return FileChanges(error=f"the file list of {side.md5[:8]} is not in the local "
                                     "cache; `mlsnap pull` (or `dvc fetch`) brings it")
        sides.append(listing)
    was, now = sides
    return FileChanges(
        added=tuple(sorted(p for p in now if p not in was)),
        removed=tuple(sorted(p for p in was if p not in now)),
        changed=tuple(sorted(p for p in now if p in was and was[p] != now[p])))


def output_changes(a: Manifest, b: Manifest, root: Path | None = None) -> list[OutputChange]:
    def index(m: Manifest) -> dict[str, tuple[str, Output]]:
        return {**{o.path: ("data", o) for o in m.inputs},
                **{o.path: ("artifact", o) for o in m.artifacts}}

    old, new = index(a), index(b)
    changes = []
    for path in sorted(set(old) | set(new)):
        kind = (new.get(path) or old[path])[0]
        was, now = (old[path][1] if path in old else None), (new[path][1] if path in new else None)
        files = file_changes(root, was, now) if root is not None else None
        if was is None:
            changes.append(OutputChange(path, kind, "added", None, now, files))
        elif now is None:
            changes.append(OutputChange(path, kind, "removed", was, None, files))
        elif was.md5 != now.md5:
            changes.append(OutputChange(path, kind, "changed", was, now, files))
    return changes


def code_range(root: Path, old: str, new: str) -> CodeRange | None:
    """Commits in ``old..new`` (both full SHAs from validated manifests); None when equal."""
    if old == new:
        return None
    proc = gitrepo.run(root, ["log", "--format=%h %s", "--end-of-options",
                              f"{gitrepo.check_rev(old)}..{gitrepo.check_rev(new)}", "--"],
                       check=False)
    if proc.returncode != 0:
        return CodeRange(old, new, None, error="a code commit is not in this clone "
                                               "(shallow or not fetched)")
    lines = proc.stdout.decode(errors="replace").splitlines()
    return CodeRange(old, new, len(lines), tuple(lines[:MAX_CODE_LINES]))


def compare(a: Manifest, b: Manifest, side_a: Side, side_b: Side,
            root: Path | None = None) -> SnapshotDiff:
    """Every section of the difference between manifest ``a`` and manifest ``b``."""
    ea, eb = a.environment, b.environment
    platform = _changes({"python": ea.python, "implementation": ea.implementation, "os": ea.os,
                         "machine": ea.machine},
                        {"python": eb.python, "implementation": eb.implementation, "os": eb.os,
                         "machine": eb.machine})
    data_hash = Change("data.hash", a.data_hash, b.data_hash) if a.data_hash != b.data_hash else None
    code = code_range(root, a.code.commit, b.code.commit) if root is not None else None
    return SnapshotDiff(
        name=b.name, a=side_a, b=side_b,
        params=_changes(flatten(a.params), flatten(b.params)),
        metrics=metric_deltas(a.metrics, b.metrics),
        outputs=output_changes(a, b, root), data_hash=data_hash,
        packages=_changes(ea.packages, eb.packages), platform=platform, code=code,
    )


def diff(rev_a: str | None = None, rev_b: str | None = None, name: str | None = None,
         cwd: Path | None = None) -> SnapshotDiff:
    """Snapshot at ``rev_a`` vs at ``rev_b``.

    No revision: HEAD's snapshot vs the previous snapshot of that name. One revision:
    that one vs HEAD's. ``name@vX.Y.Z`` tags select the name when ``name`` is not given.
    """
    root = workspace.find_root(cwd)
    b_rev = rev_b or "HEAD"
    name = history.name_from_tag(b_rev, name) or (history.name_from_tag(rev_a, name)
                                                  if rev_a else None)
    b = history.at(root, b_rev, name)
    a = history.at(root, rev_a, b.name) if rev_a else _previous(root, b)
    tags = history.tags_by_commit(root)
    side_a = Side(rev_a or a.commit[:7], a.commit, history.tags_for(tags, a.commit, b.name))
    side_b = Side(b_rev, b.commit, history.tags_for(tags, b.commit, b.name))
    return compare(a.manifest, b.manifest, side_a, side_b, root)


def _previous(root: Path, b: history.Snapshot) -> history.Snapshot:
    """The snapshot of ``b.name`` before the one at ``b.commit``: the next different blob."""
    seen_b = False
    cut = history.shallow_commits(root)
    for found in history.snapshots_of(root, b.name, b.commit):
        seen_b = seen_b or found.blob == b.blob
        if seen_b and found.blob != b.blob:
            source = f"{found.commit[:7]}:{manifest_path(b.name)}"
            content = history.read_blobs(root, [found.blob]).get(found.blob)
            if content is None:
                break
            manifest = blobs.parse(content, source)
            if found.commit in cut and history.commit_parents(root, [found.commit]).get(
                    found.commit) != [manifest.code.commit]:
                break  # taken before the clone's oldest commit, at a commit it lacks
            return history.Snapshot(found.commit, b.name, found.blob,
                                    history.check_name(manifest, b.name, source))
    if cut:
        raise BadInput(f"{manifest_path(b.name)} at {b.commit[:7]}",
                       f"the snapshot of {b.name!r} before it is not in this shallow clone "
                       f"(git clone --depth cut the history at "
                       f"{', '.join(sorted(c[:7] for c in cut))}); `git fetch --unshallow` "
                       "brings it, or give two revisions (`mlsnap diff REV_A REV_B`)")
    raise NoSnapshot(f"named {b.name!r} before {b.commit[:7]} to compare with; "
                     "give two revisions (`mlsnap diff REV_A REV_B`)")
