"""The pull flow (manifest -> DVC fetch -> verify -> checkout -> drift report) and ``status``.

Bytes are verified against the manifest *before* DVC writes them to the workspace: a corrupt
cache or remote object is moved aside and reported, never restored.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlsnap import collected, environment, journal, pathsafety, pickles, store, workspace
from mlsnap.environment import Drift, Environment
from mlsnap.errors import (
    HashMismatch,
    InterruptedCommit,
    MissingObjects,
    RemoteError,
    RestoreFailed,
    WouldOverwrite,
)
from mlsnap.fsutil import fault_point
from mlsnap.manifest import Manifest
from mlsnap.pickles import FileVerdict

if TYPE_CHECKING:
    from dvc.repo import Repo


@dataclass(frozen=True)
class PullResult:
    manifests: list[Manifest]
    restored: list[str]
    unchanged: list[str]
    fetched: int
    drift: dict[str, Drift]
    pickles: list[str] = field(default_factory=list)  # pickle-based files restored, scanned
    # restored although the scan flags them (--allow-unsafe-pickle): path and imports
    unsafe: list[FileVerdict] = field(default_factory=list)

    @property
    def drifted(self) -> bool:
        return any(self.drift.values())


@dataclass(frozen=True)
class StatusReport:
    manifests: list[Manifest]
    modified: list[str]
    missing: list[str]
    not_on_remote: list[str]
    remote_error: str | None
    drift: dict[str, Drift]
    # Not on the remote and not (in full) in this cache: neither pull nor push here can help.
    nowhere: list[str] = field(default_factory=list)
    # Files of other snapshots in the workspace that no snapshot at HEAD names (history.Leftover)
    leftover: list[Any] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        # A remote that could not be asked is not known to hold the bytes: not clean.
        return not (self.modified or self.missing or self.not_on_remote or self.remote_error
                    or self.leftover)

    @property
    def drifted(self) -> bool:
        return any(self.drift.values())

    def problems(self, strict_env: bool = False) -> list[str]:
        """Why the workspace is not clean, counted ("2 modified", "1 lost here", ...); empty
        when it is. ``strict_env`` counts environment drift too."""
        lost = set(self.nowhere)
        why = [f"{len(items)} {label}" for items, label in (
            (self.modified, "modified"),
            ([p for p in self.missing if p not in lost], "missing"),
            ([p for p in self.not_on_remote if p not in lost], "not on remote"),
            (sorted(lost), "lost here"), (self.leftover, "leftover")) if items]
        if self.remote_error:
            why.append("the remote could not be checked")
        if strict_env and self.drifted:
            why.append("the environment differs (--strict-env)")
        return why


def _objects(repo: Repo, md5: str, path: str = "") -> list[tuple[str, str]]:
    """(relpath, md5) of every object behind ``md5`` (a file, or a .dir and its entries)."""
    if not md5.endswith(".dir") or not store.in_cache(repo, md5):
        return [("", md5)]
    return [("", md5)] + [(e["relpath"], e["md5"]) for e in store.dir_entries(repo, md5, path)]


def _verify(repo: Repo, path: str, md5: str, verified: Collection[str] = ()) -> list[str]:
    """Check every object of ``path`` in the cache by content (those in ``verified`` were
    hashed as they were downloaded); return what is missing.

    A corrupt object raises ``HashMismatch`` after being moved aside.
    """
    missing = []
    for rel, oid in _objects(repo, md5, path):
        label = f"{path}/{rel}" if rel else path
        if oid in verified:
            continue
        state, actual = store.object_state(repo, oid)
        if state == "missing":
            missing.append(label)
            if not rel:
                return missing  # no listing: its files are unknown
        elif state == "corrupt":
            store.quarantine(repo, oid)
            raise HashMismatch(label, oid, f"{actual}" + (".dir" if oid.endswith(".dir") else ""),
                               "the cached")
    return missing


def _stage(repo: Repo, root: Path, path: str, md5: str,
           staged: dict[str, tuple[Path, str]]) -> list[str]:
    """Verify a file object while copying it beside ``path`` (``store.verified_copy``);
    return it when missing. A corrupt object raises ``HashMismatch`` after being moved aside."""
    state, actual, tmp = store.verified_copy(repo, md5, root / path)
    if state == "missing":
        return [path]
    if state == "corrupt":
        store.quarantine(repo, md5)
        raise HashMismatch(path, md5, str(actual), "the cached")
    assert tmp is not None
    staged[path] = (tmp, md5)
    return []


def _move_in(repo: Repo, root: Path, path: str, tmp: Path, md5: str) -> None:
    """Put a verified copy in place (atomic rename) and record its hash in DVC's state DB."""
    if "isexec: true" in (root / store.dvc_file(path)).read_text(errors="replace"):
        mode = tmp.stat().st_mode
        os.chmod(tmp, mode | (mode & 0o444) >> 2)
    os.replace(tmp, root / path)
    store.record_hash(repo, root / path, md5)


