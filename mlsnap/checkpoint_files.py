"""The files of a checkpoint folder: DVC-compatible hashes, durability, live writers.

Plain file work with no knowledge of the index (``checkpoint_index.py`` holds that).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

from mlsnap.fsutil import TMP_PREFIX, fsync_dir, md5_file, process_alive


def writer_alive(name: str) -> bool:
    """Whether the process named in a temporary ``.mlsnap-tmp-<pid>-...`` still runs (another
    rank, another training on the same folder): its file is not litter yet."""
    pid = name[len(TMP_PREFIX):].split("-", 1)[0]
    return pid.isdigit() and int(pid) != os.getpid() and process_alive(int(pid))


def walk_files(root: Path) -> Iterator[tuple[str, Path]]:
    """(relpath, path) of every file under a folder, sorted as DVC sorts them."""
    found = []
    for parent, _dirs, files in os.walk(root):
        for f in files:
            full = Path(parent) / f
            found.append((full.relative_to(root).as_posix(), full))
    return iter(sorted(found))


def tree_hash(path: Path) -> tuple[str, int, int]:
    """DVC's hash, total size and file count of a file or folder (``.dir`` hash for folders)."""
    if not path.is_dir():
        return md5_file(path), path.stat().st_size, 1
    return dir_hash([(rel, md5_file(full), full.stat().st_size) for rel, full in walk_files(path)])


def dir_hash(files: list[tuple[str, str, int]]) -> tuple[str, int, int]:
    """DVC's ``.dir`` hash, size and count of a folder from its (relpath, md5, size) files."""
    listing = [{"md5": md5, "relpath": rel} for rel, md5, _size in sorted(files)]
    digest = hashlib.md5(json.dumps(listing, sort_keys=True).encode("utf-8")).hexdigest()
    return digest + ".dir", sum(size for _rel, _md5, size in files), len(files)


def hash_share(root: Path, rank: int, world_size: int) -> list[tuple[str, str, int]]:
    """Fsync and hash this rank's share of the files under ``root`` (every rank sees the same
    folder and splits it the same way: largest first, each to the least loaded rank)."""
    found = sorted(((full.stat().st_size, rel, full) for rel, full in walk_files(root)),
                   key=lambda t: (-t[0], t[1]))
    load = [0] * world_size
    mine = []
    for size, rel, full in found:
        owner = min(range(world_size), key=lambda r: (load[r], r))
        load[owner] += size
        if owner == rank:
            with open(full, "rb") as f:
                os.fsync(f.fileno())
            mine.append((rel, md5_file(full), size))
    return mine


def fsync_tree(path: Path) -> None:
    """Make what ``save_fn`` wrote durable before it gets its final name."""
    if not path.is_dir():
        with open(path, "rb") as f:
            os.fsync(f.fileno())
        return
    for parent, _dirs, files in os.walk(path):
        for name in files:
            with open(Path(parent) / name, "rb") as f:
                os.fsync(f.fileno())
        fsync_dir(Path(parent))


def existing_names(directory: Path, names: list[str]) -> list[str]:
    return [n for n in dict.fromkeys(names) if os.path.lexists(directory / n)]
