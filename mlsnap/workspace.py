"""The repository a command works in: its root, its manifests, and paths given by the user."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlsnap import gitrepo, store
from mlsnap.errors import (
    BadInput,
    InterruptedCommit,
    ManifestInvalid,
    MlsnapError,
    NoCommits,
    NoSnapshot,
    NotInitialized,
)
from mlsnap.manifest import (
    MANIFEST_DIR,
    Manifest,
    check_inside,
    check_path,
    is_valid_name,
    manifest_path,
    read,
)

# Files mlsnap and DVC own; their changes are part of a snapshot, not "dirty code".
SETUP_FILES = (".dvc/config", ".dvc/.gitignore", ".dvcignore", f"{MANIFEST_DIR}/config.yaml")


def find_root(cwd: Path | None = None) -> Path:
    """The repository's root, after finishing what a killed mlsnap command left there.

    Every command starts here, so any of them (``status`` too) restores the user's bytes and
    removes partial files first; with no journal this costs one ``stat``.
    """
    from mlsnap import journal

    root = gitrepo.toplevel(cwd or Path.cwd())
    journal.recover(root)
    return root


def require_ready(root: Path) -> None:
    if not (root / ".dvc").is_dir() or not (root / MANIFEST_DIR / "config.yaml").is_file():
        raise NotInitialized(str(root))


def check_name(name: str) -> str:
    if not is_valid_name(name):
        raise BadInput(f"--name {name!r}", "use letters, digits, '.', '_' or '-' (not 'config')")
    return name


def manifest_names(root: Path) -> list[str]:
    """Names of the manifests present in the work tree, sorted."""
    folder = root / MANIFEST_DIR
    if not folder.is_dir():
        return []
    return sorted(
        p.stem for p in folder.glob("*.yaml") if p.stem != "config" and is_valid_name(p.stem)
    )


def load(root: Path, name: str) -> Manifest:
    """The manifest of ``name`` in the work tree, validated (paths checked against symlinks)."""
    rel = manifest_path(name)
    path = root / rel
    if not path.is_file():
        raise NoSnapshot(f"named {name!r} in {root}")
    manifest = read(path, rel)
    for out_path, _ in manifest.tracked:
        check_inside(root, out_path, rel)
    if manifest.name != name:
        raise ManifestInvalid(rel, f"name {manifest.name!r} does not match the file name")
    return manifest


def load_all(root: Path, name: str | None = None) -> list[Manifest]:
    """Manifests at the work tree (one with ``name``); ``NoSnapshot`` when there are none."""
    if name is not None:
        return [load(root, check_name(name))]
    names = manifest_names(root)
    if not names:
        raise NoSnapshot(f"in {root} (no {MANIFEST_DIR}/*.yaml at this revision)")
    return [load(root, n) for n in names]


def to_repo_path(root: Path, user_path: str, cwd: Path | None = None) -> str:
    """A path typed by the user (relative to cwd) as a repo-relative POSIX path, checked."""
    cwd = cwd or Path.cwd()
    full = Path(os.path.normpath(cwd / user_path))
    try:
        rel = full.relative_to(root).as_posix()
    except ValueError:
        try:
            rel = full.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            raise BadInput(user_path, f"is outside the repository {root}") from None
    if rel in ("", "."):
        raise BadInput(user_path, "is the repository itself; name the files or folders to track")
    try:
        check_path(rel, where=user_path)
        check_inside(root, rel, user_path)
    except ManifestInvalid as exc:
        raise BadInput(user_path, exc.reason.split(": ", 1)[-1]) from None
    return rel


def nested_repository(root: Path, rel: str) -> str | None:
    """The submodule (or other nested Git repository) that holds ``rel``, or None.

    Its files belong to that repository: Git refuses to add a ``.dvc`` pointer there, so a
    snapshot must not start on one. No process: a nested work tree has its own ``.git``.
    """
    parts = rel.split("/")
    for i in range(1, len(parts) + 1):
        folder = "/".join(parts[:i])
        if (root / folder / ".git").exists():
            return folder
    return None


def no_escaping_links(root: Path, folders: list[str]) -> None:
    """Refuse a symbolic link committed to Git inside a recorded folder when it leaves the
    repository or enters ``.git``: DVC follows links when it hashes and adds a folder, so a
    cloned ``data/sub -> ~/.ssh`` would read the user's files into a snapshot (and push them).
    Links the user made and never committed are theirs to follow."""
    if not folders:
        return
    from mlsnap import pathsafety

    raw = gitrepo.run(root, ["ls-files", "-s", "-z", "--", *folders]).stdout
    for entry in raw.split(b"\x00"):
        meta, _, name = entry.partition(b"\t")
        if not meta.startswith(b"120000"):
            continue
        rel = name.decode(errors="replace")
        reason = pathsafety.escape(root, rel)
        if reason:
            raise pathsafety.UnsafePath(rel, f"a symbolic link committed to Git inside a "
                                        f"recorded folder: {reason.split(' ', 1)[1]}; DVC would "
                                        f"read through it; remove it (`git rm --cached {rel}`)")


def unfinished(root: Path, manifests: list[Manifest]) -> list[str]:
    """Manifests and ``.dvc`` pointers that differ from HEAD (or are new): the trace of an
    ``mlsnap commit`` killed between writing them and its Git commit."""
    if gitrepo.head_or_none(root) is None:  # an unborn branch: nothing is committed at all
        raise NoCommits(str(root), gitrepo.branch(root) or "HEAD")
    files = [manifest_path(m.name) for m in manifests]
    files += [f"{p}.dvc" for m in manifests for p, _ in m.tracked]
    raw = gitrepo.run(root, ["status", "--porcelain=v1", "-z", "--untracked-files=all",
                             "--", *files]).stdout
    changed = []
    entries = iter(raw.split(b"\x00"))
    for entry in entries:
        if len(entry) > 3:
            changed.append(entry[3:].decode(errors="replace"))
            if entry[:1] in (b"R", b"C"):
                next(entries, None)  # the source path of a rename follows
    return sorted(set(changed) & set(files))


def shallow_note(cwd: Path | None = None, beyond: Sequence[Any] = ()) -> str | None:
    """What history cannot show in a shallow clone, or None in a full one.

    ``beyond``: snapshots found in the clone's oldest commit that were taken before it
    (``history.BeyondShallow``); they are named, since ``log`` leaves them out.
    """
    here = (cwd or Path.cwd()).absolute()
    # The nearest .git, found without starting a process (log counts its processes).
    top = next((p for p in (here, *here.parents) if (p / ".git").exists()), None)
    if top is None or not gitrepo.is_shallow(top):
        return None
    note = ("note: this clone is shallow (git clone --depth): snapshots older than its oldest "
            "commit are not listed")
    if beyond:
        names = ", ".join(dict.fromkeys(b.name for b in beyond))
        cuts = ", ".join(dict.fromkeys(b.boundary[:7] for b in beyond))
        note += (f"; the manifests of {names} in its oldest commit {cuts} come from a snapshot "
                 "taken before it, at a commit this clone does not have")
    return note + "; `git fetch --unshallow` brings them"


def check_pointers(root: Path, manifests: Sequence[Manifest]) -> None:
    """Each manifest's recorded hashes against the ``.dvc`` pointers beside it: a pointer that
    is missing or disagrees is named (a commit killed after ``dvc add`` is told apart)."""
    for m in manifests:
        for path, md5 in m.tracked:
            pointer = store.read_dvc_file(root, path)
            if pointer is None:
                raise MlsnapError(f"{store.dvc_file(path)} is missing but "
                                  f"{manifest_path(m.name)} records {path}; restore it with "
                                  f"`git checkout -- {store.dvc_file(path)}`")
            if pointer[0] != md5:
                pending = unfinished(root, [m])
                if pending:  # a commit killed after `dvc add`, not tampering
                    raise InterruptedCommit(pending)
                raise ManifestInvalid(manifest_path(m.name), f"{path}: hash {md5} disagrees with "
                                      f"{store.dvc_file(path)} ({pointer[0]}); one was edited by hand")
