"""What a pre-commit hook sees: the staged index, read without touching the work tree.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

# Variables Git sets for hooks; left in place they point a nested `git` at the wrong repository.
from mlsnap.gitrepo.core import run

# --------------------------------------------------------------------------- staged content

_BLOB_MODES = ("100644", "100755")
_MAX_ARGS = 500


class Staged:
    """Reads what a commit would hold: index content first, the work tree as a fallback."""

    def __init__(self, root: Path, index: Path | None = None) -> None:
        self.root = root
        self.index = index

    def git(self, args: Sequence[str], check: bool = True) -> bytes:
        return run(self.root, ["--literal-pathspecs", *args], index=self.index,
                           check=check).stdout

    def changed(self) -> list[str]:
        """Paths added or modified in the index relative to HEAD (all of them before a commit)."""
        raw = self.git(["diff", "--cached", "--name-only", "-z", "--no-renames",
                        "--diff-filter=ACMRT"])
        return [p.decode(errors="surrogateescape") for p in raw.split(b"\0") if p]

    def blobs(self, paths: Sequence[str]) -> dict[str, str]:
        """Blob id of each regular file among ``paths`` in the index (symlinks, submodules out)."""
        if not paths:
            return {}
        wanted = set(paths)
        # A first commit of a big tree stages more paths than a command line holds: list all.
        spec = list(paths) if len(paths) <= _MAX_ARGS else []
        found = {}
        for entry in self.git(["ls-files", "-s", "-z", "--", *spec]).split(b"\0"):
            if not entry:
                continue
            meta, _, raw = entry.partition(b"\t")
            mode, sha, _stage = meta.decode().split()
            path = raw.decode(errors="surrogateescape")
            if mode in _BLOB_MODES and path in wanted:
                found[path] = sha
        return found

    def sizes(self, paths: Sequence[str]) -> dict[str, int]:
        """Size in bytes of each path: the staged blob, else the work tree file."""
        blobs = self.blobs(paths)
        sizes: dict[str, int] = {}
        if blobs:
            order = list(blobs)
            query = "".join(f"{blobs[p]}\n" for p in order).encode()
            raw = run(self.root, ["cat-file", "--batch-check=%(objectsize)"],
                              input=query).stdout.decode().split()
            sizes.update({p: int(n) for p, n in zip(order, raw, strict=True)})
        for path in paths:
            if path not in sizes:
                full = self.root / path
                if full.is_file() and not full.is_symlink():
                    sizes[path] = full.stat().st_size
        return sizes

    def lfs(self, paths: Sequence[str]) -> set[str]:
        """Paths Git LFS stores (``filter=lfs``): their bytes do not enter Git."""
        if not paths:
            return set()
        query = b"".join(p.encode(errors="surrogateescape") + b"\0" for p in paths)
        raw = run(self.root, ["check-attr", "--cached", "--stdin", "-z", "filter"],
                          input=query, index=self.index).stdout.split(b"\0")
        return {raw[i].decode(errors="surrogateescape") for i in range(0, len(raw) - 2, 3)
                if raw[i + 2] == b"lfs"}

    def read(self, path: str, worktree: bool = True) -> bytes | None:
        proc = run(self.root, ["cat-file", "blob", f":{path}"], index=self.index,
                           check=False)
        if proc.returncode == 0:
            return proc.stdout
        full = self.root / path
        return full.read_bytes() if worktree and full.is_file() else None

    def files_under(self, folder: str) -> list[str]:
        """Paths in the index under ``folder``."""
        raw = self.git(["ls-files", "-z", "--", f"{folder}/"])
        return [p.decode(errors="surrogateescape") for p in raw.split(b"\0") if p]
