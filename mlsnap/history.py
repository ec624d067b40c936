"""Snapshots across Git history, read straight from Git objects (no checkout, no DVC)."""

from __future__ import annotations

from pathlib import Path

from mlsnap import gitrepo, workspace
from mlsnap.errors import BadInput, NoSnapshot
from mlsnap.manifest import MANIFEST_DIR, Manifest, is_valid_name, loads, manifest_path


def names_at(root: Path, rev: str) -> list[str]:
    """Snapshot names whose manifest exists at ``rev``."""
    raw = gitrepo.run(root, ["ls-tree", "-z", "--name-only", rev, f"{MANIFEST_DIR}/"]).stdout
    names = []
    for entry in raw.split(b"\x00"):
        stem = Path(entry.decode(errors="replace")).name
        if stem.endswith(".yaml") and is_valid_name(stem[:-5]):
            names.append(stem[:-5])
    return sorted(names)


def pick_name(names: list[str], name: str | None, where: str) -> str:
    if name is not None:
        workspace.check_name(name)
        if name not in names:
            raise NoSnapshot(f"named {name!r} at {where}")
        return name
    if not names:
        raise NoSnapshot(f"at {where}")
    if len(names) > 1:
        raise BadInput(where, f"holds several snapshots ({', '.join(names)}); choose one with --name")
    return names[0]


def show(rev: str | None = None, name: str | None = None, cwd: Path | None = None) -> Manifest:
    """One manifest: the work tree's, or the one at ``rev`` (commit, branch, tag, name@vX.Y.Z)."""
    root = workspace.find_root(cwd)
    if rev is None:
        return workspace.load(root, pick_name(workspace.manifest_names(root), name, "the work tree"))
    sha = gitrepo.resolve(root, rev)
    if sha is None:
        raise BadInput(rev, "is not a commit, branch or tag in this repository")
    chosen = pick_name(names_at(root, sha), name, rev)
    blob = gitrepo.show(root, sha, manifest_path(chosen))
    assert blob is not None
    return loads(blob, f"{rev}:{manifest_path(chosen)}")
