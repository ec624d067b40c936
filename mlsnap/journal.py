"""The intent journal: what a writing command is about to do, written before it does it.

Every command that writes (``commit``, ``init``, ``pull``, ``push``, ``get``) runs inside
``operation()``. It takes the repository lock, finishes what an earlier, killed command left (see
``recover``), then writes ``.git/mlsnap/journal/journal.json`` *before the first change*: the files the
command may rewrite (their old bytes are saved beside the journal), the folders where it or DVC
may leave partial copies, and the Git state it started from. The journal is removed only once
the command has finished; a command that raises (Ctrl-C, SIGTERM, any error) rolls back at
once, and a command that is killed is rolled back or forward by the next mlsnap command — any
of them, ``status`` included, since ``workspace.find_root`` calls ``recover`` first.

The rule for a commit: if its Git commit exists (HEAD moved from the journal's start to a child
commit holding the new manifest), the snapshot stands and is finished (index, tag); otherwise
every file it touched gets its old bytes back. Either way the partial files DVC or mlsnap left
are removed. The user's own files are never in flight: DVC adds them without relinking
(``store.add``), so it only ever reads them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mlsnap import gitrepo, writers
from mlsnap.errors import GitFailed, JournalFailed, MlsnapError
from mlsnap.fsutil import atomic_write, fsync_dir, repo_lock, try_repo_lock
from mlsnap.partials import remove_store_temps, remove_temps

JOURNAL_DIR = "mlsnap/journal"  # its own folder: .git/mlsnap also holds caches (history.json)
JOURNAL = "journal.json"


@dataclass
class Intent:
    """What one command may change; saved as JSON before it changes anything."""

    op: str
    argv: str = ""
    head: str | None = None
    name: str | None = None
    tag: tuple[str, str] | None = None  # (ref, message) to create once the commit exists
    sign: bool = False  # the commit and its tag are signed (``commit --sign``)
    files: dict[str, str | None] = field(default_factory=dict)  # rel path -> saved copy or None
    index: str | None = None  # saved copy of .git/index, None when there was none
    staged: list[str] = field(default_factory=list)  # paths the commit stages (roll forward)
    clean: list[str] = field(default_factory=list)  # folders holding partial copies (not deep)
    clean_deep: list[str] = field(default_factory=list)  # folders cleaned recursively
    names: list[str] = field(default_factory=list)  # file names whose "<name>.<id>.tmp" go
    cache: str | None = None  # the DVC cache's files folder
    remote: str | None = None  # a folder remote's files folder
    created: list[str] = field(default_factory=list)  # folders this op created (init: .dvc)
    pid: int = field(default_factory=os.getpid)
    started: float = field(default_factory=time.time)

    def to_json(self) -> bytes:
        return json.dumps(self.__dict__, indent=1).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Intent:
        raw = json.loads(data)
        if not isinstance(raw, dict) or not isinstance(raw.get("op"), str):
            raise TypeError("not a journal")
        known = {k: v for k, v in raw.items() if k in cls.__dataclass_fields__}
        if known.get("tag") is not None:
            known["tag"] = tuple(known["tag"])
        return cls(**known)


def command_line(op: str) -> str:
    """The command to suggest for finishing ``op``: the user's own when run from the CLI."""
    import shlex
    import sys

    if os.path.basename(sys.argv[0]) in ("mlsnap", "__main__.py") and len(sys.argv) > 1:
        return shlex.join(["mlsnap", *sys.argv[1:]])
    return f"mlsnap {op}"


def folder(root: Path) -> Path:
    return gitrepo.git_dir(root) / JOURNAL_DIR


def lock_path(root: Path) -> Path:
    return gitrepo.git_dir(root) / "mlsnap.lock"


def pending(root: Path) -> bool:
    """Whether a journal, a writer's mark or a repro's worktree mark is there (stats, no
    process: ``log`` stays fast)."""
    dot_git = root / ".git"
    if dot_git.is_dir():
        return ((dot_git / JOURNAL_DIR / JOURNAL).is_file()
                or (dot_git / writers.WRITERS_DIR).is_dir()
                or (dot_git / gitrepo.worktree.MARKS_DIR).is_dir())
    return ((folder(root) / JOURNAL).is_file() or writers.writers_dir(root).is_dir()
            or gitrepo.worktree.marks_dir(root).is_dir())


