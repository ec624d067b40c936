"""The few DVC operations mlsnap needs, through DVC's in-process Python API.

DVC is imported only inside these functions: ``import dvc.repo`` costs ~0.3 s, and commands such
as ``log`` or ``--help`` never need it. One ``Repo`` is opened per command (``open_repo``).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlsnap.errors import BadInput, MlsnapError, NotInitialized, PushFailed, RemoteError
from mlsnap.fsutil import md5_file
from mlsnap.manifest import Output

if TYPE_CHECKING:
    from dvc.repo import Repo

DEFAULT_REMOTE = "storage"
_CHUNK = 1024 * 1024


def quiet_dvc() -> None:
    """Keep DVC from phoning home and from printing; keep its progress bars for terminals."""
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    os.environ.setdefault("DVC_NO_UPDATER", "1")
    import dvc.logger  # noqa: F401 - importing DVC installs stdout handlers; replace them after

    # dvc_data and dvc_objects get DVC's console handlers too: they print "ERROR: failed to
    # connect" and "WARNING: ... Missing cache files" during transfers. mlsnap reports those.
    for name in ("dvc", "dvc_data", "dvc_objects"):
        log = logging.getLogger(name)
        # INFO, not WARNING: DVC's progress bars switch off above INFO. The records go nowhere.
        log.setLevel(logging.DEBUG if os.environ.get("MLSNAP_DEBUG") else logging.INFO)
        log.propagate = bool(os.environ.get("MLSNAP_DEBUG"))
        log.handlers = [logging.NullHandler()]
    if sys.stderr.isatty():
        from dvc.ui import ui

        ui.enable()  # DVC draws its hashing/transfer progress bars only when its console is on


@contextlib.contextmanager
def open_repo(root: Path) -> Iterator[Repo]:
    quiet_dvc()
    if not (root / ".dvc").is_dir():
        raise NotInitialized(str(root))
    from mlsnap import trust

    trust.check_dvc_config(root)  # cloned settings: cache outside, link cache types
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    _repair_rwlock(root)
    try:
        repo = Repo(os.fspath(root))
    except DvcException as exc:
        raise MlsnapError(f"{root}: DVC cannot open the repository: {describe(exc)}") from None
    # DVC resolves relative targets against the working directory; every target mlsnap passes
    # is made absolute (``_at_root``) instead, so the caller's working directory never moves
    # (a training script calling the API may have threads reading relative paths).
    try:
        yield repo
    finally:
        repo.close()


def _at_root(repo: Repo, paths: Sequence[str]) -> list[str]:
    """Repo-relative ``paths`` as absolute paths, the form DVC resolves the same from anywhere."""
    return [os.path.join(repo.root_dir, p) for p in paths]


def _repair_rwlock(root: Path) -> None:
    """Remove DVC's reader/writer lock file when a killed DVC left it half-written.

    DVC rewrites ``.dvc/tmp/rwlock`` in place (truncate, then write): a kill in between leaves
    an empty or cut-off file that every later DVC call refuses ("JSON structure is corrupted").
    Its entries only name processes holding DVC locks; without the file DVC treats the repo as
    unlocked, which is the truth once its writer is dead. A file caught mid-write by a live DVC
    process parses again a moment later, so it is read twice before anything is removed.
    """
    import json
    import time

    path = root / ".dvc" / "tmp" / "rwlock"
    for attempt in range(2):
        try:
            json.loads(path.read_bytes() or b"!")
            return
        except FileNotFoundError:
            return
        except (OSError, ValueError):
            if attempt == 0:
                time.sleep(0.05)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def describe(exc: BaseException) -> str:
    """One line from a DVC exception and its causes (DVC often hides the reason in __cause__)."""
    parts: list[str] = []
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen and len(parts) < 4:
        seen.add(id(cur))
        text = " ".join(str(cur).split())
        if text and text not in parts:
            parts.append(text)
        cur = cur.__cause__ or cur.__context__
    return ": ".join(parts) or type(exc).__name__


def init(root: Path) -> bool:
    """``dvc init`` when needed (no auto-staging); return True if it created .dvc/."""
    quiet_dvc()
    if (root / ".dvc").is_dir():
        return False
    from dvc.repo import Repo

    Repo.init(os.fspath(root)).close()
    return True


def configure(root: Path, remote_url: str | None, remote_name: str = DEFAULT_REMOTE,
              local: dict[str, str] | None = None) -> None:
    """Set the default remote (tracked config) and keep copies, not links, for restored files.

    ``local`` settings of the remote (credentials, endpoints) go to DVC's untracked config.
    """
    with open_repo(root) as repo:
        with repo.config.edit() as conf:
            conf["core"]["autostage"] = False
            # Restored files must be independent copies: a hardlinked or symlinked model edited
            # in place would corrupt the cache (and every snapshot sharing those bytes).
            conf["cache"]["type"] = "reflink,copy"
            if remote_url is not None:
                conf["remote"].setdefault(remote_name, {})["url"] = remote_url
                conf["core"]["remote"] = remote_name
        if local:
            with repo.config.edit("local") as conf:
                section = conf["remote"].setdefault(remote_name, {})
                section.update(local)


def set_remote_option(root: Path, key: str, value: str, *, local: bool,
                      remote_name: str | None = None) -> str:
    from dvc.config import ConfigError

    with open_repo(root) as repo:
        name = remote_name or repo.config["core"].get("remote")
        if not name:
            raise NotInitialized(str(root))
        try:
            with repo.config.edit("local" if local else "repo") as conf:
                conf["remote"].setdefault(name, {})[key] = value
        except ConfigError as exc:
            raise BadInput(f"remote {name!r}", describe(exc)) from None
    return name


def default_remote(repo: Repo) -> tuple[str | None, str | None]:
    """Name and URL of the default remote (URL without credentials)."""
    name = repo.config["core"].get("remote")
    if not name:
        return None, None
    url = repo.config["remote"].get(name, {}).get("url")
    return name, url


_UNREACHABLE = re.compile(
    r"connection refused|connect call failed|could not connect|connecterror|timed out"
    r"|name or service not known|name resolution|no route to host|network is unreachable",
    re.IGNORECASE)
_NO_CREDENTIALS = re.compile(r"unable to locate credentials|nocredentials", re.IGNORECASE)
_AUTH_REFUSED = re.compile(
    r"\b40[13]\b|forbidden|unauthori[sz]ed|not authori[sz]ed|permission denied|access ?denied"
    r"|signaturedoesnotmatch|invalidaccesskeyid|invalidclienttokenid|authenticat",
    re.IGNORECASE)


def remote_label(repo: Repo, remote: str | None = None) -> str:
    """The name to report for ``remote``: itself, else the default remote's, else "default"."""
    return remote or default_remote(repo)[0] or "default"


