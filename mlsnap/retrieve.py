"""``mlsnap get``: a snapshot's artifacts copied into a folder, verified, from any revision.

The manifest and ``.dvc`` pointers are read from Git objects (``history.at``); the bytes come
from the DVC cache or the remote, hashed as they arrive and scanned for unsafe pickles before
anything is written. The workspace, the index and HEAD are never touched.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlsnap import collected, gitrepo, journal, pathsafety, workspace
from mlsnap.errors import ManifestInvalid, MissingObjects, NoSnapshot
from mlsnap.history import Snapshot, at
from mlsnap.manifest import Output, manifest_path


@dataclass(frozen=True)
class GetResult:
    name: str
    commit: str
    directory: Path
    files: tuple[Path, ...]
    fetched: int  # objects downloaded from the remote
    pickles: tuple[str, ...] = ()  # pickle-based files written, scanned first
    unsafe: tuple[Any, ...] = ()  # written although flagged (--allow-unsafe-pickle): FileVerdict


def get(rev: str, name: str | None = None, out: Path | str | None = None, *,
        jobs: int | None = None, remote: str | None = None,
        cwd: Path | None = None, allow_unsafe_pickle: bool = False) -> GetResult:
    """Copy the artifacts of the snapshot at ``rev`` into ``out``, verified by md5.

    The manifest and ``.dvc`` pointers are read from Git objects; bytes come from the DVC cache
    or remote. The workspace, the index and HEAD are not touched. Default ``out``:
    ``<name>-<short commit>`` in the current directory.
    """
    from mlsnap import pickles, store

    here = cwd or Path.cwd()
    root = workspace.find_root(here)
    snap = at(root, rev, name)
    dest = Path(os.path.normpath(here / (out if out is not None else
                                         f"{snap.name}-{snap.commit[:7]}")))
    pathsafety.chosen_destination(root, dest, f"-o {out}" if out is not None else str(dest))
    artifacts = snap.manifest.artifacts
    if not artifacts:
        raise NoSnapshot(f"with artifacts at {rev} ({manifest_path(snap.name)} records none)")
    files: list[Path] = []
    _check_pointers_at(root, snap, artifacts)
    # Partial copies can only be where the export writes: beside each artifact, inside folders.
    targets = [pathsafety.target(dest, o.path, o.path) for o in artifacts]
    intent = journal.Intent("get", argv=journal.command_line("get"),
                            clean=sorted({str(t.parent) for t in targets}),
                            clean_deep=[str(t) for t, o in zip(targets, artifacts) if o.is_dir])
    with journal.operation(root, intent) as op, store.open_repo(root) as repo:
        intent.cache = store.cache_dir(repo)
        op.save()
        journal.remove_partials(intent)

        # Objects by hash, hashed as they arrive; folders' listings first, every entry checked
        # before anything reads it (the same path as pull's).
        try:
            verified = store.fetch_folders(
                repo, [(o.path, o.md5) for o in artifacts if o.is_dir], jobs=jobs, remote=remote)
            verified |= store.download(repo, [(o.path, o.md5) for o in artifacts if not o.is_dir],
                                       jobs=jobs, remote=remote)
            fetched = len(verified)
            tracked = [(o.path, o.md5) for o in artifacts]
            found = pickles.scan_files(pickles.files_of(repo, root, tracked, cached=True))
            unsafe = pickles.refused(found, pickles.recorded_dangerous([snap.manifest.pickles]))
            if unsafe and not allow_unsafe_pickle:
                raise pickles.UnsafePickle(unsafe, "write")
            for o in artifacts:
                files += store.export(repo, o.path, o.md5, dest.joinpath(*o.path.split("/")))
        except MissingObjects as exc:  # collected by a gc, or never pushed: say which
            raise collected.explain_missing(root, repo, [(snap.name, snap.blob, snap.commit)],
                                            exc.paths, exc.remote) from None
    return GetResult(snap.name, snap.commit, dest, tuple(files), fetched,
                     tuple(f.path for f in found), tuple(unsafe))


def _check_pointers_at(root: Path, snap: Snapshot, outputs: Sequence[Output]) -> None:
    """The ``.dvc`` pointers DVC will read at the snapshot's commit: written by ``dvc add``
    (``pathsafety.pointer``) and agreeing with the manifest, before DVC sees them."""
    from mlsnap.safeyaml import safe_load

    for o in outputs:
        rel = f"{o.path}.dvc"
        blob = gitrepo.show(root, snap.commit, rel)
        if blob is None:
            raise ManifestInvalid(f"{snap.commit[:7]}:{manifest_path(snap.name)}",
                                  f"{o.path}: {rel} is missing at that commit")
        md5, _ = pathsafety.pointer(safe_load(blob, f"{snap.commit[:7]}:{rel}"), o.path)
        if md5 != o.md5:
            raise ManifestInvalid(f"{snap.commit[:7]}:{manifest_path(snap.name)}",
                                  f"{o.path}: hash {o.md5} disagrees with {rel} ({md5}); "
                                  "one was edited by hand")
