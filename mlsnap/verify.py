"""The ``verify`` flow: is a snapshot intact, and who vouches for it? (like ``git lfs fsck``)

For each snapshot at a revision (the work tree without one): its manifest against its ``.dvc``
pointers, every object it names in the local cache (and, with ``remote``, on the remote)
against the recorded hashes, and the signature of its snapshot commit or tag. Nothing in the
workspace is written; a failure is named, never repaired.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlsnap import gitrepo, pathsafety, signing, store, storecheck, workspace
from mlsnap.errors import BadInput, ManifestInvalid, MlsnapError, NoSnapshot
from mlsnap.manifest import Manifest, manifest_path
from mlsnap.safeyaml import safe_load


@dataclass(frozen=True)
class Failure:
    kind: str  # manifest | cache | remote | signature
    path: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "path": self.path, "reason": self.reason}


@dataclass(frozen=True)
class SnapshotCheck:
    name: str
    source: str  # where the manifest was read: ".mlsnap/model.yaml" or "abc1234:..."
    commit: str | None  # the revision's commit (HEAD for the work tree)
    objects: int  # objects checked in the cache
    hashed: int  # of them read (the others proven unchanged by DVC's state DB)
    remote_only: int  # objects not in this cache, checked on the remote
    remote_objects: int  # objects read from the remote
    signature: signing.Vouch | None
    edited: tuple[str, ...]  # the snapshot's files that differ from HEAD (work tree only)
    failures: tuple[Failure, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "commit": self.commit,
                "ok": not self.failures, "objects": self.objects, "hashed": self.hashed,
                "remote_only": self.remote_only, "remote_objects": self.remote_objects,
                "signature": self.signature.to_dict() if self.signature else None,
                "edited": list(self.edited),
                "failures": [f.to_dict() for f in self.failures]}


@dataclass(frozen=True)
class VerifyReport:
    rev: str | None
    remote: str | None  # the remote checked, None without --remote
    deep: bool
    require_signed: bool
    snapshots: tuple[SnapshotCheck, ...]

    @property
    def ok(self) -> bool:
        return all(not s.failures for s in self.snapshots)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "rev": self.rev, "remote": self.remote, "deep": self.deep,
                "require_signed": self.require_signed,
                "snapshots": [s.to_dict() for s in self.snapshots]}


def _at_rev(root: Path, rev: str, name: str | None) -> tuple[str, list[tuple[Manifest, str]]]:
    from mlsnap import blobs, history

    sha = gitrepo.resolve(root, rev)
    if sha is None:
        raise BadInput(rev, "is not a commit, branch or tag in this repository "
                            "(see `mlsnap log --all`)")
    found = history.manifests_at(root, sha)
    names = [history.pick_name(sorted(found), history.name_from_tag(rev, name), rev)] \
        if name or history.name_from_tag(rev, name) or len(found) <= 1 else sorted(found)
    contents = history.read_blobs(root, [found[n] for n in names])
    out = []
    for n in names:
        source = f"{rev}:{manifest_path(n)}"
        out.append((history.check_name(blobs.parse(contents[found[n]], source), n, source),
                    source))
    return sha, out


def _pointer(root: Path, sha: str | None, path: str) -> tuple[str, int | None] | None:
    """(md5, size) of the ``.dvc`` pointer of ``path`` at ``sha`` (the work tree for None)."""
    if sha is None:
        return store.read_dvc_file(root, path)
    blob = gitrepo.show(root, sha, f"{path}.dvc")
    if blob is None:
        return None
    return pathsafety.pointer(safe_load(blob, f"{sha[:7]}:{path}.dvc"), path)


def _pointer_failures(root: Path, sha: str | None, m: Manifest) -> list[Failure]:
    failures = []
    for path, md5 in m.tracked:
        rel = f"{path}.dvc"
        try:
            pointer = _pointer(root, sha, path)
        except MlsnapError as exc:
            failures.append(Failure("manifest", rel, str(exc)))
            continue
        if pointer is None:
            failures.append(Failure("manifest", rel, f"missing, but {manifest_path(m.name)} "
                                    f"records {path}"))
        elif pointer[0] != md5:
            failures.append(Failure("manifest", rel, f"names {pointer[0]}, "
                                    f"{manifest_path(m.name)} records {md5}"))
    return failures


def verify(rev: str | None = None, *, name: str | None = None, remote: bool = False,
           remote_name: str | None = None, require_signed: bool = False, deep: bool = False,
           jobs: int | None = None, cwd: Path | None = None) -> VerifyReport:
    """Check the snapshots at ``rev`` (the work tree's without it); see ``mlsnap verify -h``."""
    root = workspace.find_root(cwd)
    workspace.require_ready(root)
    if rev is None:
        head = gitrepo.head_or_none(root)
        snaps = [(m, manifest_path(m.name)) for m in workspace.load_all(root, name)]
        sha: str | None = None
    else:
        head, snaps = _at_rev(root, rev, name)
        sha = head
    if not snaps:
        raise NoSnapshot(f"at {rev or 'the work tree'}")
    tag = rev if rev and gitrepo.tag_exists(root, rev) else None
    checks = []
    with store.open_repo(root) as repo:
        odb = store.gc_remote(repo, remote_name) if remote else None
        label = store.remote_label(repo, remote_name)
        if remote and odb is None:
            raise MlsnapError(f"{root}: no default DVC remote to check; "
                              "`mlsnap init --remote DIR_OR_URL` sets one")
        for m, source in snaps:
            failures = _pointer_failures(root, sha, m)
            tally = storecheck.Tally()
            objects = []
            for path, md5 in m.tracked:
                objects += storecheck.objects_of(repo, odb, path, md5, label, tally)
            missing: list[storecheck.Expected] = []
            storecheck.check_cache(repo, objects, deep, tally, missing)
            if odb is not None:
                tally.remote_only = len(missing)
                storecheck.check_remote(odb, objects, tally, label, jobs)
            else:
                tally.failures += [storecheck.Failure(
                    "cache", o.label, f"not in this cache ({o.oid}); `mlsnap pull` fetches it, "
                    "`mlsnap verify --remote` checks the remote's copy") for o in missing]
            failures += [Failure(f.where, f.label, f.reason) for f in tally.failures]
            vouch, edited = _signature(root, head, m, rev is None, tag)
            if require_signed:
                if edited:
                    failures.append(Failure("signature", ", ".join(edited),
                                            "differs from HEAD: edited after the snapshot "
                                            "was committed"))
                elif vouch is None:
                    failures.append(Failure("signature", source, "no commit records it"))
                elif vouch.problem():
                    failures.append(Failure("signature", source, str(vouch.problem())))
            checks.append(SnapshotCheck(m.name, source, head, tally.objects, tally.hashed,
                                        tally.remote_only, tally.remote, vouch, tuple(edited),
                                        tuple(failures)))
    return VerifyReport(rev, label if remote else None, deep, require_signed, tuple(checks))


def _signature(root: Path, head: str | None, m: Manifest, work_tree: bool,
               tag: str | None) -> tuple[signing.Vouch | None, list[str]]:
    if head is None:
        return None, []
    files = signing.snapshot_files(m)
    edited = gitrepo.changed_paths(root, files) if work_tree else []
    try:
        return signing.vouch(root, head, files, tag), edited
    except ManifestInvalid:
        return None, edited
