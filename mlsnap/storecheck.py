"""Objects of a snapshot checked against their recorded hashes: the local cache, the remote.

Through ``mlsnap.store``'s public functions only (store never imports this module). A file is
read when nothing proves it unchanged: DVC's state DB records the inode, mtime and size a cache
object had when it was hashed, and an object that still has them is not read again (``deep``
reads everything). The remote's copies are always read, streamed and hashed, never kept.

Digests: every object is named by its MD5 (DVC's address); ``HASHERS`` names the hashes this
module can compute, and ``Expected.digests`` what a manifest records for a file (``md5`` now;
another entry, such as ``blake3``, is checked the same way once the manifest records it).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlsnap import pathsafety, store

HASHERS: dict[str, Callable[[], Any]] = {"md5": hashlib.md5}
_CHUNK = 8 * 1024 * 1024


@dataclass(frozen=True)
class Expected:
    """One object to check: its label (``data/imgs/3.png``), its DVC id, and the digests
    recorded for its bytes (the id's MD5 at least)."""

    label: str
    oid: str
    digests: dict[str, str] = field(default_factory=dict)

    def wanted(self) -> dict[str, str]:
        return {"md5": self.oid.removesuffix(".dir"), **self.digests}


@dataclass(frozen=True)
class Failure:
    where: str  # "cache" | "remote"
    label: str
    reason: str


@dataclass
class Tally:
    objects: int = 0  # objects checked in the cache
    hashed: int = 0  # of them read and hashed (the rest: proven unchanged by DVC's state)
    remote_only: int = 0  # not in this cache, checked on the remote only
    remote: int = 0  # objects read from the remote
    failures: list[Failure] = field(default_factory=list)


def _digest_file(path: Path, names: Sequence[str]) -> dict[str, str]:
    digests = {n: HASHERS[n]() for n in names}
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            for d in digests.values():
                d.update(chunk)
    return {n: d.hexdigest() for n, d in digests.items()}


def _differs(got: dict[str, str], want: dict[str, str]) -> str | None:
    for name, value in want.items():
        if got.get(name) != value:
            return f"{name} is {got.get(name)}, the manifest records {value}"
    return None


def check_cache(repo: Any, objects: Sequence[Expected], deep: bool, tally: Tally,
                missing: list[Expected]) -> None:
    """Check each object in the local cache; ``missing`` gets those it does not hold."""
    for obj in objects:
        path = store.cache_file(repo, obj.oid)
        if not path.is_file():
            missing.append(obj)
            continue
        tally.objects += 1
        want = obj.wanted()
        if not deep and set(want) == {"md5"} and not obj.oid.endswith(".dir") \
                and store.state_proves(repo, obj.oid):
            continue
        tally.hashed += 1
        problem = _differs(_digest_file(path, list(want)), want)
        if problem:
            tally.failures.append(Failure("cache", obj.label, f"the cached copy's {problem}"))
        elif not obj.oid.endswith(".dir"):
            store.record_hash(repo, path, obj.oid)  # proven now: the next run need not read it


def check_remote(odb: Any, objects: Sequence[Expected], tally: Tally, remote: str,
                 jobs: int | None) -> None:
    """Read every object from the remote and hash it (in parallel, bounded)."""
    def one(obj: Expected) -> Failure | None:
        want = obj.wanted()
        got, _ = store.remote_read(odb, obj.oid, {n: HASHERS[n] for n in want})
        if got is None:
            return Failure("remote", obj.label, f"missing on remote {remote!r} ({obj.oid})")
        problem = _differs(got, want)
        return Failure("remote", obj.label, f"remote {remote!r}'s copy's {problem}") \
            if problem else None

    with ThreadPoolExecutor(max(1, min(jobs or 8, 32))) as pool:
        for failure in pool.map(one, objects):
            tally.remote += 1
            if failure is not None:
                tally.failures.append(failure)


def objects_of(repo: Any, odb: Any | None, path: str, md5: str, remote: str,
               tally: Tally) -> list[Expected]:
    """The objects behind one recorded path: the file, or a folder's listing and its files.

    The listing is read from the cache, else from the remote (when one is checked), and must
    hash to its name before any entry is believed (``pathsafety.parse_listing``)."""
    if not md5.endswith(".dir"):
        return [Expected(path, md5)]
    listing = Expected(path, md5)
    raw: bytes | None = None
    cached = store.cache_file(repo, md5)
    if cached.is_file():
        raw = cached.read_bytes()
        where = "the cached"
    elif odb is not None:
        _, raw = store.remote_read(odb, md5, {}, keep=True)
        where = f"remote {remote!r}'s"
    if raw is None:
        return [listing]  # its files are unknown: the listing's own check names it
    actual = hashlib.md5(raw).hexdigest()
    if actual != md5.removesuffix(".dir"):
        tally.failures.append(Failure("cache" if where == "the cached" else "remote", path,
                                      f"{where} folder listing's md5 is {actual}, the manifest "
                                      f"records {md5}"))
        return []
    entries = pathsafety.parse_listing(raw, path, md5)
    return [listing, *(Expected(f"{path}/{rel}", oid) for rel, oid in entries)]
