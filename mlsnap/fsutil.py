"""Small filesystem helpers: atomic writes, a repository lock, fault-injection points."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import signal
import socket
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


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: Path, data: bytes, *, fault_step: str | None = None) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync, then rename over it.

    A reader sees either the old file or the new one, never a partial one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
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
    _fsync_dir(path.parent)


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


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def repo_lock(lock_path: Path, *, timeout: float | None = None) -> Iterator[None]:
    """Hold an exclusive lock file for one snapshot operation.

    Waits up to ``timeout`` seconds (MLSNAP_LOCK_TIMEOUT, default 30) for another mlsnap
    process; a lock whose holder died on this host is taken over.
    """
    if timeout is None:
        timeout = float(os.environ.get("MLSNAP_LOCK_TIMEOUT", "30"))
    host = socket.gethostname()
    me = f"{os.getpid()} {host}"
    deadline = time.monotonic() + timeout
    while True:
        try:
            fd = os.open(lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _read_holder(lock_path)
            if holder is not None and _holder_is_dead(holder, host):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(lock_path)
                continue
            if time.monotonic() >= deadline:
                raise LockHeld(str(lock_path), f"pid {holder or 'unknown'}") from None
            time.sleep(0.05)
            continue
        with os.fdopen(fd, "w") as f:
            f.write(me + "\n")
        break
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock_path)


def _read_holder(lock_path: Path) -> str | None:
    try:
        return lock_path.read_text().strip() or None
    except (FileNotFoundError, UnicodeDecodeError):
        return None


def _holder_is_dead(holder: str, host: str) -> bool:
    parts = holder.split()
    if len(parts) != 2 or parts[1] != host or not parts[0].isdigit():
        return False
    return not _pid_alive(int(parts[0]))
