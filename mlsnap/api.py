"""The Python API: the same flows as the command line, for training scripts and notebooks.

Called from inside a training process, ``commit`` records that process's own environment
(its interpreter and the packages it can import), not whatever virtualenv is active in a shell.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mlsnap.manifest import Manifest
from mlsnap.restore import PullResult, StatusReport
from mlsnap.snapshot import CommitResult, InitResult

PathLike = str | os.PathLike[str]


def _cwd(repo: PathLike | None) -> Path | None:
    return Path(repo) if repo is not None else None


def init(remote: str | None = None, *, repo: PathLike | None = None,
         local_options: Mapping[str, str] | None = None) -> InitResult:
    """Set up the Git repository at ``repo`` (default: the current directory)."""
    from mlsnap import snapshot

    return snapshot.init(remote, local_options=dict(local_options or {}) or None, cwd=_cwd(repo))


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
    repo: PathLike | None = None,
) -> CommitResult:
    """Snapshot ``paths`` and ``data``; ``params``/``metrics`` are plain (nested) dicts."""
    from mlsnap import environment, snapshot

    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    env = environment.this_process()  # whatever VIRTUAL_ENV says
    return snapshot.commit(
        [os.fspath(p) for p in paths], data=[os.fspath(p) for p in data],
        param_files=params_files, metric_files=metrics_files, name=name, message=message,
        tag=tag, allow_dirty=allow_dirty, push=push, env=env, cwd=_cwd(repo),
        extra_params=dict(params or {}), extra_metrics=dict(metrics or {}),
    )


def pull(name: str | None = None, *, force: bool = False, repo: PathLike | None = None,
         jobs: int | None = None) -> PullResult:
    """Restore what the manifests at HEAD record; drift is measured on this process."""
    from mlsnap import environment, restore

    env = environment.this_process()
    return restore.pull(name, force=force, jobs=jobs, cwd=_cwd(repo), env=env)


def push(name: str | None = None, *, repo: PathLike | None = None, jobs: int | None = None) -> int:
    from mlsnap import snapshot

    return snapshot.push(name, jobs=jobs, cwd=_cwd(repo))


def status(name: str | None = None, *, repo: PathLike | None = None,
           check_remote: bool = True) -> StatusReport:
    from mlsnap import restore

    return restore.status(name, check_remote=check_remote, cwd=_cwd(repo))


def show(rev: str | None = None, *, name: str | None = None,
         repo: PathLike | None = None) -> Manifest:
    from mlsnap import history

    return history.show(rev, name, cwd=_cwd(repo))


def log(*, name: str | None = None, limit: int | None = None, all_refs: bool = False,
        repo: PathLike | None = None) -> list[Any]:
    """Snapshots reachable from HEAD (``all_refs``: every branch and tag), newest first."""
    from mlsnap import history

    return list(history.log(name=name, limit=limit, all_refs=all_refs, cwd=_cwd(repo)))
