"""The record of snapshots ``mlsnap gc --remote`` collected: which, when, by whom.

``log`` marks them and ``pull``/``get`` name the collection instead of blaming a missing push.
The record lives in ``<git common dir>/mlsnap-collected.json`` (beside, not inside, the
journal's folder, which every writing command removes when it finishes) and, for other clones,
as one small JSON file per gc run beside the remote's objects (``store.put_gc_note``). Records
read from a remote come from whoever can write there: every field is checked, and a record
that does not check is ignored.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mlsnap import gitrepo
from mlsnap.errors import Collected, MissingObjects, MlsnapError
from mlsnap.fsutil import atomic_write

FILE = "mlsnap-collected.json"
_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_WHEN = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
_MAX_TEXT = 200


@dataclass(frozen=True)
class Record:
    commit: str  # the snapshot commit
    name: str
    blob: str  # the manifest's blob id: what `pull` at any commit holding it can look up
    when: str  # UTC, ISO 8601
    by: str  # Git identity of whoever ran the gc
    remote: str  # the DVC remote it was collected from

    @property
    def says(self) -> str:
        when = self.when[:16].replace("T", " ")
        return f"collected by `mlsnap gc` on {when} UTC ({self.by}) from remote {self.remote!r}"


def _path(root: Path) -> Path:
    return gitrepo.common_dir(root) / FILE


def parse(data: bytes) -> list[Record]:
    """The records in one JSON document (``{"snapshots": [...]}``); bad entries are dropped."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return []
    items = doc.get("snapshots") if isinstance(doc, dict) else None
    found = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        fields = {k: v for k in ("commit", "name", "blob", "when", "by", "remote")
                  if isinstance(v := item.get(k), str)}
        if len(fields) != 6:
            continue
        if not (_SHA.match(fields["commit"]) and _SHA.match(fields["blob"])
                and _NAME.match(fields["name"]) and _WHEN.match(fields["when"])):
            continue
        if any(len(v) > _MAX_TEXT or not v.isprintable() for v in fields.values()):
            continue
        found.append(Record(**fields))
    return found


def dump(records: Sequence[Record]) -> bytes:
    return json.dumps({"format": 1, "snapshots": [asdict(r) for r in records]},
                      indent=1).encode()


def load(root: Path) -> list[Record]:
    try:
        return parse(_path(root).read_bytes())
    except OSError:
        return []


def add(root: Path, records: Iterable[Record]) -> None:
    """Merge ``records`` into this clone's record (atomically; the first record of a snapshot
    wins: it says when its bytes went)."""
    known = load(root)
    seen = {(r.commit, r.name) for r in known}
    new = []
    for r in records:
        if (r.commit, r.name) not in seen:
            seen.add((r.commit, r.name))
            new.append(r)
    if new:
        atomic_write(_path(root), dump([*known, *new]))


def by_commit(root: Path) -> dict[tuple[str, str], Record]:
    """(commit, name) -> its record, for ``log``: one file read, no process."""
    return {(r.commit, r.name): r for r in load(root)}


def find(records: Iterable[Record], blob: str, name: str) -> Record | None:
    """The record of the snapshot ``name`` whose manifest is ``blob``."""
    return next((r for r in records if r.blob == blob and r.name == name), None)


def blob_id(data: bytes) -> str:
    """The blob id Git gives ``data`` (no process)."""
    import hashlib

    return hashlib.sha1(b"blob %d\x00" % len(data) + data).hexdigest()


def explain_missing(root: Path, repo: Any, wanted: Sequence[tuple[str, str, str]],
                    paths: Sequence[str], remote: str) -> MlsnapError:
    """The error for bytes found in neither the cache nor the remote: ``Collected`` when a gc
    collected the snapshot (this clone's record, else the remote's, then kept here), else
    ``MissingObjects`` (someone did not push). ``wanted``: (name, manifest blob, commit)."""
    from mlsnap import store

    for attempt in range(2):
        records = load(root)
        for snap_name, blob, commit in wanted:
            record = find(records, blob, snap_name) or next(
                (r for r in records if r.commit == commit and r.name == snap_name), None)
            if record is not None:
                return Collected(paths, f"{record.commit[:7]} ({snap_name})", record.says)
        if attempt == 0:
            add(root, [r for note in store.gc_notes(repo) for r in parse(note)])
    return MissingObjects(paths, remote)


def at_work_tree(root: Path, names: Iterable[str]) -> list[tuple[str, str, str]]:
    """(name, blob id, "") of the manifests of ``names`` in the work tree, for ``pull``."""
    from mlsnap.manifest import manifest_path

    found = []
    for snap_name in names:
        try:
            found.append((snap_name, blob_id((root / manifest_path(snap_name)).read_bytes()), ""))
        except OSError:
            continue
    return found
