"""Long-running writers outside any command: a Checkpointer marks the folder it writes in.

A training process writes checkpoints for hours, outside any command's journal: each
Checkpointer notes its folder in ``.git/mlsnap-writers/<pid>`` while it runs, so that the next
mlsnap command clears the partial files of one that was killed (its process gone) as it clears a
killed command's, and leaves a live writer's alone.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from mlsnap import gitrepo
from mlsnap.fsutil import TMP_PREFIX, atomic_write, process_alive

# A Checkpointer writes its checkpoints outside any command's journal, for hours: each one marks
# its folder here while it runs, so that the next mlsnap command can clear the partial files of
# one that was killed (its process gone) as it clears a killed command's.
WRITERS_DIR = "mlsnap-writers"


def writers_dir(root: Path) -> Path:
    return gitrepo.git_dir(root) / WRITERS_DIR


def mark_writer(root: Path, directory: Path) -> Path:
    """Note that this process writes partial files (``TMP_PREFIX``) in ``directory``."""
    where = writers_dir(root)
    where.mkdir(parents=True, exist_ok=True)
    mark = where / str(os.getpid())
    atomic_write(mark, os.fsencode(str(directory)))
    return mark


def clear_dead_writers(root: Path) -> None:
    where = writers_dir(root)
    try:
        marks = list(os.scandir(where))
    except (FileNotFoundError, NotADirectoryError):
        return
    live: set[str] = set()
    dead: list[tuple[Path, str]] = []
    for mark in marks:
        try:
            directory = os.fsdecode(Path(mark.path).read_bytes())
        except OSError:
            continue
        if mark.name.isdigit() and process_alive(int(mark.name)):
            live.add(directory)
        else:
            dead.append((Path(mark.path), directory))
    for mark_path, directory in dead:
        if directory not in live:  # another live writer's temporaries are its own
            _remove_writer_temps(Path(directory))
        mark_path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        where.rmdir()  # only when no writer is left


def _remove_writer_temps(directory: Path) -> None:
    """The partial files in ``directory`` whose writer is gone: ``TMP_PREFIX<pid>-...`` of a
    dead pid, and the unnamed temporaries of an atomic write (no live writer is there)."""
    try:
        entries = list(os.scandir(directory))
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return
    for entry in entries:
        if not entry.name.startswith(TMP_PREFIX) or entry.is_symlink():
            continue
        pid = entry.name[len(TMP_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and process_alive(int(pid)):
            continue
        if entry.is_dir():
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
