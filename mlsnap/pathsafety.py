"""The one gate between a recorded name and a filesystem path.

Every name that arrives with a repository (manifest paths, ``.dvc`` pointers, the entries of a
DVC ``.dir`` listing from the cache or a remote, ``get -o`` targets, checkpoint index names) is
checked here before it becomes a path mlsnap or DVC writes to. A name is refused when it is
absolute, climbs with ``..``, names ``.git`` in any spelling a filesystem may fold to it
(``.GIT``, ``.git.``, ``.git ``, ``git~1``, ignorable Unicode inside), holds control characters
or a backslash, or reaches its place through a symbolic link that leaves the tree.
"""

from __future__ import annotations

import functools
import json
import os
import re
import unicodedata
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from mlsnap.errors import BadInput, CheckFailed

MD5_HEX = re.compile(r"^[0-9a-f]{32}$")  # a file object's DVC hash
MD5_RE = re.compile(r"^[0-9a-f]{32}(\.dir)?$")  # a file's, or a folder listing's
MAX_LISTING_BYTES = 512 * 1024 * 1024


class UnsafePath(BadInput):
    """A recorded name that would become a path outside the tree, into .git, or through a link."""


class CorruptListing(CheckFailed):
    """A ``.dir`` object whose bytes do not hash to its name: damaged, quarantined, exit 3."""

    def __init__(self, path: str, oid: str, actual: str, where: str) -> None:
        super().__init__(
            f"{path}: {where} directory listing {oid} hashes to {actual}; it is corrupt, was "
            "moved aside and nothing was written to the workspace; run `mlsnap pull` again to "
            "download a good copy"
        )


def _folded(part: str) -> str:
    """A path component as case-insensitive, dot- and space-trimming filesystems see it."""
    kept = "".join(c for c in part if unicodedata.category(c) != "Cf")  # HFS+ ignores these
    return kept.rstrip(". ").lower()


def is_git_name(part: str) -> bool:
    folded = _folded(part)
    return folded == ".git" or folded.startswith(".git ") or folded == "git~1"


@functools.lru_cache(maxsize=4096)
def problem(path: str) -> str | None:
    """What is wrong with the repo-relative POSIX ``path`` (None: nothing)."""
    if not path:
        return "empty path"
    if any(unicodedata.category(c) == "Cc" for c in path):
        return f"{path!r} contains control characters"
    if "\\" in path:
        return f"{path!r} is not a POSIX path (backslash)"
    if path.startswith("/") or re.match(r"^[A-Za-z]:", path):
        return f"{path!r} is absolute; paths must be relative to the repository"
    parts = path.split("/")
    if ".." in parts:
        return f"{path!r} contains '..'"
    if any(p in ("", ".") for p in parts[:-1]) or parts[-1] in ("", "."):
        return f"{path!r} has an empty or '.' component"
    for part in parts:
        if is_git_name(part):
            return f"{path!r} points into .git"
    return None


def problem_in_repo(path: str) -> str | None:
    """``problem`` plus the folder mlsnap and DVC manage at the top of a repository."""
    reason = problem(path)
    if reason is None and path.split("/")[0].lower() == ".dvc" and "/" in path:
        return f"{path!r} points into .dvc"
    return reason


def check(path: str, where: str) -> str:
    """``path`` unchanged, or ``UnsafePath`` naming ``where``."""
    reason = problem(path)
    if reason is not None:
        raise UnsafePath(where, reason)
    return path


def escape(root: Path, path: str) -> str | None:
    """Why ``root/path`` is unsafe to write through symbolic links (None: it is safe).

    Every existing prefix is resolved: a link anywhere on the way that lands outside ``root``
    or inside its ``.git`` is the classic escape (DVC #11101).
    """
    resolved_root = root.resolve()
    git_dir = resolved_root / ".git"
    probe = resolved_root
    for part in PurePosixPath(path).parts:
        probe = probe / part
        if not (probe.is_symlink() or probe.exists()):
            break  # nothing below a missing component exists yet
        real = probe.resolve()
        if real != resolved_root and resolved_root not in real.parents:
            return f"{path!r} leaves the repository through a symlink"
        if real == git_dir or git_dir in real.parents:
            return f"{path!r} leads into .git through a symlink"
    return None


def chosen_destination(root: Path, dest: Path, where: str) -> None:
    """A path the user named to write to (``get -o``, ``report -o``) may be anywhere, but when
    it lies inside the repository no link on its way may lead out of it or into ``.git``: a
    clone chose those links, not the user (``UnsafePath`` otherwise)."""
    if dest.is_relative_to(root):
        reason = escape(root, dest.relative_to(root).as_posix())
        if reason is not None:
            raise UnsafePath(where, f"{reason}; write it elsewhere")


def target(base: Path, path: str, where: str) -> Path:
    """``base/path`` for writing, after ``check`` and ``escape`` (``UnsafePath`` otherwise)."""
    check(path, where)
    reason = escape(base, path)
    if reason is not None:
        raise UnsafePath(where, reason.replace("the repository", str(base)))
    return base.joinpath(*path.split("/"))