def _recoverable(repo: Repo, root: Path, path: str, current: str) -> bool:
    """Whether overwriting ``path`` (now hashing to ``current``) loses nothing: its bytes are
    in the cache. A folder counts file by file, so one a killed pull left half-restored (every
    file it holds came from the cache) is finished without ``--force``."""
    if store.cached_fully(repo, current):
        return True
    if not (root / path).is_dir():
        return False
    return all(store.in_cache(repo, md5) for md5 in store.workspace_file_hashes(repo, path))


def _no_links(root: Path, folders: list[str], force: bool) -> None:
    """Before a tracked folder is hashed or restored: no symbolic link inside it. A committed
    link (``data/sub -> /elsewhere``) would make DVC read and write through it; ``--force``
    removes such links (never what they point to), without it the pull is refused."""
    for folder in folders:
        links = pathsafety.links_below(root / folder)
        if links and force:
            pathsafety.remove_links(root / folder, links)
        elif links:
            raise pathsafety.UnsafePath(
                f"{folder}/{links[0]}", f"a symbolic link inside the DVC-tracked folder "
                f"{folder}; pull never writes through links: remove it, or run "
                "`mlsnap pull --force` to replace it with the snapshot's files")


def pull(name: str | None = None, *, force: bool = False, python: str | None = None,
         jobs: int | None = None, remote: str | None = None, cwd: Path | None = None,
         env: Environment | None = None, allow_unsafe_pickle: bool = False,
         require_signed: bool = False) -> PullResult:
    """Make the workspace match the manifests at HEAD exactly; see ``mlsnap pull --help``."""
    root = workspace.find_root(cwd)
    workspace.require_ready(root)
    manifests = workspace.load_all(root, name)
    workspace.check_pointers(root, manifests)
    if require_signed:  # before anything is fetched or written
        from mlsnap import signing

        problems = signing.work_tree_problems(root, manifests)
        if problems:
            raise signing.NotSigned(problems)
    tracked = list(dict.fromkeys(pair for m in manifests for pair in m.tracked))
    paths = [p for p, _ in tracked]
    intent = journal.Intent("pull", argv=journal.command_line("pull"))
    with journal.operation(root, intent) as op, store.open_repo(root) as repo:
        # Where partial copies may appear (renamed into place only once verified): beside each
        # file, anywhere inside each folder, and in the cache during the fetch.
        intent.clean = sorted({str((root / p).parent) for p in paths})
        intent.clean_deep = [str(root / p) for p in paths]
        intent.names = sorted({Path(p).name for p in paths})
        intent.cache = store.cache_dir(repo)
        op.save()
        journal.remove_partials(intent)
        _no_links(root, [p for p in paths if (root / p).is_dir()], force)
        todo, unchanged, would_lose = [], [], []
        for path, md5 in tracked:
            current = store.workspace_hash(repo, path)
            if current == md5:
                unchanged.append(path)
                continue
            if current is not None and not force and not _recoverable(repo, root, path, current):
                would_lose.append(path)
            todo.append((path, md5))
        if would_lose:
            raise WouldOverwrite(would_lose)

        fetched = 0
        remote_name = store.remote_label(repo, remote)
        # Objects by hash, each hashed as it arrives (a damaged one is named, never kept);
        # folders' listings first, every entry checked before anything reads it.
        try:
            verified = store.fetch_folders(
                repo, [(p, md5) for p, md5 in todo if md5.endswith(".dir")], jobs=jobs,
                remote=remote)
        except MissingObjects as exc:  # collected by a gc, or never pushed: say which
            raise collected.explain_missing(
                root, repo, collected.at_work_tree(root, [m.name for m in manifests]),
                exc.paths, exc.remote) from None
        verified |= store.download(repo, [(p, md5) for p, md5 in todo if not md5.endswith(".dir")],
                                   jobs=jobs, remote=remote)
        fetched = len(verified)
        missing: list[str] = []
        staged: dict[str, tuple[Path, str]] = {}  # files: verified copies, moved in once all pass
        try:
            for path, md5 in todo:
                if md5.endswith(".dir") or (root / path).is_dir():
                    missing += _verify(repo, path, md5, verified)
                else:
                    missing += _stage(repo, root, path, md5, staged)
            if missing:
                raise collected.explain_missing(
                    root, repo, collected.at_work_tree(root, [m.name for m in manifests]),
                    missing, remote_name)
            # Every pickle-based file about to be placed, scanned as verified (never loaded).
            found = pickles.scan_files(
                [(tmp, path) for path, (tmp, _) in staged.items()]
                + pickles.files_of(repo, root, [(p, md5) for p, md5 in todo if p not in staged],
                                   cached=True))
            unsafe = pickles.refused(found, pickles.recorded_dangerous(
                m.pickles for m in manifests))
            if unsafe and not allow_unsafe_pickle:
                raise pickles.UnsafePickle(unsafe, "restore")
            fault_point("pull-before-checkout")
            for path, (tmp, md5) in staged.items():
                _move_in(repo, root, path, tmp, md5)
            rest = [store.dvc_file(p) for p, _ in todo if p not in staged]
            if rest:
                store.checkout(repo, rest)
            fault_point("pull-after-checkout")
        except OSError as exc:  # a full disk, a read-only folder: the copy failed midway
            journal.remove_partials(intent)
            raise RestoreFailed(exc.filename or todo[0][0], exc.strerror or str(exc)) from None
        finally:
            for tmp, _ in staged.values():
                tmp.unlink(missing_ok=True)
    current_env = env if env is not None else environment.capture(python)
    drift = {m.name: environment.drift(m.environment, current_env) for m in manifests}
    restored = [p for p, _ in todo]
    return PullResult(manifests, restored, unchanged, fetched, drift,
                      [f.path for f in found], unsafe)