def probe_remote(repo: Repo, remote: str | None = None, *, create: bool = False) -> None:
    """Ask the remote about its own root, so a refused login or a dead server raises here.

    DVC turns both into "missing files" warnings during a fetch. A root that does not exist
    yet is fine: the first push creates it. WebDAV servers refuse to create a collection whose
    parent is missing (409), and DVC does not make the parents, so ``create`` makes them.
    """
    store = repo.cloud.get_remote(remote)
    try:
        store.fs.info(store.path)
    except FileNotFoundError:
        if create and str(store.fs.protocol).startswith("webdav"):
            _make_collections(store.fs.fs.client)


def _make_collections(client: Any) -> None:
    """MKCOL every collection of a WebDAV remote's base URL, outermost first (405: exists)."""
    from urllib.parse import urlsplit

    base = urlsplit(str(client.base_url))
    segments = [s for s in base.path.split("/") if s]
    for depth in range(1, len(segments) + 1):
        url = base._replace(path="/" + "/".join(segments[:depth]) + "/").geturl()
        response = client.http.request("MKCOL", url)
        if response.status_code not in (201, 405):
            response.raise_for_status()


def remote_reason(repo: Repo, name: str, exc: BaseException) -> str:
    """A one-line reason for a failed transfer: what happened, what to do; no secrets in it."""
    # httpx appends a documentation link to every status error: noise on a one-line error.
    detail = re.sub(r"\s*For more information check: \S+", "", describe(exc))
    url = str(repo.config["remote"].get(name, {}).get("url", ""))
    if "://" in url:  # a server, not a folder: say whether it is down or refused the login
        if isinstance(exc, ConnectionError) or _UNREACHABLE.search(detail):
            detail = (f"cannot reach the server: {detail}; check that it is running and that "
                      "the remote's URL and endpointurl are right")
        elif _NO_CREDENTIALS.search(detail):
            detail = (f"no credentials are set for it ({detail}); add them with "
                      "`mlsnap remote set KEY VALUE --local`")
        elif isinstance(exc, PermissionError) or _AUTH_REFUSED.search(detail):
            detail = (f"the server refused the credentials: {detail}; set the right ones with "
                      "`mlsnap remote set KEY VALUE --local`")
    return _redact(repo, name, detail)