def recover(root: Path) -> str | None:
    """Finish what a killed command left, if anything; return what was done (or None).

    Runs only when no live mlsnap command holds the lock: a journal of a running command is
    that command's business.
    """
    if not pending(root):
        return None
    with try_repo_lock(lock_path(root)) as locked:
        if not locked:
            return None
        writers.clear_dead_writers(root)
        gitrepo.remove_stale_worktrees(root)  # of a killed `mlsnap repro`
        return _recover_locked(root)


def _recover_locked(root: Path) -> str | None:
    where = folder(root)
    path = where / JOURNAL
    try:
        intent = Intent.from_json(path.read_bytes())
    except FileNotFoundError:
        return None
    except (ValueError, TypeError, UnicodeDecodeError):
        # The journal is written atomically, so this is not ours half-written: someone edited
        # it. Nothing can be rolled back from it; drop it rather than block every command.
        _drop(where)
        return "dropped an unreadable journal"
    _remove_stale_git_locks(root, intent)
    done = _undo(root, intent, where)
    _drop(where)
    return done


def _remove_stale_git_locks(root: Path, intent: Intent) -> None:
    """Remove the lock files of Git processes the killed command ran (a kill of its whole
    process group takes them along before Git can clean up); every later Git call would fail.

    Only locks made after the command started count. A Git child that outlived its parent
    finishes within moments, so a lock gets a second to go away on its own first.
    """
    git_dir = gitrepo.git_dir(root)
    names = ["index.lock", "HEAD.lock", "packed-refs.lock", "mlsnap-index.lock"]
    candidates = [git_dir / n for n in names]
    refs = git_dir / "refs"
    if refs.is_dir():
        candidates += [p for p in refs.rglob("*.lock") if not p.is_symlink()]

    def stale() -> list[Path]:
        found = []
        for lock in candidates:
            try:
                if lock.stat().st_mtime >= intent.started - 1:
                    found.append(lock)
            except OSError:
                continue
        return found

    for _ in range(20):
        if not stale():
            return
        time.sleep(0.05)
    for lock in stale():
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()