def status(name: str | None = None, *, python: str | None = None, remote: str | None = None,
           check_remote: bool = True, cwd: Path | None = None) -> StatusReport:
    """Compare the workspace with the manifests at HEAD; see ``mlsnap status --help``."""
    root = workspace.find_root(cwd)
    workspace.require_ready(root)
    manifests = workspace.load_all(root, name)
    workspace.check_pointers(root, manifests)
    pending = workspace.unfinished(root, manifests)
    if pending:  # the workspace may match them, but no commit records them yet
        raise InterruptedCommit(pending)
    tracked = list(dict.fromkeys(pair for m in manifests for pair in m.tracked))
    workspace.no_escaping_links(root, [p for p, _ in tracked if (root / p).is_dir()])
    modified, missing = [], []
    not_on_remote: list[str] = []
    remote_error = None
    with store.open_repo(root) as repo:
        for path, md5 in tracked:
            current = store.workspace_hash(repo, path)
            if current is None:
                missing.append(path)
            elif current != md5:
                modified.append(path)
        if check_remote:
            try:
                not_on_remote = store.remote_missing(repo, tracked, remote=remote)
            except RemoteError as exc:
                remote_error = str(exc)
        md5s = dict(tracked)
        nowhere = [p for p in not_on_remote if not store.cached_fully(repo, md5s[p])]
    current_env = environment.capture(python)
    drift = {m.name: environment.drift(m.environment, current_env) for m in manifests}
    from mlsnap.history import leftovers  # the whole workspace: only without --name

    left = leftovers(root, manifests) if name is None else []
    return StatusReport(manifests, modified, missing, not_on_remote, remote_error, drift,
                        nowhere, left)
