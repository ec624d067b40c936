"""The Python API: the same flows as the command line, for training scripts and notebooks.

Called from inside a training process, ``commit`` records that process's own environment
(its interpreter and the packages it can import), not whatever virtualenv is active in a shell.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlsnap.initialize import InitResult
from mlsnap.manifest import Manifest
from mlsnap.reprocheck import Certificate
from mlsnap.restore import PullResult, StatusReport
from mlsnap.retention import GcResult
from mlsnap.runner import RunResult
from mlsnap.snapshot import CommitResult

if TYPE_CHECKING:
    from mlsnap.compare import SnapshotDiff
    from mlsnap.history import LogEntry, TagResult
    from mlsnap.retrieve import GetResult

PathLike = str | os.PathLike[str]


def _cwd(repo: PathLike | None) -> Path:
    """Where relative paths start: ``repo`` when given, else the caller's working directory."""
    return Path(repo).absolute() if repo is not None else Path.cwd()


def init(remote: str | None = None, *, repo: PathLike | None = None,
         local_options: Mapping[str, str] | None = None) -> InitResult:
    """Set up the Git repository at ``repo`` (default: the current directory)."""
    from mlsnap import initialize

    cwd = _cwd(repo)
    return initialize.init(remote, local_options=dict(local_options or {}) or None, cwd=cwd)


def commit(
    paths: Sequence[PathLike] | PathLike = (),
    *,
    data: Sequence[PathLike] = (),
    params: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    params_files: Sequence[str] | None = None,
    metrics_files: Sequence[str] | None = None,
    name: str | None = None,
    message: str = "",
    tag: str | None = None,
    allow_dirty: bool = False,
    push: bool = True,
    forget: bool = False,
    repo: PathLike | None = None,
    sign: bool = False,
) -> CommitResult:
    """Snapshot ``paths`` and ``data``; ``params``/``metrics`` are plain (nested) dicts.

    What is not given is reused from the previous snapshot of that name (its paths, its
    inputs, the params/metrics files it read), as on the command line; ``params``/``metrics``
    win over those files key by key. ``forget=True`` reuses nothing. ``result.told`` says what
    was reused and what left the snapshot.

    Relative paths start at ``repo`` (default: the current directory). The environment recorded
    is this process's own (its interpreter and the packages it can import), whatever
    ``VIRTUAL_ENV`` says: the process calling ``commit`` is the one that trained.
    """
    from mlsnap import environment, snapshot

    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    cwd = _cwd(repo)
    env = environment.training_process()
    return snapshot.commit(
        [os.fspath(p) for p in paths], data=[os.fspath(p) for p in data],
        param_files=params_files, metric_files=metrics_files, name=name, message=message,
        tag=tag, allow_dirty=allow_dirty, push=push, env=env, cwd=cwd,
        extra_params=dict(params or {}), extra_metrics=dict(metrics or {}), forget=forget,
        sign=sign,
    )


def pull(name: str | None = None, *, force: bool = False, repo: PathLike | None = None,
         jobs: int | None = None, allow_unsafe_pickle: bool = False,
         require_signed: bool = False) -> PullResult:
    """Restore what the manifests at HEAD record; drift is measured on this process."""
    from mlsnap import environment, restore

    cwd = _cwd(repo)
    env = environment.this_process()
    return restore.pull(name, force=force, jobs=jobs, cwd=cwd, env=env,
                        allow_unsafe_pickle=allow_unsafe_pickle, require_signed=require_signed)


def push(name: str | None = None, *, repo: PathLike | None = None, jobs: int | None = None) -> int:
    """Send the bytes of the snapshots at HEAD to the remote; return how many objects were sent."""
    from mlsnap import snapshot

    cwd = _cwd(repo)
    return snapshot.push(name, jobs=jobs, cwd=cwd)


def status(name: str | None = None, *, repo: PathLike | None = None,
           check_remote: bool = True) -> StatusReport:
    """Workspace against the manifests at HEAD; ``report.clean`` is what exit code 3 tests."""
    from mlsnap import restore

    cwd = _cwd(repo)
    return restore.status(name, check_remote=check_remote, cwd=cwd)


def show(rev: str | None = None, *, name: str | None = None,
         repo: PathLike | None = None) -> Manifest:
    """One manifest: the work tree's (``rev=None``) or the one at a commit, branch or tag."""
    from mlsnap import history

    return history.show(rev, name, cwd=_cwd(repo))


def log(*, name: str | None = None, limit: int | None = None, all_refs: bool = False,
        repo: PathLike | None = None) -> list[LogEntry]:
    """Snapshots reachable from HEAD (``all_refs``: every branch and tag), newest first."""
    from mlsnap import history

    return list(history.log(name=name, limit=limit, all_refs=all_refs, cwd=_cwd(repo)))


