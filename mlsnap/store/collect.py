"""`mlsnap gc`'s access to storage (mlsnap/retention.py decides): sizes and listings of the cache and
the remote, deletion, and the notes that mark a gc in progress.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlsnap.errors import MlsnapError, RemoteError
from mlsnap.store.dvcrepo import cache_file, default_remote
from mlsnap.store.remote import probe_remote, remote_reason

if TYPE_CHECKING:
    from dvc.repo import Repo

# --------------------------------------------------------------------------- gc: objects
# `mlsnap gc` (mlsnap/retention.py) decides; these ask the cache and the remote and delete, through
# DVC's object databases (`repo.cache.local`, `repo.cloud.get_remote_odb`) and their fs.

_OID = re.compile(r"^[0-9a-f]{32}(\.dir)?$")
GC_NOTES = "mlsnap-gc"  # beside files/ on the remote: never an object path to DVC (not 2 chars)


@dataclass(frozen=True)
class RemoteObject:
    size: int
    mtime: float | None  # when the remote last wrote it, by the remote's clock


def gc_remote(repo: Repo, remote: str | None = None) -> Any | None:
    """The remote's object database, its root probed; None without a default remote."""
    name = remote or default_remote(repo)[0]
    if not name:
        return None
    try:
        probe_remote(repo, name)
        return repo.cloud.get_remote_odb(name, "gc")
    except MlsnapError:
        raise
    except Exception as exc:  # noqa: BLE001 - DVC's, OSError, the plugins' own
        raise RemoteError(name, remote_reason(repo, name, exc)) from None


def unit_objects(repo: Repo, odb: Any | None, md5: str) -> list[str] | None:
    """``md5`` and, for a folder, the md5 of every file its listing names: one unit. The
    listing is read from the cache, else the remote, and must hash to its name; None when it
    is on neither or is not a listing (a hostile one cannot name paths: only hex ids pass)."""
    import json

    if not md5.endswith(".dir"):
        return [md5]
    try:
        local = cache_file(repo, md5)
        if local.is_file():
            raw = local.read_bytes()
        elif odb is not None:
            raw = odb.fs.cat_file(odb.oid_to_path(md5))
        else:
            return None
        if hashlib.md5(raw).hexdigest() != md5.removesuffix(".dir"):
            return None
        members = [str(e["md5"]) for e in json.loads(raw)]
    except FileNotFoundError:
        return None
    except (ValueError, TypeError, KeyError, AttributeError, OSError):
        return None
    if not all(_OID.match(m) and not m.endswith(".dir") for m in members):
        return None
    return [md5, *dict.fromkeys(members)]


def remote_present(odb: Any, oids: Sequence[str], jobs: int | None = None) -> set[str]:
    """Which of ``oids`` the remote holds, asked object by object (DVC's ``oids_exist``)."""
    return set(odb.oids_exist(sorted(set(oids)), jobs=jobs)) if oids else set()


def cached_sizes(repo: Repo, oids: Sequence[str]) -> dict[str, int]:
    """Size of each of ``oids`` present in the local cache."""
    sizes: dict[str, int] = {}
    for oid in oids:
        with contextlib.suppress(OSError):
            sizes[oid] = cache_file(repo, oid).stat().st_size
    return sizes


def remote_objects(odb: Any, oids: Sequence[str],
                   jobs: int | None = None) -> dict[str, RemoteObject]:
    """Size and modification time of each of ``oids`` the remote holds (batched ``info``)."""
    oids = sorted(set(oids))
    if not oids:
        return {}
    infos = odb.fs.info([odb.oid_to_path(o) for o in oids], batch_size=jobs,
                        return_exceptions=True)
    found: dict[str, RemoteObject] = {}
    for oid, info in zip(oids, infos):
        if isinstance(info, dict) and info.get("type", "file") != "directory":
            found[oid] = RemoteObject(int(info.get("size") or 0), _mtime(info))
    return found