def _drop(where: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        (where / JOURNAL).unlink()
    shutil.rmtree(where, ignore_errors=True)


def _committed(root: Path, intent: Intent) -> bool:
    """Whether the commit of ``intent`` exists: HEAD is a child of its start holding the new
    manifest (Git's own commit is atomic: the ref moves or it does not)."""
    if intent.op not in ("commit", "init") or not intent.staged:
        return False
    now = gitrepo.head_or_none(root)
    if now is None or now == intent.head:
        return False
    if gitrepo.resolve(root, "HEAD^1") != intent.head:
        return False
    return gitrepo.subject(root, "HEAD").startswith("mlsnap: ")


def _undo(root: Path, intent: Intent, where: Path) -> str:
    if _committed(root, intent):
        # The snapshot exists: finish it. The real index follows the commit; the tag is made.
        gitrepo.sync_index(root, intent.staged)
        if intent.tag and not gitrepo.tag_exists(root, intent.tag[0]):
            try:
                gitrepo.create_tag(root, intent.tag[0], "HEAD", intent.tag[1], sign=intent.sign)
            except GitFailed:
                if not intent.sign:
                    raise
                # Git could not sign here (no agent, a passphrase): no unsigned tag in its
                # place; the rerun of the command makes it, signed.
        outcome = f"finished the interrupted `{intent.argv or intent.op}`"
    else:
        for rel, saved in intent.files.items():
            _put_back(root / rel, None if saved is None else where / saved)
        if intent.index is not None or intent.files:
            index = gitrepo.git_dir(root) / "index"
            if intent.index is not None and (where / intent.index).is_file():
                _put_back(index, where / intent.index)
        for created in intent.created:
            shutil.rmtree(root / created, ignore_errors=True)
        outcome = f"rolled back the interrupted `{intent.argv or intent.op}`"
    (gitrepo.git_dir(root) / "mlsnap-index").unlink(missing_ok=True)
    (gitrepo.git_dir(root) / "mlsnap-index.lock").unlink(missing_ok=True)
    remove_partials(intent)
    return outcome


def _put_back(path: Path, saved: Path | None) -> None:
    """Give ``path`` its old bytes (``saved``), or remove it when it did not exist."""
    if saved is None:
        if path.is_file() or path.is_symlink():
            path.unlink()
        return
    if not saved.is_file():
        return
    data = saved.read_bytes()
    try:
        if path.is_file() and path.read_bytes() == data:
            return
    except OSError:
        pass
    mode = saved.stat().st_mode & 0o777
    atomic_write(path, data, mode=mode)


def remove_partials(intent: Intent) -> int:
    """Remove the partial copies DVC and mlsnap may have left where ``intent`` wrote."""
    names = set(intent.names)
    removed = 0
    for directory in intent.clean:
        removed += remove_temps(Path(directory), names=names, deep=False)
    for directory in intent.clean_deep:
        removed += remove_temps(Path(directory), names=None, deep=True)
    for store_dir in (intent.cache, intent.remote):
        if store_dir:
            removed += remove_store_temps(Path(store_dir))
    return removed


class Operation:
    """A running command's handle on its journal."""

    def __init__(self, root: Path, intent: Intent) -> None:
        self.root = root
        self.intent = intent
        self.where = folder(root)

    def protect(self, files: Sequence[str] = (), *, index: bool = False) -> None:
        """Keep the current bytes of ``files`` (repo-relative) and, with ``index``, Git's
        index, for a roll-back; call before changing them."""
        try:
            self._protect(files, index)
        except OSError as exc:
            raise JournalFailed(self.where, self.intent.argv or self.intent.op,
                                exc.strerror or str(exc)) from None
        self.save()

    def _protect(self, files: Sequence[str], index: bool) -> None:
        for rel in dict.fromkeys(files):
            if rel in self.intent.files:
                continue
            src = self.root / rel
            if src.is_file() and not src.is_symlink():
                saved = f"pre-{len(self.intent.files)}"
                shutil.copy2(src, self.where / saved)
                self.intent.files[rel] = saved
            else:
                self.intent.files[rel] = None
        if index and self.intent.index is None:
            git_index = gitrepo.git_dir(self.root) / "index"
            if git_index.is_file():
                shutil.copy2(git_index, self.where / "pre-index")
                self.intent.index = "pre-index"

    def save(self) -> None:
        """Write the journal as it stands (atomically); call after changing ``intent``."""
        try:
            fsync_dir(self.where)
            atomic_write(self.where / JOURNAL, self.intent.to_json(), mode=0o600)
        except (OSError, MlsnapError) as exc:
            cause = exc if isinstance(exc, OSError) else exc.__cause__
            reason = getattr(cause, "strerror", None) or str(exc)
            raise JournalFailed(self.where / JOURNAL, self.intent.argv or self.intent.op,
                                reason) from None


@contextlib.contextmanager
def operation(root: Path, intent: Intent) -> Iterator[Operation]:
    """Run one writing command under the lock with ``intent`` journaled before it starts.

    On success the journal goes; on any exception (Ctrl-C and SIGTERM included) the command is
    rolled back (or forward, past its Git commit) here and now, with further signals held off
    until that is done; a kill leaves the journal to the next command.
    """
    # mlsnap's own folder holds the manifests and the config, written through temporaries.
    intent.clean = sorted({*intent.clean, str(root / ".mlsnap")})
    with repo_lock(lock_path(root)):
        _recover_locked(root)
        op = Operation(root, intent)
        try:
            op.where.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise JournalFailed(op.where, intent.argv or intent.op, exc.strerror) from None
        op.save()
        try:
            yield op
        except BaseException:
            with _signals_held():
                _undo(root, intent, op.where)
                _drop(op.where)
            raise
        else:
            with _signals_held():
                remove_partials(intent)
                _drop(op.where)


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Hold SIGINT/SIGTERM off while a roll-back or the final clean-up runs (a second Ctrl-C
    must not cut it short). A signal that arrives meanwhile is noted and delivered afterwards,
    unless an exception is already on its way out. Python runs signal handlers in the main
    thread whichever thread the kernel picked, so swapping the handlers covers DVC's worker
    threads too (a signal mask would not). Only possible in the main thread."""
    import sys
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    noted: list[int] = []
    held = (signal.SIGINT, signal.SIGTERM)
    old = {sig: signal.signal(sig, lambda signum, _frame: noted.append(signum)) for sig in held}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        if noted and sys.exc_info()[0] is None:
            signal.raise_signal(noted[0])
