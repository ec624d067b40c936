"""Reading cache and remote objects with verification: every byte placed or exported is hashed
as it is copied, and a damaged object is quarantined instead of used.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlsnap.errors import MlsnapError, RemoteError
from mlsnap.fsutil import md5_file
from mlsnap.store.dvcrepo import CHUNK, cache_file, in_cache, remote_label
from mlsnap.store.remote import remote_reason

if TYPE_CHECKING:
    from dvc.repo import Repo

def object_state(repo: Repo, md5: str) -> tuple[str, str | None]:
    """Verify one cache object by content: ("ok"|"missing"|"corrupt", actual hash)."""
    path = cache_file(repo, md5)
    if not path.is_file():
        return "missing", None
    actual = md5_file(path)
    expected = md5.removesuffix(".dir")
    return ("ok" if actual == expected else "corrupt"), actual


def verified_copy(repo: Repo, md5: str, dest: Path) -> tuple[str, str | None, Path | None]:
    """Copy a file object from the cache to a hidden temporary file beside ``dest``, hashing
    the very bytes it writes: ("ok", md5, temp) | ("missing", None, None) | ("corrupt", actual,
    None). The caller moves the temporary file into place.

    One read of the cache instead of two (verify, then DVC's copy), and the hash runs while the
    write does (both release the GIL): pull costs about max(hash, copy), not their sum. Only
    hashing the bytes themselves is proof; DVC's state DB would not do, since ``fetch`` records
    the expected hash of a downloaded object without reading it. The name matches DVC's own
    partial copies, which ``pull`` removes after a crash.
    """
    import secrets
    from concurrent.futures import ThreadPoolExecutor

    src = cache_file(repo, md5)
    if not src.is_file():
        return "missing", None, None
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{secrets.token_urlsafe(16)}.tmp"
    h = hashlib.md5()
    try:
        with open(src, "rb") as fin, open(tmp, "xb") as fout, ThreadPoolExecutor(1) as pool:
            while chunk := fin.read(8 * CHUNK):
                written = pool.submit(fout.write, chunk)
                h.update(chunk)
                written.result()
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if h.hexdigest() != md5:
        tmp.unlink()
        return "corrupt", h.hexdigest(), None
    return "ok", md5, tmp


def record_hash(repo: Repo, path: Path, md5: str) -> None:
    """Tell DVC's state DB the hash of a file mlsnap just wrote and verified (no re-hash later)."""
    from dvc_data.hashfile.hash_info import HashInfo

    repo.state.save(os.fspath(path), repo.fs, HashInfo("md5", md5))


def dir_entries(repo: Repo, md5: str, path: str = "") -> list[dict[str, Any]]:
    """Entries (relpath, md5) of a ``.dir`` object in the cache, hashed against its name and
    every entry checked (``pathsafety.parse_listing``); a corrupt one is moved aside."""
    from mlsnap import pathsafety

    raw = cache_file(repo, md5).read_bytes()
    actual = hashlib.md5(raw).hexdigest()
    if actual != md5.removesuffix(".dir"):
        quarantine(repo, md5)
        raise pathsafety.CorruptListing(path or md5, md5, actual, "the cached")
    return [{"relpath": rel, "md5": oid}
            for rel, oid in pathsafety.parse_listing(raw, path or md5, md5)]


def download(repo: Repo, wanted: Sequence[tuple[str, str]], *, jobs: int | None = None,
             remote: str | None = None, check: Any = None) -> set[str]:
    """Copy the objects ``wanted`` (label, md5) that the cache lacks from the remote into the
    cache, hashing the bytes as they arrive; return the ids downloaded (their bytes verified).

    A damaged object (truncated, a byte flipped) raises ``HashMismatch`` naming the remote and
    is not kept; one the remote lacks is left for the caller's verification to name. DVC's own
    fetch is not used: it takes a cached listing for proof of a folder's files, obeys a
    listing's entries as cache paths, and deletes a damaged object from a folder remote,
    reporting it "missing". ``check(label, md5, bytes)`` vets a listing before it is kept.
    """
    import secrets
    from concurrent.futures import ThreadPoolExecutor

    from dvc_data.callbacks import Tqdm, TqdmCallback

    from mlsnap.errors import HashMismatch

    todo = {md5: label for label, md5 in wanted if not in_cache(repo, md5)}
    if not todo:
        return set()
    name = remote_label(repo, remote)

    def one(md5: str, label: str, odb: Any) -> bool:
        dest = cache_file(repo, md5)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.parent / f".{secrets.token_urlsafe(16)}.tmp"  # DVC's partial-copy form
        digest = hashlib.md5()
        try:
            with odb.fs.open(odb.oid_to_path(md5), "rb") as src, open(tmp, "xb") as out:
                while chunk := src.read(8 * CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
            actual = digest.hexdigest()
            if actual != md5.removesuffix(".dir"):
                raise HashMismatch(label, md5, actual + (".dir" if md5.endswith(".dir") else ""),
                                   "the remote's")
            if check is not None:
                check(label, md5, tmp.read_bytes())
            os.chmod(tmp, 0o444)
            os.replace(tmp, dest)
            return True
        except FileNotFoundError:
            return False
        finally:
            tmp.unlink(missing_ok=True)

    try:
        odb = repo.cloud.get_remote_odb(remote, "fetch")
        done = []
        # DVC's own progress bar (drawn on a terminal only), as its fetch showed it.
        with ThreadPoolExecutor(max(1, jobs or 8)) as pool, TqdmCallback(
                size=len(todo), unit="file", desc=f"Fetching from {odb.fs.protocol}",
                bar_format=Tqdm.BAR_FMT_DEFAULT_NESTED) as bar:
            for result in pool.map(lambda item: (item[0], one(item[0], item[1], odb)),
                                   todo.items()):
                done.append(result)
                bar.relative_update()
    except MlsnapError:
        raise
    except Exception as exc:  # noqa: BLE001 - DVC's, OSError, the plugins' own (httpx, botocore)
        raise RemoteError(name, remote_reason(repo, name, exc)) from None
    return {md5 for md5, ok in done if ok}


def fetch_folders(repo: Repo, dirs: Sequence[tuple[str, str]], *, jobs: int | None = None,
                  remote: str | None = None) -> set[str]:
    """Bring the folders ``dirs`` (path, md5) into the cache: each listing the cache lacks is
    downloaded, hashed and every entry checked (``pathsafety.parse_listing``) *before* it is
    kept or anything reads it; then the files it names, by hash. Return the ids downloaded."""
    from mlsnap import pathsafety
    from mlsnap.errors import MissingObjects

    def vet(label: str, md5: str, raw: bytes) -> None:
        pathsafety.parse_listing(raw, label, md5)

    got = download(repo, dirs, jobs=jobs, remote=remote, check=vet)
    lacking = [path for path, md5 in dirs if not in_cache(repo, md5)]
    if lacking:
        raise MissingObjects(lacking, remote_label(repo, remote))
    files = [(f"{path}/{e['relpath']}", e["md5"])
             for path, md5 in dirs for e in dir_entries(repo, md5, path)]
    return got | download(repo, files, jobs=jobs, remote=remote)


def folder_listing(repo: Repo, path: str, md5: str, *,
                   remote: str | None = None) -> list[dict[str, Any]]:
    """The entries (relpath, md5) of the folder object ``md5``, its listing downloaded (and
    checked, as in ``fetch_folders``) when the cache lacks it; the files are not fetched."""
    from mlsnap import pathsafety
    from mlsnap.errors import MissingObjects

    def vet(label: str, oid: str, raw: bytes) -> None:
        pathsafety.parse_listing(raw, label, oid)

    download(repo, [(path, md5)], remote=remote, check=vet)
    if not in_cache(repo, md5):
        raise MissingObjects([path], remote_label(repo, remote))
    return dir_entries(repo, md5, path)


def quarantine(repo: Repo, md5: str) -> None:
    """Move a corrupt cache object aside so the next fetch downloads it again."""
    path = cache_file(repo, md5)
    with contextlib.suppress(OSError):
        os.chmod(path, 0o644)
        os.replace(path, path.with_name(path.name + ".corrupt"))


def cached_fully(repo: Repo, md5: str) -> bool:
    """Whether every object of ``md5`` (a file, or a folder's listing and files) is cached."""
    if not in_cache(repo, md5):
        return False
    if not md5.endswith(".dir"):
        return True
    try:
        return all(in_cache(repo, str(e["md5"])) for e in dir_entries(repo, md5))
    except (ValueError, TypeError, KeyError):
        return False  # an unreadable listing


def export(repo: Repo, path: str, md5: str, dest: Path) -> list[Path]:
    """Copy the cached bytes of ``path`` (a file or a ``.dir``) to ``dest``, verified by md5.

    Every file is written to a temporary name beside its destination, checked against its
    hash while it is copied, and renamed into place only when it matches.
    """
    from mlsnap import pathsafety
    from mlsnap.errors import MissingObjects

    state, actual = object_state(repo, md5)
    if state == "missing":
        raise MissingObjects([path], remote_label(repo))
    if state == "corrupt":
        quarantine(repo, md5)  # the next fetch downloads it again
        raise _mismatch(path, md5, str(actual))
    if not md5.endswith(".dir"):
        _copy_verified(cache_file(repo, md5), dest, md5, path)
        return [dest]
    entries = dir_entries(repo, md5, path)  # every name checked (pathsafety)
    missing = [f"{path}/{e['relpath']}" for e in entries if not in_cache(repo, e["md5"])]
    if missing:
        raise MissingObjects(missing, remote_label(repo))
    targets = [pathsafety.target(dest, e["relpath"], f"{path}/{e['relpath']}") for e in entries]
    for entry, target in zip(entries, targets):
        _copy_verified(cache_file(repo, entry["md5"]), target, entry["md5"],
                       f"{path}/{entry['relpath']}")
    return targets


def _mismatch(path: str, expected: str, actual: str) -> MlsnapError:
    from mlsnap.errors import HashMismatch

    return HashMismatch(path, expected, actual, "the cached")


def _copy_verified(src: Path, dest: Path, md5: str, label: str) -> None:
    import tempfile

    from mlsnap.fsutil import TMP_PREFIX

    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=dest.parent)
    digest = hashlib.md5()
    try:
        with open(src, "rb") as source, os.fdopen(fd, "wb") as out:
            while chunk := source.read(CHUNK):
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != md5:
            raise _mismatch(label, md5, digest.hexdigest())
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# --------------------------------------------------------------------------- verify: objects
# `mlsnap verify` (mlsnap/verify.py, mlsnap/storecheck.py) decides; these read what DVC knows.


def state_proves(repo: Repo, md5: str) -> bool:
    """Whether DVC's state DB proves the cache object ``md5`` unchanged since it was hashed to
    ``md5`` (its inode, mtime and size as recorded then): nothing is read."""
    try:
        found = repo.state.get(os.fspath(cache_file(repo, md5)), repo.fs)
    except Exception:  # noqa: BLE001 - no state DB, or an unreadable one: not proven
        return False
    return found is not None and found[1] is not None and found[1].value == md5


def remote_read(odb: Any, oid: str, hashers: dict[str, Any],
                keep: bool = False) -> tuple[dict[str, str] | None, bytes | None]:
    """Each of ``hashers`` (name -> hashlib-style factory) over the remote's copy of ``oid``,
    streamed, never kept in the cache; None when the remote lacks it. ``keep``: its bytes too
    (a folder's listing)."""
    digests = {name: make() for name, make in hashers.items()}
    kept: list[bytes] = []
    try:
        with odb.fs.open(odb.oid_to_path(oid), "rb") as src:
            while chunk := src.read(8 * CHUNK):
                for digest in digests.values():
                    digest.update(chunk)
                if keep:
                    kept.append(chunk)
    except FileNotFoundError:
        return None, None
    return {n: d.hexdigest() for n, d in digests.items()}, b"".join(kept) if keep else None