def diff(rev_a: str | None = None, rev_b: str | None = None, *, name: str | None = None,
         repo: PathLike | None = None) -> SnapshotDiff:
    """What changed between two snapshots (default: HEAD's and the previous one of that name)."""
    from mlsnap import compare

    return compare.diff(rev_a, rev_b, name, cwd=_cwd(repo))


def tag(name: str, version: str, rev: str = "HEAD", *, repo: PathLike | None = None,
        sign: bool = False) -> TagResult:
    """Tag the snapshot ``name`` at ``rev`` as ``name@vVERSION`` (annotated, strict SemVer;
    ``sign=True``: signed by Git's configured key)."""
    from mlsnap import history

    return history.tag(name, version, rev, cwd=_cwd(repo), sign=sign)


def get(rev: str, *, name: str | None = None, out: PathLike | None = None,
        repo: PathLike | None = None, jobs: int | None = None,
        allow_unsafe_pickle: bool = False) -> GetResult:
    """Copy the artifacts of the snapshot at ``rev`` into ``out``, verified; HEAD untouched.

    A relative ``out`` starts at ``repo`` (default: the current directory).
    """
    from mlsnap import retrieve

    cwd = _cwd(repo)
    return retrieve.get(rev, name, os.fspath(out) if out is not None else None, jobs=jobs,
                        cwd=cwd, allow_unsafe_pickle=allow_unsafe_pickle)


def gc(*, name: str | None = None, keep_last: int | None = None,
       keep_best: tuple[str, int] | None = None, keep_within_days: float | None = None,
       remote: bool = False, yes: bool = False, allow_stale_refs: bool = False,
       repo: PathLike | None = None, jobs: int | None = None) -> GcResult:
    """Delete the bytes of snapshots no retention rule keeps; a dry run unless ``yes=True``.

    ``keep_best=("accuracy:max", 2)`` keeps the two most accurate. Without policy arguments
    the ``retention:`` of ``.mlsnap/config.yaml`` applies. ``result.snapshots`` says, per
    snapshot, whether it is kept and why, and the space it takes.
    """
    from mlsnap.retention import gc as run_gc
    from mlsnap.retention import parse_best

    best = parse_best(*keep_best) if keep_best is not None else None
    return run_gc(name=name, keep_last=keep_last, keep_best=best,
                    keep_within_days=keep_within_days, remote=remote, yes=yes,
                    allow_stale_refs=allow_stale_refs, jobs=jobs, cwd=_cwd(repo))


def run(cmd: Sequence[str], *, outputs: Sequence[PathLike] = (), data: Sequence[PathLike] = (),
        params: Mapping[str, Any] | None = None, metrics: Mapping[str, Any] | None = None,
        params_files: Sequence[str] | None = None, metrics_files: Sequence[str] | None = None,
        name: str | None = None, message: str = "", tag: str | None = None,
        allow_dirty: bool = False, push: bool = True,
        repo: PathLike | None = None) -> RunResult:
    """Run ``cmd`` (a list: program and arguments) in the repository root and snapshot
    ``outputs`` with the command recorded, as ``mlsnap run`` does; CMD's output goes to this
    process's stdout/stderr. A failing command raises ``mlsnap.MlsnapError`` (no snapshot).

    The environment recorded is the one CMD runs in (its ``python``, else the active
    virtualenv), not this process's.
    """
    from mlsnap import runner

    return runner.run(
        [os.fspath(c) for c in cmd], outputs=[os.fspath(p) for p in outputs],
        data=[os.fspath(p) for p in data], param_files=params_files,
        metric_files=metrics_files, name=name, message=message, tag=tag,
        allow_dirty=allow_dirty, push=push, cwd=_cwd(repo), extra_params=dict(params or {}),
        extra_metrics=dict(metrics or {}))


def repro(rev: str | None = None, *, name: str | None = None, rtol: float = 0.0,
          atol: float = 0.0, env: str = "current", keep: bool = False,
          repo: PathLike | None = None) -> Certificate:
    """Re-run the recorded command of the snapshot at ``rev`` (default HEAD) in a temporary
    worktree and compare; ``cert.verdict`` is ``reproduced``, ``within-tolerance``,
    ``differs`` or ``failed``, ``cert.to_dict()`` the ``--json`` certificate."""
    from mlsnap import reproduce as flow

    return flow.repro(rev, name=name, rtol=rtol, atol=atol, env=env, keep=keep,
                      cwd=_cwd(repo))