def links_below(folder: Path) -> list[str]:
    """Symbolic links anywhere inside ``folder`` (relative POSIX paths), found without
    following any; none of mlsnap's or DVC's making (restored files are copies)."""
    found: list[str] = []
    if folder.is_symlink() or not folder.is_dir():
        return found
    stack = [folder]
    while stack:  # scandir's entry types need no stat per file
        here = stack.pop()
        with os.scandir(here) as entries:
            for entry in entries:
                if entry.is_symlink():
                    found.append(Path(entry.path).relative_to(folder).as_posix())
                elif entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
    return sorted(found)


def remove_links(base: Path, links: Sequence[str]) -> None:
    """Unlink each link itself (never what it points to), so nothing is written through it."""
    for rel in links:
        full = base / rel
        if full.is_symlink():
            os.unlink(full)


def parse_listing(raw: bytes, path: str, oid: str) -> list[tuple[str, str]]:
    """The ``(relpath, md5)`` entries of a DVC ``.dir`` object, every name checked.

    A listing that is not one JSON array of ``{"relpath", "md5"}`` objects, or that names an
    unsafe path, a non-md5 hash, the same path twice, or a file inside another file, is refused
    (``UnsafePath``): DVC would otherwise fetch, hash and write whatever it names.
    """
    where = f"{path}: the directory listing {oid}"
    if len(raw) > MAX_LISTING_BYTES:
        raise UnsafePath(where, f"is larger than {MAX_LISTING_BYTES} bytes")
    try:
        doc: Any = json.loads(raw)
    except (ValueError, RecursionError):
        raise UnsafePath(where, "is not valid JSON; the snapshot cannot be restored from it") \
            from None
    if not isinstance(doc, list):
        raise UnsafePath(where, "is not a list of entries")
    entries: list[tuple[str, str]] = []
    names: set[str] = set()
    for i, entry in enumerate(doc):
        if not isinstance(entry, dict) or not isinstance(entry.get("relpath"), str) \
                or not isinstance(entry.get("md5"), str):
            raise UnsafePath(where, f"entry {i} is not {{relpath, md5}}")
        rel, md5 = entry["relpath"], entry["md5"]
        reason = problem(rel)
        if reason is not None:
            raise UnsafePath(where, f"entry {i}: {reason}; refusing to restore it")
        if not MD5_HEX.match(md5):
            raise UnsafePath(where, f"entry {i} ({rel!r}): {md5[:80]!r} is not an md5 hash")
        if rel in names:
            raise UnsafePath(where, f"names {rel!r} twice")
        names.add(rel)
        entries.append((rel, md5))
    for rel in names:
        parent = rel.rpartition("/")[0]
        while parent:
            if parent in names:
                raise UnsafePath(where, f"names {parent!r} both as a file and as a folder")
            parent = parent.rpartition("/")[0]
    return entries


_POINTER_KEYS = {"outs", "md5", "desc", "meta", "wdir"}
_OUT_KEYS = {"md5", "size", "nfiles", "hash", "path", "isexec", "desc", "type", "labels", "meta"}


def pointer(doc: Any, path: str) -> tuple[str, int | None]:
    """(md5, size) of the ``.dvc`` pointer of ``path``, written as ``dvc add`` writes it.

    DVC obeys more than mlsnap reads: ``outs[0].path`` decides where DVC checks out, ``wdir``
    moves it, an inline ``files:`` listing replaces the ``.dir`` object, ``deps``/``cmd`` make
    a stage. A pointer that names anything but ``path`` itself, or holds such keys, is refused.
    """
    where = f"{path}.dvc"
    if not isinstance(doc, dict) or not isinstance(doc.get("outs"), list) or not doc["outs"]:
        raise UnsafePath(where, "not a DVC pointer file (no outs[0].md5)")
    extra = sorted(str(k) for k in doc if k not in _POINTER_KEYS)
    if extra:
        raise UnsafePath(where, f"holds {extra[0]!r}, which a pointer written by `dvc add` "
                                "never does; refusing it (restore it with `git checkout`)")
    if doc.get("wdir", ".") not in (".", "./"):
        raise UnsafePath(where, f"wdir {str(doc['wdir'])[:80]!r} would move the output away "
                                "from the pointer; refusing it")
    if len(doc["outs"]) != 1:
        raise UnsafePath(where, f"lists {len(doc['outs'])} outputs; a pointer of mlsnap's has one")
    out = doc["outs"][0]
    if not isinstance(out, dict):
        raise UnsafePath(where, "outs[0] is not a mapping")
    extra = sorted(str(k) for k in out if k not in _OUT_KEYS)
    if extra:
        raise UnsafePath(where, f"outs[0] holds {extra[0]!r}, which mlsnap does not restore; "
                                "refusing it")
    name = PurePosixPath(path).name
    if out.get("path") != name:
        shown = str(out.get("path"))[:200]
        reason = problem(shown) if isinstance(out.get("path"), str) else None
        raise UnsafePath(where, f"outs[0].path is {shown!r}"
                                + (f" ({reason.split(' ', 1)[1]})" if reason else "")
                                + f", but this pointer sits beside {name!r} and must name it; "
                                  "refusing it")
    md5 = out.get("md5")
    if not isinstance(md5, str) or not MD5_RE.match(md5):
        raise UnsafePath(where, "outs[0].md5 is missing or not a DVC md5 hash")
    if out.get("hash", "md5") != "md5":
        raise UnsafePath(where, f"outs[0].hash {str(out['hash'])[:40]!r} is not md5")
    size = out.get("size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        raise UnsafePath(where, "outs[0].size is not a size")
    return md5, size