def _mtime(info: dict[str, Any]) -> float | None:
    """The last-write time an fs ``info`` gives: a float (folders, SFTP) or a datetime (S3)."""
    for key in ("mtime", "LastModified", "last_modified", "modified"):
        value = info.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        stamp = getattr(value, "timestamp", None)
        if callable(stamp):
            return float(stamp())
    return None


def _listings_last(oids: Sequence[str]) -> list[str]:
    """Files before listings: a kill in between leaves a listing, whose files a rerun can
    still name, never files nothing names any more."""
    return sorted(set(oids), key=lambda o: (o.endswith(".dir"), o))


def delete_cached(repo: Repo, oids: Sequence[str]) -> int:
    """Remove ``oids`` from the local cache; return how many were there."""
    odb = repo.cache.local
    removed = 0
    for oid in _listings_last(oids):
        try:
            odb.fs.remove(odb.oid_to_path(oid))
            removed += 1
        except FileNotFoundError:
            continue
    return removed


def delete_remote(odb: Any, oids: Sequence[str], *, older_than: float | None = None,
                  jobs: int | None = None) -> tuple[int, set[str]]:
    """Remove ``oids`` from the remote (files first, then listings; batched where the fs
    can); DVC's record of folders complete on the remote is cleared first. With
    ``older_than``, each batch is asked again just before it goes, and an object written
    since (a push racing this gc) stays. Return (deleted, kept because written since)."""
    from dvc_data.hashfile.db import get_index

    ordered = _listings_last(oids)
    if not ordered:
        return 0, set()
    with contextlib.closing(get_index(odb)) as index:
        index.clear()
    deleted, fresh = 0, set()
    for batch in ([o for o in ordered if not o.endswith(".dir")],
                  [o for o in ordered if o.endswith(".dir")]):
        for start in range(0, len(batch), 1000):
            chunk = batch[start:start + 1000]
            if older_than is not None:
                now = remote_objects(odb, chunk, jobs)
                fresh |= {o for o, r in now.items() if r.mtime is None or r.mtime >= older_than}
                chunk = [o for o in chunk if o in now and o not in fresh]
            paths = [odb.oid_to_path(o) for o in chunk]
            if not paths:
                continue
            try:
                odb.fs.remove(paths)
            except FileNotFoundError:  # one vanished meanwhile: the rest one by one
                for path in paths:
                    with contextlib.suppress(FileNotFoundError):
                        odb.fs.remove(path)
            deleted += len(paths)
    return deleted, fresh


def _notes_dir(repo: Repo, remote: str | None) -> tuple[Any, str]:
    store = repo.cloud.get_remote(remote)
    return store.fs, store.fs.join(store.path, GC_NOTES)


def put_gc_note(repo: Repo, remote: str | None, name: str, data: bytes) -> float | None:
    """Write one small gc record beside the remote's objects; return its modification time by
    the remote's clock (so "newer than this gc" needs no agreement between clocks)."""
    fs, folder = _notes_dir(repo, remote)
    path = fs.join(folder, name)
    with contextlib.suppress(Exception):  # object stores have no folders; pipe_file reports real failures
        fs.makedirs(folder, exist_ok=True)
    fs.pipe_file(path, data)
    info = fs.info(path)
    return _mtime(info) if isinstance(info, dict) else None


def drop_gc_note(repo: Repo, remote: str | None, name: str) -> None:
    fs, folder = _notes_dir(repo, remote)
    with contextlib.suppress(FileNotFoundError):
        fs.remove(fs.join(folder, name))


def gc_notes(repo: Repo, remote: str | None = None, limit: int = 1000) -> list[bytes]:
    """The gc records on the remote (newest ``limit``); none when it has none or cannot say."""
    try:
        fs, folder = _notes_dir(repo, remote)
        paths = sorted(p for p in fs.find(folder) if p.endswith(".json"))[-limit:]
        return [bytes(fs.cat_file(p)) for p in paths]
    except Exception:  # noqa: BLE001 - no records, or a remote that cannot list: nothing known
        return []
