"""The default remote: reachability, why it failed (credentials redacted), and pushing object by
object so a push never claims bytes are there that are not.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlsnap.errors import MlsnapError, PushFailed, RemoteError
from mlsnap.store.dvcrepo import (
    at_root,
    cache_file,
    default_remote,
    describe,
    dvc_file,
    in_cache,
    remote_label,
)

if TYPE_CHECKING:
    from dvc.repo import Repo

_UNREACHABLE = re.compile(
    r"connection refused|connect call failed|could not connect|connecterror|timed out"
    r"|name or service not known|name resolution|no route to host|network is unreachable",
    re.IGNORECASE)
_NO_CREDENTIALS = re.compile(r"unable to locate credentials|nocredentials", re.IGNORECASE)
_AUTH_REFUSED = re.compile(
    r"\b40[13]\b|forbidden|unauthori[sz]ed|not authori[sz]ed|permission denied|access ?denied"
    r"|signaturedoesnotmatch|invalidaccesskeyid|invalidclienttokenid|authenticat",
    re.IGNORECASE)


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
        sent = int(repo.push(targets=at_root(repo, [dvc_file(p) for p, _ in tracked]), jobs=jobs,
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
