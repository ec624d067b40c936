"""Partial copies: what an interrupted write leaves, and how to tell it from a user's file.

DVC writes ``<dir>/.<22 url-safe chars>.tmp`` (checkout, cache) and ``<file>.<22 chars>.tmp``
(copyfile); mlsnap's own temporary files start with ``TMP_PREFIX``. Links are never followed.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

from mlsnap.fsutil import TMP_PREFIX

# DVC writes "<dir>/.<22 url-safe chars>.tmp" (checkout, cache) and "<file>.<22 chars>.tmp"
# (copyfile); mlsnap's own temporary files start with TMP_PREFIX.
_DVC_TMP = re.compile(r"^(?P<prefix>.*)\.[A-Za-z0-9_-]{22}\.tmp$")


def is_partial(name: str, names: set[str] | None = None) -> bool:
    """Whether ``name`` is a partial copy: mlsnap's prefix, DVC's ``.<id>.tmp``, or (when
    ``names`` is given) ``<one of names>.<id>.tmp``; ``names=None`` accepts any prefix."""
    if name.startswith(TMP_PREFIX):
        return True
    match = _DVC_TMP.match(name)
    if not match:
        return False
    prefix = match.group("prefix")
    return prefix == "" or names is None or prefix in names


def remove_temps(directory: Path, *, names: set[str] | None = None, deep: bool = False) -> int:
    """Delete partial copies in ``directory`` (and below it with ``deep``); never follow links."""
    removed = 0
    stack = [directory]
    while stack:
        current = stack.pop()
        try:
            entries = list(os.scandir(current))
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        for entry in entries:
            if entry.is_symlink():
                continue
            if entry.is_dir():
                if deep:
                    stack.append(Path(entry.path))
                continue
            if is_partial(entry.name, names if not deep else None):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                removed += 1
    return removed


def remove_store_temps(files_dir: Path) -> int:
    """A content-addressed store (cache or folder remote) holds objects named by their hash;
    anything ending in ``.tmp`` there is a partial copy."""
    removed = 0
    for md5_dir in (files_dir, files_dir / "md5"):
        try:
            tops = list(os.scandir(md5_dir))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for top in tops:
            if top.is_file(follow_symlinks=False) and top.name.endswith(".tmp"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(top.path)
                removed += 1
            elif top.is_dir(follow_symlinks=False) and len(top.name) == 2:
                with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                    for entry in os.scandir(top.path):
                        if entry.name.endswith(".tmp") and entry.is_file(follow_symlinks=False):
                            with contextlib.suppress(FileNotFoundError):
                                os.unlink(entry.path)
                            removed += 1
    return removed
