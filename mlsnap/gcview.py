"""What Git says ``mlsnap gc`` must see: every snapshot any ref names, and what is always kept.

Read once, at the start, with a handful of Git processes: the refs, one walk over
``.mlsnap/`` from every ref, worktree and stash, one batched lookup of the manifests at each
protected tree, one batched read of the manifest blobs, one ``rev-list`` per branch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from mlsnap import gitrepo, store
from mlsnap.blobs import Seen, parse
from mlsnap.collected import blob_id
from mlsnap.errors import BadInput, ManifestInvalid
from mlsnap.manifest import MANIFEST_DIR, Manifest, is_valid_name, manifest_path

SPEC = f"{MANIFEST_DIR}/"
_OID = re.compile(r"^[0-9a-f]{32}(\.dir)?$")


@dataclass(frozen=True)
class Snap:
    """A snapshot: a commit that added or changed ``.mlsnap/<name>.yaml`` (to ``blob``)."""

    commit: str
    stamp: int  # committer time
    name: str
    blob: str


@dataclass
class View:
    refs: dict[str, str]  # ref -> commit
    snaps: list[Snap]  # newest first
    manifests: dict[str, Manifest | None] = field(default_factory=dict)  # blob -> parsed
    raw: dict[str, bytes] = field(default_factory=dict)  # blob -> bytes, when unreadable
    always: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # why kept
    protected: set[str] = field(default_factory=set)  # manifest blobs whose bytes stay
    branches: dict[str, list[str]] = field(default_factory=dict)  # branch -> commits, newest 1st
    loose_md5s: set[str] = field(default_factory=set)  # named by .dvc files of the work tree

    def all_blobs(self) -> set[str]:
        return {s.blob for s in self.snaps} | self.protected


def _snapshot_name(path: str) -> str | None:
    folder, _, file = path.partition("/")
    if folder != MANIFEST_DIR or "/" in file or not file.endswith(".yaml"):
        return None
    return file[:-5] if is_valid_name(file[:-5]) else None


def _short(ref: str) -> str:
    for prefix in ("refs/heads/", "refs/remotes/", "refs/tags/", "refs/"):
        if ref.startswith(prefix):
            return ref[len(prefix):]
    return ref


def read_view(root: Path) -> View:
    refs = gitrepo.refs(root)
    head = gitrepo.head_or_none(root)
    worktrees = [(p, h) for p, h in gitrepo.worktrees(root) if p.resolve() != root.resolve()]
    stash = gitrepo.stash_commits(root) if "refs/stash" in refs else []
    # refs/stash is among the refs; its older entries and their index/untracked commits are
    # protected trees below, not walked (they are not snapshot commits).
    tips = [*refs.values(), *([head] if head else []), *(h for _, h in worktrees if h)]
    snaps, seen = [], set()
    internal = set(stash)  # a stash's own commits (work tree, index) are no snapshots
    for commit, stamp, path, blob in gitrepo.path_changes(root, tips, SPEC):
        name = _snapshot_name(path)
        if name is not None and (commit, name) not in seen and commit not in internal:
            seen.add((commit, name))
            snaps.append(Snap(commit, stamp, name, blob))
    view = View(refs, snaps)
    names = sorted({s.name for s in snaps})

    # Trees whose manifests stay, and why: HEAD, worktrees, branch tips, tags, stashes.
    trees: list[tuple[str, str, list[str]]] = []  # (rev, why, names it concerns)
    if head:
        trees.append((head, "HEAD", names))
    trees += [(h, f"worktree HEAD {p}", names) for p, h in worktrees if h]
    trees += [(c, "stash", names) for c in stash]
    for ref, commit in refs.items():
        if ref.startswith(("refs/heads/", "refs/remotes/")) and not ref.endswith("/HEAD"):
            trees.append((commit, f"newest on {_short(ref)}", names))
        elif ref.startswith("refs/tags/"):
            tag = _short(ref)
            owner, at, _ = tag.partition("@v")
            trees.append((commit, f"tag {tag}", [owner] if at and owner in names else names))
    specs = [f"{rev}:{manifest_path(n)}" for rev, _, concerns in trees for n in concerns]
    blobs = gitrepo.blob_ids(root, specs)
    by_blob: dict[str, list[Snap]] = {}
    for s in snaps:
        by_blob.setdefault(s.blob, []).append(s)
    for rev, why, concerns in trees:
        for n in concerns:
            found = blobs.get(f"{rev}:{manifest_path(n)}")
            if found is not None:
                _protect(view, by_blob, found, n, why)

    # Manifests in the work trees (this one and every worktree), committed or not.
    for where, why in [(root, "work tree"), *((p, f"worktree {p}") for p, _ in worktrees)]:
        if (where / MANIFEST_DIR).is_symlink():  # never followed out of the repository
            continue
        for file in sorted((where / MANIFEST_DIR).glob("*.yaml")):
            if not is_valid_name(file.stem) or file.is_symlink() or not file.is_file():
                continue
            data = file.read_bytes()
            view.raw.setdefault(blob_id(data), data)
            _protect(view, by_blob, blob_id(data), file.stem, why)

    view.manifests = _parse(root, view.all_blobs(), view.raw)
    view.raw = {b: d for b, d in view.raw.items() if view.manifests.get(b) is None}

    for ref, commit in refs.items():  # the order keep_last counts along each branch
        if ref.startswith(("refs/heads/", "refs/remotes/")) and not ref.endswith("/HEAD"):
            view.branches[_short(ref)] = gitrepo.commits_touching(root, commit, SPEC)
    by_commit: dict[str, list[Snap]] = {}
    for s in snaps:
        by_commit.setdefault(s.commit, []).append(s)
    for branch, order in view.branches.items():
        newest: set[str] = set()
        for commit in order:
            for s in by_commit.get(commit, []):
                if s.name not in newest:
                    newest.add(s.name)
                    view.always.setdefault((s.commit, s.name), []).append(f"newest on {branch}")

    if gitrepo.remote_names(root):  # with no Git remote, pushing to Git means nothing
        local_tips = [c for r, c in refs.items() if not r.startswith("refs/remotes/")]
        local_tips += [*([head] if head else []), *(h for _, h in worktrees if h)]
        unpushed = gitrepo.not_on_remotes(root, local_tips, SPEC)
        for s in snaps:
            if s.commit in unpushed:
                view.always.setdefault((s.commit, s.name), []).append("not pushed to Git")

    for rel in gitrepo.files_matching(root, "*.dvc"):
        if any(p.is_symlink() for p in [root / rel, *(root / rel).parents][:rel.count("/") + 1]):
            continue
        try:
            pointer = store.read_dvc_file(root, rel.removesuffix(".dvc"))
        except (BadInput, ManifestInvalid, OSError):
            continue
        if pointer is not None and _OID.match(pointer[0]):
            view.loose_md5s.add(pointer[0])
    return view


def _protect(view: View, by_blob: dict[str, list[Snap]], blob: str, name: str,
             why: str) -> None:
    view.protected.add(blob)
    for s in by_blob.get(blob, []):
        if s.name == name:
            view.always.setdefault((s.commit, s.name), []).append(why)


def _parse(root: Path, blobs: set[str], files: dict[str, bytes]) -> dict[str, Manifest | None]:
    """Every manifest blob, validated; None for one that does not validate."""
    contents = {**gitrepo.blobs(root, sorted(blobs - set(files))), **files}
    parsed: dict[str, Manifest | None] = {}
    seen: Seen = {}  # blocks shared by these manifests (the environment), parsed once
    for blob in blobs:
        data = contents.get(blob)
        if data is None:
            parsed[blob] = None
            continue
        try:
            # The strict loader's verdict, through libyaml: ``blobs.parse``.
            parsed[blob] = parse(data, blob[:7], seen=seen)
        except ManifestInvalid:
            parsed[blob] = None
            files.setdefault(blob, data)
    return parsed
