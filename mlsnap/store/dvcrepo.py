"""Opening DVC in-process, its configuration, ``.dvc`` pointers, add/checkout and the local
cache's addresses.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlsnap.errors import BadInput, MlsnapError, NotInitialized
from mlsnap.manifest import Output

if TYPE_CHECKING:
    from dvc.repo import Repo

DEFAULT_REMOTE = "storage"
CHUNK = 1024 * 1024


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
    from mlsnap.store import trust

    trust.check_dvc_config(root)  # cloned settings: cache outside, link cache types
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    _repair_rwlock(root)
    try:
        repo = Repo(os.fspath(root))
    except DvcException as exc:
        raise MlsnapError(f"{root}: DVC cannot open the repository: {describe(exc)}") from None
    # DVC resolves relative targets against the working directory; every target mlsnap passes
    # is made absolute (``at_root``) instead, so the caller's working directory never moves
    # (a training script calling the API may have threads reading relative paths).
    try:
        yield repo
    finally:
        repo.close()


def at_root(repo: Repo, paths: Sequence[str]) -> list[str]:
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
    """Set ``key`` of the remote; a credential must go to the untracked local config."""
    from dvc.config import ConfigError

    from mlsnap.redaction import is_credential_value

    credential = is_credential_value(key, value)
    if credential and not local:
        raise BadInput(f"remote set {key}", f"{credential}; it must stay out of Git: add --local "
                       "(it goes to .dvc/config.local, which is never committed)")
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


def remote_label(repo: Repo, remote: str | None = None) -> str:
    """The name to report for ``remote``: itself, else the default remote's, else "default"."""
    return remote or default_remote(repo)[0] or "default"


def add(repo: Repo, paths: Sequence[str]) -> dict[str, Output]:
    """Track ``paths`` with DVC (one batched ``dvc add``); return DVC's own hashes by path."""
    from dvc.exceptions import DvcException

    if not paths:
        return {}
    try:
        # relink=False: DVC copies the files into the cache and leaves the workspace alone. Its
        # default deletes each file and copies it back from the cache, so a kill in between lost
        # the freshly trained model; with a copy cache the relink gains nothing anyway.
        stages = repo.add(at_root(repo, paths), relink=False)
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
    from mlsnap.safeyaml import YamlRefused, parse_yaml

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


def checkout(repo: Repo, targets: Sequence[str]) -> None:
    from dvc.exceptions import DvcException

    try:
        repo.checkout(targets=at_root(repo, targets), force=True)
    except DvcException as exc:
        raise MlsnapError(f"DVC could not restore {', '.join(targets)}: {describe(exc)}") from None


def cache_dir(repo: Repo) -> str:
    """The folder of the local cache's file objects."""
    return str(repo.cache.local.path)


def cache_file(repo: Repo, md5: str) -> Path:
    """Path of an object in the local cache (it may not exist)."""
    return Path(repo.cache.local.oid_to_path(md5))


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
