"""Small filesystem helpers: atomic writes, a repository lock, fault-injection points."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import shutil
import signal
import socket
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from mlsnap.errors import LockHeld, MlsnapError

TMP_PREFIX = ".mlsnap-tmp-"


def fault_point(step: str) -> None:
    """Die by SIGKILL at ``step`` when MLSNAP_FAULT_AT names it (crash-safety tests only)."""
    if os.environ.get("MLSNAP_FAULT_AT") == step:
        os.kill(os.getpid(), signal.SIGKILL)


def md5_file(path: Path, chunk: int = 1024 * 1024) -> str:
    """md5 of a file's bytes, as DVC computes it for a file object."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: Path, data: bytes, *, fault_step: str | None = None,
                 mode: int | None = None) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync, then rename over it.

    A reader sees either the old file or the new one, never a partial one. ``mode`` defaults
    to what a plain write would give: the replaced file's mode, or 0666 less the umask for a
    new file (a temporary file is 0600, which would make a report or an index private).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode is None:
        mode = _mode_of(path)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        if fault_step:
            fault_point(fault_step)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            raise MlsnapError(f"{path}: no space left on device; nothing was changed") from exc
        raise
    fsync_dir(path.parent)


def _mode_of(path: Path) -> int:
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        mask = os.umask(0o022)  # read the umask: setting it is the only way, so set it back
        os.umask(mask)
        return 0o666 & ~mask


def process_start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (tells a reused pid from the process that wrote it
    down), None where there is no such process or no ``/proc``."""
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat_line[stat_line.rindex(")") + 2:].split()
    return fields[19] if len(fields) > 19 and fields[0] not in ("Z", "X") else None


def process_alive(pid: int, started: str | None = None) -> bool:
    """Whether ``pid`` runs (and, with ``started``, is still the process that started then)."""
    if pid == os.getpid():
        return True
    if started is not None and Path("/proc/self/stat").exists():
        return process_start_time(pid) == started
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_path(path: Path) -> None:
    """Remove a file, a link (never what it points to) or a folder; absent is fine."""
    with contextlib.suppress(FileNotFoundError):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def remove_stale_temps(directory: Path) -> int:
    """Delete temporary files left by an interrupted atomic write; return how many."""
    removed = 0
    with contextlib.suppress(FileNotFoundError):
        for entry in directory.iterdir():
            if entry.name.startswith(TMP_PREFIX) and entry.is_file():
                entry.unlink()
                removed += 1
    return removed


# DVC copies into "<dir>/.<22 url-safe chars>.tmp" and renames; a crash or a full disk leaves
# these behind, in the cache as in the workspace.
DVC_TMP = re.compile(r"^\.[A-Za-z0-9_-]{22}\.tmp$")


def remove_dvc_temps(directory: Path) -> int:
    """Delete DVC's partial copies directly in ``directory``; return how many."""
    removed = 0
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for entry in directory.iterdir():
            if DVC_TMP.match(entry.name) and entry.is_file() and not entry.is_symlink():
                with contextlib.suppress(FileNotFoundError):
                    entry.unlink()
                removed += 1
    return removed


@contextlib.contextmanager
def repo_lock(lock_path: Path, *, timeout: float | None = None) -> Iterator[None]:
    """Hold the repository's lock for one writing command.

    The lock is the kernel's (``flock``), not the file's existence: it goes with its holder,
    whatever kills it, so an empty, half-written or stale lock file is simply taken over. The
    file holds the holder's pid for the message another command prints while it waits (up to
    ``timeout`` seconds: MLSNAP_LOCK_TIMEOUT, default 30).
    """
    wait = lock_timeout() if timeout is None else timeout
    deadline = time.monotonic() + wait
    while True:
        fd = _acquire(lock_path)
        if fd is not None:
            break
        if time.monotonic() >= deadline:
            raise LockHeld(str(lock_path), f"pid {_read_holder(lock_path) or 'unknown'}")
        time.sleep(0.05)
    try:
        yield
    finally:
        _release(lock_path, fd)


@contextlib.contextmanager
def try_repo_lock(lock_path: Path) -> Iterator[bool]:
    """The lock if nobody holds it now (True), else False at once."""
    fd = _acquire(lock_path)
    try:
        yield fd is not None
    finally:
        if fd is not None:
            _release(lock_path, fd)


def lock_timeout() -> float:
    raw = os.environ.get("MLSNAP_LOCK_TIMEOUT", "30")
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:  # also NaN
        raise MlsnapError(f"MLSNAP_LOCK_TIMEOUT={raw!r}: not a number of seconds; "
                          "set it to e.g. 30 or unset it")
    return value


def _acquire(lock_path: Path) -> int | None:
    """Open and ``flock`` the lock file; None when another process holds it.

    After locking, the path must still name the locked file: a holder that just finished
    unlinks it, and a lock on an unlinked file would guard nothing.
    """
    import fcntl

    lock_path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(100):
        fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return None
            raise
        try:
            same = os.fstat(fd).st_ino == os.stat(lock_path).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            continue
        with contextlib.suppress(OSError):  # the pid is only for messages; a full disk is fine
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
        return fd
    return None


def _release(lock_path: Path, fd: int) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(lock_path)  # unlink first, then unlock: see _acquire
    os.close(fd)


def _read_holder(lock_path: Path) -> str | None:
    try:
        return lock_path.read_text().split()[0] or None
    except (FileNotFoundError, UnicodeDecodeError, IndexError):
        return None


def human_size(size: int) -> str:
    """``size`` bytes for people: powers of 1024 with their IEC names (B, KiB, MiB, GiB, TiB)."""
    if size < 1024:
        return f"{size} B"
    value = size / 1024
    for unit in ("KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"
