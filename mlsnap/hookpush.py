"""The ``mlsnap-push`` hook: before Git pushes snapshot commits, the remote gets their bytes.

Which snapshots a push sends comes from the pre-commit framework's ``PRE_COMMIT_*`` variables
or from Git's own pre-push lines; the objects they name are pushed by hash (past commits may name
``.dvc`` files not in the work tree), and what neither the cache nor the remote holds is named.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mlsnap import gitrepo
from mlsnap.errors import BadInput, ManifestInvalid, MlsnapError, RemoteError
from mlsnap.hooks import Finding, expected_outputs, manifest_name
from mlsnap.manifest import MANIFEST_DIR, loads

_ZERO_SHA = re.compile(r"^0+$")


@dataclass(frozen=True)
class PushedRef:
    """One line of Git's pre-push input."""

    local_ref: str
    local_sha: str
    remote_ref: str
    remote_sha: str


@dataclass(frozen=True)
class PushReport:
    snapshots: list[tuple[str, str]]  # (commit, manifest path) checked
    pushed: int
    problems: list[Finding] = field(default_factory=list)


def parse_pre_push(text: str) -> list[PushedRef]:
    refs = []
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = line.rsplit(maxsplit=3)
        if len(parts) != 4:
            raise BadInput("pre-push input", f"{line[:80]!r} is not "
                           "'<local ref> <local sha> <remote ref> <remote sha>'")
        refs.append(PushedRef(*parts))
    return refs


def push_ranges(root: Path, refs: Sequence[PushedRef], remote_name: str) -> list[list[str]]:
    """``git rev-list`` arguments selecting the commits each ref sends."""
    ranges = []
    for ref in refs:
        if _ZERO_SHA.match(ref.local_sha):
            continue  # a deletion sends nothing
        if not _ZERO_SHA.match(ref.remote_sha) and gitrepo.resolve(root, ref.remote_sha):
            ranges.append([ref.local_sha, f"^{ref.remote_sha}"])
        else:
            # A new branch (or a remote tip we never fetched): what no remote-tracking ref has.
            ranges.append([ref.local_sha, "--not", f"--remotes={remote_name}"])
    return ranges


def snapshots_in(root: Path, rev_args: Sequence[str]) -> list[tuple[str, str]]:
    """(commit, manifest path) of every manifest added or changed by the selected commits."""
    found = [(c, p) for c, p in gitrepo.files_changed_by(root, rev_args, MANIFEST_DIR)
             if manifest_name(p) is not None]
    return list(dict.fromkeys(found))


def snapshots_at(root: Path, rev: str = "HEAD") -> list[tuple[str, str]]:
    sha = gitrepo.resolve(root, rev)
    if sha is None:
        return []
    return [(sha, p) for p in gitrepo.files_at(root, sha, MANIFEST_DIR)
            if manifest_name(p) is not None]


def push_snapshots(root: Path, snapshots: Sequence[tuple[str, str]], *,
                   remote: str | None = None, jobs: int | None = None) -> PushReport:
    """Make sure the remote holds the bytes of ``snapshots``: push what only the local cache
    has, and report what neither has (nobody could pull those)."""
    wanted: dict[str, list[str]] = {}  # md5 -> "commit:manifest: path" labels
    problems: list[Finding] = []
    for commit, mpath in snapshots:
        where = f"{commit[:12]}:{mpath}"
        try:
            m = loads(gitrepo.show(root, commit, mpath) or b"", where)
        except ManifestInvalid as exc:
            problems.append(Finding(where, f"invalid manifest: {exc.reason}"))
            continue
        for out_path, md5, _size in expected_outputs(m):
            wanted.setdefault(md5, []).append(f"{where}: {out_path}")
    if not wanted:
        return PushReport(list(snapshots), 0, problems)
    from mlsnap import workspace

    workspace.require_ready(root)
    pushed, lost, failed, remote_name = _sync_objects(root, list(wanted), remote, jobs)
    for md5 in lost:
        for label in wanted[md5]:
            where, _, path = label.rpartition(": ")
            problems.append(Finding(where, f"{path} ({md5}) is neither in the local cache nor "
                                           f"on remote {remote_name!r}; whoever made this "
                                           "snapshot must run `mlsnap push` first"))
    for md5 in failed:
        for label in wanted[md5]:
            where, _, path = label.rpartition(": ")
            problems.append(Finding(where, f"{path} ({md5}) could not be uploaded to remote "
                                           f"{remote_name!r}; retry with `mlsnap push`"))
    return PushReport(list(snapshots), pushed, problems)


def _sync_objects(root: Path, md5s: Sequence[str], remote: str | None,
                  jobs: int | None) -> tuple[int, list[str], list[str], str]:
    """Push the local-only objects of ``md5s``; return (pushed, lost, failed, remote name).

    Manifests of past commits may name ``.dvc`` files that are not in the work tree, so this
    works on hashes (``store.send_missing``) instead of ``.dvc`` targets.
    """
    from mlsnap import store

    with store.open_repo(root) as repo:
        name = store.remote_label(repo, remote)
        try:
            store.probe_remote(repo, remote, create=True)
            result = store.send_missing(repo, md5s, remote=remote, jobs=jobs)
        except MlsnapError:
            raise
        except Exception as exc:  # noqa: BLE001 - DVC's, OSError, the plugins' own
            raise RemoteError(name, store.remote_reason(repo, name, exc)) from None
        return result.sent, sorted(result.lost), result.failed, name


def pushed_snapshots(root: Path, remote_name: str | None, env: Mapping[str, str],
                     stdin: str | None) -> list[tuple[str, str]]:
    """(commit, name) of every snapshot a push sends: from the pre-commit framework's
    PRE_COMMIT_* variables, else from Git's pre-push lines (``stdin``), else those at HEAD."""
    name = remote_name or env.get("PRE_COMMIT_REMOTE_NAME") or "origin"
    if env.get("PRE_COMMIT_FROM_REF") and env.get("PRE_COMMIT_TO_REF"):
        ranges = [[env["PRE_COMMIT_TO_REF"], f"^{env['PRE_COMMIT_FROM_REF']}"]]
    elif env.get("PRE_COMMIT_LOCAL_BRANCH"):  # the framework's first push of a whole history
        ranges = [[env["PRE_COMMIT_LOCAL_BRANCH"], "--not", f"--remotes={name}"]]
    elif stdin is not None:
        ranges = push_ranges(root, parse_pre_push(stdin), name)
    else:
        return snapshots_at(root)
    found: list[tuple[str, str]] = []
    for rev_args in ranges:
        found += snapshots_in(root, rev_args)
    return list(dict.fromkeys(found))


__all__ = ["PushReport", "PushedRef", "parse_pre_push", "push_ranges", "push_snapshots",
           "pushed_snapshots", "snapshots_at", "snapshots_in"]