def _redact(repo: Repo, name: str, text: str) -> str:
    from mlsnap.redaction import env_secrets, redact_text, secret_values

    settings = repo.config["remote"].get(name, {})
    secrets = sorted(set(secret_values(settings)) | set(env_secrets()), key=len, reverse=True)
    return redact_text(text, secrets)


def add(repo: Repo, paths: Sequence[str]) -> dict[str, Output]:
    """Track ``paths`` with DVC (one batched ``dvc add``); return DVC's own hashes by path."""
    from dvc.exceptions import DvcException

    if not paths:
        return {}
    try:
        # relink=False: DVC copies the files into the cache and leaves the workspace alone. Its
        # default deletes each file and copies it back from the cache, so a kill in between lost
        # the freshly trained model; with a copy cache the relink gains nothing anyway.
        stages = repo.add(_at_root(repo, paths), relink=False)
    except DvcException as exc:
        raise MlsnapError(f"DVC could not track {', '.join(paths)}: {describe(exc)}") from None
    except OSError as exc:
        raise MlsnapError(f"{exc.filename or ', '.join(paths)}: {exc.strerror}; "
                          "nothing was committed and your files are untouched") from None
    result: dict[str, Output] = {}
    root = Path(repo.root_dir)
    for stage in stages:
        out = stage.outs[0]
        rel = Path(os.fspath(out.fs_path)).relative_to(root).as_posix()
        nfiles = out.meta.nfiles if out.meta.nfiles is not None else 1
        result[rel] = Output(rel, out.hash_info.value, int(out.meta.size or 0), int(nfiles))
    return result


def unchanged_files(repo: Repo, known: Sequence[Output],
                    paths: Sequence[str]) -> dict[str, Output]:
    """The files among ``paths`` that ``known`` (the previous snapshot) records and that are
    unchanged: same hash in the workspace, in the ``.dvc`` pointer and in the cache.

    The workspace hash comes from DVC's state DB (inode, mtime, size), exactly as ``dvc add``
    would get it: an unchanged file is not read; a changed one is hashed once, here, and the
    state DB spares ``dvc add`` a second pass. Directories are left to ``dvc add``.
    """
    root = Path(repo.root_dir)
    wanted = set(paths)
    same: dict[str, Output] = {}
    for out in known:
        if out.path not in wanted or out.is_dir or not in_cache(repo, out.md5):
            continue
        if not os.path.isfile(root / out.path) or os.path.islink(root / out.path):
            continue
        try:
            pointer = read_dvc_file(root, out.path)
        except BadInput:
            continue  # a broken pointer: let `dvc add` rewrite it
        if pointer is None or pointer[0] != out.md5:
            continue
        if workspace_hash(repo, out.path) == out.md5:
            same[out.path] = out
    return same


def dvc_file(path: str) -> str:
    return f"{path}.dvc"


def read_dvc_file(root: Path, path: str) -> tuple[str, int | None] | None:
    """(md5, size) recorded by the ``.dvc`` file of ``path``; None when there is none."""
    from mlsnap import pathsafety
    from mlsnap.manifest import YamlRefused, parse_yaml

    pointer = root / dvc_file(path)
    if pointer.is_symlink():
        raise pathsafety.UnsafePath(dvc_file(path), "is a symbolic link; DVC pointers are files "
                                    "(restore it with `git checkout`)")
    if not pointer.is_file():
        return None
    try:
        doc = parse_yaml(pointer.read_bytes(), dvc_file(path))
    except YamlRefused as exc:
        raise BadInput(dvc_file(path), exc.reason) from None
    return pathsafety.pointer(doc, path)  # DVC obeys outs[0].path, wdir, files: check first


def push(repo: Repo, tracked: Sequence[tuple[str, str]], *, jobs: int | None = None,
         remote: str | None = None, committed: str | None = None) -> int:
    """Upload the objects of ``tracked`` ((path, md5) pairs); return how many were sent.

    DVC skips a folder whose ``.dir`` listing is on the remote, taking its files as present (a
    push killed after the listing landed, or a remote that lost files, breaks that), and it
    skips in silence what is in neither this cache nor the remote. So every object is then
    checked on the remote, folders' files one by one: what is missing is sent, and what is
    nowhere is an error rather than "everything is already on the remote".
    """
    name = remote_label(repo, remote)
    try:
        probe_remote(repo, remote, create=True)
        sent = int(repo.push(targets=_at_root(repo, [dvc_file(p) for p, _ in tracked]), jobs=jobs,
                             remote=remote))
        return sent + _fill_gaps(repo, tracked, name, remote, jobs)
    except MlsnapError:
        raise
    except Exception as exc:  # noqa: BLE001 - DVC's, OSError, the plugins' own (httpx, botocore)
        raise PushFailed(name, remote_reason(repo, name, exc), committed) from None


def _fill_gaps(repo: Repo, tracked: Sequence[tuple[str, str]], name: str, remote: str | None,
               jobs: int | None) -> int:
    """Send the objects of ``tracked`` the remote still lacks after DVC's push."""
    result = send_missing(repo, [md5 for _, md5 in tracked], remote=remote, jobs=jobs)
    if result.failed:
        raise PushFailed(name, f"{len(result.failed)} object(s) could not be uploaded")
    if result.lost:
        by_md5 = {md5: p for p, md5 in tracked}
        path = min(by_md5[m] for m in result.lost)
        raise MlsnapError(
            f"{path}: {sum(map(len, result.lost.values()))} object(s) are neither in this cache "
            f"nor on remote {name!r}; push from a clone that still has the bytes "
            f"(`mlsnap push` there), or commit the files again")
    return result.sent


@dataclass(frozen=True)
class Sent:
    sent: int  # objects uploaded
    lost: dict[str, list[str]]  # md5 -> its objects in neither this cache nor the remote
    failed: list[str]  # md5s with an object that could not be uploaded


def send_missing(repo: Repo, md5s: Sequence[str], *, remote: str | None = None,
                 jobs: int | None = None) -> Sent:
    """Upload what the remote lacks of ``md5s`` (files, or folders' listings and files),
    asked object by object; a folder's listing goes only once every file it names is there.

    DVC's own status takes a folder's listing on the remote as proof of its files, which a
    push killed after the listing landed (or a remote that lost files) makes false; its record
    of such "complete" folders on the remote is then cleared.
    """
    from dvc_data.hashfile.db import get_index
    from dvc_data.hashfile.hash_info import HashInfo
    from dvc_data.hashfile.transfer import transfer

    odb = repo.cloud.get_remote_odb(remote, "push")
    gaps = _remote_gaps(repo, odb, [(m, m) for m in dict.fromkeys(md5s)], jobs)
    gaps = {m: oids for m, oids in gaps.items() if oids}
    if not gaps:
        return Sent(0, {}, [])
    with contextlib.closing(get_index(odb)) as index:
        index.clear()
    lost = {m: [o for o in oids if not in_cache(repo, o)] for m, oids in gaps.items()}
    lost = {m: oids for m, oids in lost.items() if oids}
    files = sorted({o for oids in gaps.values() for o in oids
                    if not o.endswith(".dir") and in_cache(repo, o)})
    failed_ids: set[str] = set()
    sent = 0
    if files:
        result = transfer(repo.cache.local, odb, [HashInfo("md5", o) for o in files], jobs=jobs)
        failed_ids = {str(h.value) for h in result.failed}
        sent += len(result.transferred)
    listings = [m for m, oids in gaps.items() if m.endswith(".dir") and m in oids
                and m not in lost and not failed_ids.intersection(oids)]
    if listings:
        result = transfer(repo.cache.local, odb, [HashInfo("md5", m) for m in listings],
                          jobs=jobs)
        failed_ids |= {str(h.value) for h in result.failed}
        sent += len(result.transferred)
    failed = [m for m, oids in gaps.items() if failed_ids.intersection(oids)]
    return Sent(sent, lost, failed)


def _object_ids(repo: Repo, odb: Any, md5: str) -> list[str] | None:
    """``md5`` and, for a folder, the md5 of each file in it (listing from the cache, else read
    from the remote); None when the listing's bytes do not hash to its name. Every entry passes
    the path-safety gate first: a hostile listing could name any local file as an "object"."""
    from mlsnap import pathsafety

    if not md5.endswith(".dir"):
        return [md5]
    try:
        local = cache_file(repo, md5)
        raw = local.read_bytes() if local.is_file() else odb.fs.cat_file(odb.oid_to_path(md5))
    except FileNotFoundError:
        return [md5]
    if hashlib.md5(raw).hexdigest() != md5.removesuffix(".dir"):
        return None
    return [md5, *(oid for _, oid in pathsafety.parse_listing(raw, md5, md5))]


def _remote_gaps(repo: Repo, odb: Any, tracked: Sequence[tuple[str, str]],
                 jobs: int | None) -> dict[str, list[str]]:
    """For each path, the objects the remote ``odb`` does not hold, asked object by object."""
    ids = [(path, md5, _object_ids(repo, odb, md5)) for path, md5 in tracked]
    wanted = {oid for _, _, oids in ids if oids for oid in oids}
    present = set(odb.oids_exist(sorted(wanted), jobs=jobs)) if wanted else set()
    return {path: ([md5] if oids is None else [o for o in oids if o not in present])
            for path, md5, oids in ids}


def checkout(repo: Repo, targets: Sequence[str]) -> None:
    from dvc.exceptions import DvcException

    try:
        repo.checkout(targets=_at_root(repo, targets), force=True)
    except DvcException as exc:
        raise MlsnapError(f"DVC could not restore {', '.join(targets)}: {describe(exc)}") from None


def cache_dir(repo: Repo) -> str:
    """The folder of the local cache's file objects."""
    return str(repo.cache.local.path)


def folder_remote_dir(repo: Repo, remote: str | None = None) -> str | None:
    """The objects folder of the default (or named) remote when it is a local folder."""
    name = remote or default_remote(repo)[0]
    if not name:
        return None
    try:
        odb = repo.cloud.get_remote_odb(name, "push")
    except Exception:  # noqa: BLE001 - a broken remote is reported by the transfer itself
        return None
    return str(odb.path) if getattr(odb.fs, "protocol", None) == "local" else None


def cache_file(repo: Repo, md5: str) -> Path:
    """Path of an object in the local cache (it may not exist)."""
    return Path(repo.cache.local.oid_to_path(md5))


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
            while chunk := fin.read(8 * _CHUNK):
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
                while chunk := src.read(8 * _CHUNK):
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


def quarantine(repo: Repo, md5: str) -> None:
    """Move a corrupt cache object aside so the next fetch downloads it again."""
    path = cache_file(repo, md5)
    with contextlib.suppress(OSError):
        os.chmod(path, 0o644)
        os.replace(path, path.with_name(path.name + ".corrupt"))


def workspace_hash(repo: Repo, path: str) -> str | None:
    """DVC's hash of the workspace copy of ``path`` (state DB reused: unchanged files are free)."""
    from dvc_data.hashfile.hash import hash_file

    full = os.path.join(repo.root_dir, path)
    if not os.path.lexists(full):
        return None
    if os.path.isdir(full):
        from dvc_data.hashfile.build import build

        _, _, obj = build(repo.cache.local, full, repo.fs, "md5", ignore=repo.dvcignore)
        return str(obj.hash_info.value)
    _, info = hash_file(full, repo.fs, "md5", repo.state)
    return str(info.value)


def workspace_file_hashes(repo: Repo, path: str) -> list[str]:
    """DVC's hash of every file in the workspace folder ``path`` (state DB reused)."""
    from dvc_data.hashfile.build import build

    full = os.path.join(repo.root_dir, path)
    _, _, obj = build(repo.cache.local, full, repo.fs, "md5", ignore=repo.dvcignore)
    entries: Any = obj  # a Tree for a folder
    return [str(info.value) for _, _, info in entries if info is not None]


def in_cache(repo: Repo, md5: str) -> bool:
    return cache_file(repo, md5).is_file()


def remote_missing(repo: Repo, tracked: Sequence[tuple[str, str]],
                   remote: str | None = None) -> list[str]:
    """Paths of ``tracked`` ((path, md5) pairs) whose bytes the remote does not hold in full.

    Asked object by object, a folder's files included: DVC's own cloud status reports what is
    on the remote but not in this cache ("deleted") like what is missing, and trusts a folder's
    listing for its files.
    """
    name = remote_label(repo, remote)
    try:
        probe_remote(repo, remote)
        odb = repo.cloud.get_remote_odb(remote, "push")
        gaps = _remote_gaps(repo, odb, tracked, None)
    except MlsnapError:
        raise
    except Exception as exc:  # noqa: BLE001 - as in push
        raise RemoteError(name, remote_reason(repo, name, exc)) from None
    return sorted(p for p, oids in gaps.items() if oids)


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
            while chunk := source.read(_CHUNK):
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


# --------------------------------------------------------------------------- gc: objects
# `mlsnap gc` (mlsnap/gc.py) decides; these ask the cache and the remote and delete, through
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
